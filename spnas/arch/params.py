"""Parameter and MAC counts of the decoded nets of a search space, per layer and choice.

The parameter-limit and MACs counterparts of a latency table (paper Sec. 3.4):
for every searchable layer the exact count of each of its choices (its
candidates; ``skip`` = 0, or the projection's count where skipping the layer is a
1x1 conv), and the constant of everything the search does not choose (stem,
fixed layers, head and classifier), as :class:`~spnas.tables.cost.CostTable`
uses. Counts are those of the plain network the builder makes from the decoded
choices (:class:`spnas.layer_plan.LayerPlan`: convs without bias, BN gamma and
beta, as timm reports them; Keras' ``count_params()`` adds 2 per BN channel for
the moving statistics; MACs of the convolutions and the classifier).

:func:`layer_params` combines a layer's counts with its indicators in the form of
Eq. 11-12, so that the supernet's parameter count is differentiable like its
runtime. Unlike the runtime model, whose single k3/k5 ratio approximates k3_e3,
it is exact for every choice under hard indicators.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from spnas.arch.handoff import ARCH_FORMAT, stage_strings
from spnas.arch.plan import plan_model
from spnas.choices import CANDIDATES, superkernel_cost
from spnas.layer_plan import LayerPlan, head_macs, head_params, stem_macs, stem_params
from spnas.space import SearchSpace, validate_choices
from spnas.tables.cost import KINDS, CostTable, needed_keys

__all__ = ["MacsTable", "ParamsTable", "analytic_entries", "candidate_params", "layer_params",
           "plan_params"]

MAC_UNIT = 1e6  # MACs tables count millions (KINDS["macs"])


def candidate_params(spec: LayerPlan, choice: str) -> int:
    """Parameters of searchable layer ``spec`` decoded as ``choice`` (0 for an identity skip)."""
    plain = spec.decoded(choice)
    return 0 if plain is None else plain.count_params()


def plan_params(space: SearchSpace, choices: Sequence[str]) -> int:
    """Parameters of the plain net the builder makes from ``choices`` (the reference)."""
    choices = validate_choices(space, choices)
    arch = {"format": ARCH_FORMAT, "layers": choices, "stages": stage_strings(space, choices),
            "space": space.to_dict()}
    return plan_model(arch).count_params()


def layer_params(entries: dict[str, float], d5x5, d100c, d50c,
                 members: Sequence[str] = CANDIDATES):
    """A searchable layer's parameter count from its raw indicators: Eq. 11-12's form,
    exact for every choice under hard indicators (:func:`spnas.choices.superkernel_cost`
    with ``exact_k3``). Floats or tensors."""
    return superkernel_cost(entries, d5x5, d100c, d50c, members=members, exact_k3=True)


def analytic_entries(space: SearchSpace, count) -> dict[int, dict[str, float]]:
    """Per searchable layer, ``count(plain layer)`` of each choice the table needs."""
    out = {}
    for layer in space.layers():
        if layer.searchable:
            out[layer.index] = {c: float(count(layer.decoded(c))) for c in needed_keys(layer)}
    return out


def _fixed(space: SearchSpace, count) -> float:
    return float(sum(count(layer) for layer in space.layers() if not layer.searchable))


@dataclasses.dataclass(frozen=True)
class ParamsTable(CostTable):
    """The parameter-count use of :class:`~spnas.tables.cost.CostTable`; make it with
    :meth:`from_space`."""

    @classmethod
    def from_space(cls, space: SearchSpace) -> ParamsTable:
        last = space.layers()[-1].out_ch
        constant = (stem_params(space.stem_filters) + _fixed(space, LayerPlan.count_params)
                    + head_params(last, space.head_filters, space.num_classes))
        unit, reduction = KINDS["params"]
        return cls(space, "params", unit, reduction, float(constant),
                   analytic_entries(space, LayerPlan.count_params))

    def range(self, model: str = "paper") -> tuple[int, int]:
        """(smallest, largest) net of the space, in parameters (integers)."""
        lo, hi = super().range(model)
        return int(round(lo)), int(round(hi))

    @property
    def skippable(self) -> tuple[int, ...]:
        return tuple(i for i in self.layers if self.space.layers()[i].skippable)

    def supernet_params(self) -> dict:
        """What the supernet needs, as a plain (serialisable) dict."""
        return self.supernet_cost()


@dataclasses.dataclass(frozen=True)
class MacsTable(CostTable):
    """The MACs use of :class:`~spnas.tables.cost.CostTable` (millions per image, as
    MobileNet papers and NAS-Bench-Macro count them); make it with :meth:`from_space`."""

    @classmethod
    def from_space(cls, space: SearchSpace) -> MacsTable:
        last = space.layers()[-1]
        constant = (stem_macs(space.input_size, space.stem_stride, space.stem_filters)
                    + _fixed(space, LayerPlan.count_macs)
                    + head_macs(last.output_hw, last.out_ch, space.head_filters,
                                space.num_classes))
        unit, reduction = KINDS["macs"]
        entries = analytic_entries(space, lambda plain: plain.count_macs() / MAC_UNIT)
        return cls(space, "macs", unit, reduction, constant / MAC_UNIT, entries)

    def count_macs(self, choices: Sequence[str]) -> int:
        """Exact MACs of ``choices`` (not millions)."""
        return int(round(self.predict(choices, "exact") * MAC_UNIT))


