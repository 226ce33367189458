"""Parameter counts of the decoded nets of a search space, per layer and candidate.

The parameter-limit counterpart of a latency table (paper Sec. 3.4): for every
searchable layer the exact count of each candidate (k3_e3, k3_e6, k5_e3, k5_e6;
skip = 0), and the constant of everything the search does not choose (stem,
fixed layers, head and classifier). Counts are those of the plain network the
builder makes from the decoded choices (:meth:`spnas.arch.plan.LayerPlan.count_params`:
convs without bias, BN gamma and beta, as timm reports them; Keras'
``count_params()`` adds 2 per BN channel for the moving statistics).

:func:`layer_params` combines a layer's counts with its three indicators in the
form of Eq. 11-12, so that the supernet's parameter count is differentiable like
its runtime. Unlike the runtime model, whose single k3/k5 ratio approximates
k3_e3, it uses one ratio per expansion, so a hard decision gives the candidate's
exact count (the runtime model keeps the paper's form).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from spnas.arch.handoff import ARCH_FORMAT, stage_strings
from spnas.arch.plan import LayerPlan, plan_model
from spnas.space import (
    CANDIDATES,
    SKIP,
    LayerSpec,
    SearchSpace,
    parse_choice,
    superkernel_cost,
    validate_choices,
)

__all__ = ["ParamsTable", "candidate_params", "candidate_plan", "layer_params", "plan_params"]


def candidate_plan(spec: LayerSpec, choice: str) -> LayerPlan:
    """The plain layer the builder makes of supernet layer ``spec`` decoded as ``choice``
    (not skip)."""
    kernel, expansion = parse_choice(choice)
    return LayerPlan(
        index=spec.index, stage=spec.block, name=f"layer{spec.index:02d}", in_ch=spec.in_ch,
        out_ch=spec.out_ch, kernel=kernel, stride=spec.stride, expansion=expansion,
        residual=spec.residual, input_hw=spec.input_hw,
        output_hw=-(-spec.input_hw // spec.stride),
    )


def candidate_params(spec: LayerSpec, choice: str) -> int:
    """Parameters of searchable layer ``spec`` decoded as ``choice`` (0 for skip)."""
    return 0 if choice == SKIP else candidate_plan(spec, choice).count_params()


def plan_params(space: SearchSpace, choices: Sequence[str]) -> int:
    """Parameters of the plain net the builder makes from ``choices`` (the reference)."""
    choices = validate_choices(space, choices)
    arch = {"format": ARCH_FORMAT, "layers": choices, "stages": stage_strings(space, choices),
            "space": space.to_dict()}
    return plan_model(arch).count_params()


def layer_params(entries: dict[str, float], d5x5, d100c, d50c):
    """A searchable layer's parameter count from its three indicators: Eq. 11-12's form
    with one k3/k5 ratio per expansion (:func:`spnas.space.superkernel_cost` with
    ``exact_k3``), so hard indicators give exactly the chosen candidate's count (0 for
    skip). Floats or tensors."""
    return superkernel_cost(entries, d5x5, d100c, d50c, exact_k3=True)


@dataclasses.dataclass(frozen=True)
class ParamsTable:
    """Per searchable layer the count of each candidate, and the constant of the rest.

    Create it with :meth:`from_space`. ``layers`` maps a layer index to
    ``{candidate: count}``; ``skippable`` lists the layers that may be skipped.
    """

    space: SearchSpace
    constant: int
    layers: dict[int, dict[str, int]]
    skippable: tuple[int, ...]

    @classmethod
    def from_space(cls, space: SearchSpace) -> ParamsTable:
        searchable = [spec for spec in space.layers() if spec.searchable]
        layers = {spec.index: {c: candidate_params(spec, c) for c in CANDIDATES}
                  for spec in searchable}
        # The constant from the builder's own count: what a net holds beyond its layers.
        largest = "k5_e6"
        choices = [largest if spec.searchable else spec.fixed_choice for spec in space.layers()]
        constant = plan_params(space, choices) - sum(t[largest] for t in layers.values())
        skippable = tuple(spec.index for spec in searchable if spec.skippable)
        return cls(space, constant, layers, skippable)

    def count(self, choices: Sequence[str]) -> int:
        """Exact parameters of the decoded net ``choices`` (one per layer, fixed included)."""
        choices = validate_choices(self.space, choices)
        return self.constant + sum(
            0 if choices[i] == SKIP else entries[choices[i]] for i, entries in self.layers.items())

    def options(self, index: int) -> dict[str, int]:
        """Searchable layer ``index``'s choices (skip where allowed) and their counts."""
        out = dict(self.layers[index])
        if index in self.skippable:
            out[SKIP] = 0
        return out

    def range(self) -> tuple[int, int]:
        """(smallest, largest) net of the space: every skippable layer skipped and k3_e3
        elsewhere, and k5_e6 everywhere."""
        lo = hi = self.constant
        for index in self.layers:
            values = self.options(index).values()
            lo, hi = lo + min(values), hi + max(values)
        return lo, hi

    def supernet_params(self) -> dict:
        """What the supernet needs, as a plain (serialisable) dict."""
        return {"constant": self.constant,
                "layers": {str(i): dict(entries) for i, entries in self.layers.items()}}
