"""Peak activation memory of a decoded net at batch 1, per layer and candidate.

The memory counterpart of :mod:`spnas.arch.params`. The ops of the plain network
run one after another (stem conv; per MBConv layer the 1x1 expansion, the
depthwise conv, the 1x1 projection and, with a residual, the addition; the 1x1
head, the global mean and the classifier: BN and ReLU fold into the convs, as in
the exported TFLite graph), and every tensor is freed after the last op that reads
it. The peak is the largest sum of the tensors alive during one op: its inputs,
its output, and what a later op still needs (a residual's block input). This is
the least any memory planner can give; tests/test_memory.py checks that it equals
the same count over the ops of the exported float TFLite graph. A runtime's arena
is this or more (its planner packs tensors at offsets; on this host LiteRT's
reference planner gave 1.17x for the main job's net).

Only the chain tensor crosses a layer boundary, so the net's peak is the largest
of its parts' peaks: a constant (stem, fixed layers, head) and each searchable
layer's, which depends on its expansion and whether it is skipped, not on its
kernel ("same" padding keeps the shapes). Counts are elements; bytes are
4 per element for float32, 1 for int8.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from spnas.arch.params import analytic_entries
from spnas.arch.plan import LayerPlan, ModelPlan
from spnas.layer_plan import PROJECTION
from spnas.space import SearchSpace
from spnas.tables.cost import KINDS, CostTable

__all__ = ["ActivationTable", "BYTES", "layer_peak", "ops_peak", "plan_peak"]

BYTES = {"float32": 4, "int8": 1}
DEFINITION = ("largest sum of tensors alive during one op at batch 1, ops in order, each "
              "tensor freed after its last use (spnas/arch/memory.py)")


def ops_peak(sizes: dict[str, int], ops: Sequence[tuple[Sequence[str], str]],
             keep: Sequence[str] = ()) -> int:
    """The peak of running ``ops`` (``(inputs, output)`` names) in order.

    ``sizes`` gives each tensor's elements; a tensor is alive from the op that makes it
    (or from the start, for one no op makes) to the last op that reads it; ``keep``
    names tensors alive to the end (the output).
    """
    last: dict[str, int] = {name: len(ops) for name in keep}
    for k, (inputs, _) in enumerate(ops):
        for name in inputs:
            last[name] = max(last.get(name, -1), k)
    made = {out: k for k, (_, out) in enumerate(ops)}
    peak = 0
    for k, (inputs, out) in enumerate(ops):
        alive = {name for name, end in last.items() if made.get(name, -1) <= k <= end}
        alive |= set(inputs) | {out}
        peak = max(peak, sum(sizes[name] for name in alive))
    return peak


def _layer_ops(layer: LayerPlan) -> tuple[dict[str, int], list]:
    hw_in, hw_out, mid = layer.input_hw**2, layer.output_hw**2, layer.in_ch * layer.expansion
    sizes = {"x": hw_in * layer.in_ch, "e": hw_in * mid, "d": hw_out * mid,
             "y": hw_out * layer.out_ch, "z": hw_out * layer.out_ch}
    ops: list = []
    if layer.expansion != 1:
        ops.append((("x",), "e"))
    ops += [(("e" if layer.expansion != 1 else "x",), "d"), (("d",), "y")]
    if layer.residual:
        ops.append((("x", "y"), "z"))
    return sizes, ops


def layer_peak(layer: LayerPlan | None) -> int:
    """Peak elements while ``layer`` runs (its input and output included; 0 for an
    identity skip, None)."""
    if layer is None:
        return 0
    if layer.op == PROJECTION:
        return layer.input_hw**2 * layer.in_ch + layer.output_hw**2 * layer.out_ch
    sizes, ops = _layer_ops(layer)
    return ops_peak(sizes, ops)


def _stem_peak(input_size: int, stem_stride: int, stem_channels: int) -> int:
    hw = -(-input_size // stem_stride)
    return input_size**2 * 3 + hw**2 * stem_channels


def _head_peak(hw: int, channels: int, head_channels: int, num_classes: int) -> int:
    sizes = {"x": hw**2 * channels, "h": hw**2 * head_channels, "p": head_channels,
             "logits": num_classes}
    return ops_peak(sizes, [(("x",), "h"), (("h",), "p"), (("p",), "logits")])


def plan_peak(plan: ModelPlan) -> int:
    """Peak activation elements of the plain network ``plan`` at batch 1."""
    stem = _stem_peak(plan.input_size, plan.stem_stride, plan.stem_channels)
    last = plan.layers[-1] if plan.layers else None
    hw = last.output_hw if last else -(-plan.input_size // plan.stem_stride)
    channels = last.out_ch if last else plan.stem_channels
    head = _head_peak(hw, channels, plan.head_channels, plan.num_classes)
    return max([stem, head, *(layer_peak(layer) for layer in plan.layers)])


@dataclasses.dataclass(frozen=True)
class ActivationTable(CostTable):
    """The peak-activation use of :class:`~spnas.tables.cost.CostTable` (elements at
    batch 1, reduction ``max``); make it with :meth:`from_space`. ``count(choices)`` is
    the decoded net's peak, equal to :func:`plan_peak` of the net the builder makes."""

    @classmethod
    def from_space(cls, space: SearchSpace) -> ActivationTable:
        specs = space.layers()
        fixed = [layer_peak(s) for s in specs if not s.searchable]
        last = specs[-1]
        head = _head_peak(last.output_hw, last.out_ch, space.head_filters, space.num_classes)
        stem = _stem_peak(space.input_size, space.stem_stride, space.stem_filters)
        unit, reduction = KINDS["activation"]
        return cls(space, "activation", unit, reduction, float(max([stem, head, *fixed])),
                   analytic_entries(space, layer_peak))

    def record(self, choices: Sequence[str]) -> dict:
        """arch.json's ``activation`` record of ``choices``."""
        n = self.count(choices)
        return {"peak_elements": n, **{f"{k}_bytes": n * b for k, b in BYTES.items()},
                "of": DEFINITION}
