"""One table type for every per-layer cost of a search space (paper Sec. 3.4, Eq. 10-12).

A :class:`CostTable` holds, for every searchable layer of one space, the cost of
each choice it may decode to (its candidates, and ``skip`` where a skip is a
projection), plus a constant for everything the search does not choose (stem,
fixed layers, head, classifier). Its ``unit`` and ``reduction`` say what it
counts and how the layers combine: latency in ms, MACs in millions and
parameters add up (``"sum"``); peak activation memory is the largest of the parts
(``"max"``). Latency tables are profiled or imported (:func:`spnas.tables.bind`);
the analytic ones (MACs, parameters, memory) are counted exactly from the layer
plans the builder makes models from (:mod:`spnas.arch.params`,
:mod:`spnas.arch.memory`).

Predictions come in two models: ``exact`` sums each chosen entry; ``paper`` is
the differentiable cost the search minimises at hard indicators
(:func:`spnas.choices.superkernel_cost`), which for a four-candidate layer of a
latency table keeps the paper's single k3/k5 ratio (k3_e3 approximated, as the
release) and is exact everywhere else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from spnas.choices import SKIP, decisions_from_choice, superkernel_cost
from spnas.errors import UserError
from spnas.layer_plan import PROJECTION
from spnas.space import SearchSpace, validate_choices

MODELS = ("paper", "exact")
REDUCTIONS = ("sum", "max")
# What each kind of table counts, its unit and how its layers combine.
KINDS = {
    "latency": ("ms", "sum"),
    "macs": ("MMAC", "sum"),  # millions of multiply-accumulates per image
    "params": ("parameters", "sum"),
    "activation": ("elements", "max"),  # peak activation memory at batch 1
}


class CostTableError(UserError):
    """A cost table does not fit its space, or is asked what it cannot answer."""


def needed_keys(layer) -> tuple[str, ...]:
    """The entries a table needs for searchable ``layer``: its candidates, and
    ``skip`` where skipping it is a projection (an identity skip costs nothing)."""
    return layer.candidates + ((SKIP,) if layer.skip_op == PROJECTION else ())


@dataclasses.dataclass(frozen=True)
class CostTable:
    """Per searchable layer the cost of each of its choices, and the constant of the rest.

    Attributes:
      space: the search space the table is bound to.
      kind: ``latency``, ``macs``, ``params`` or ``activation`` (:data:`KINDS`).
      unit: what one entry counts (``ms``, ``MMAC``, ``parameters``, ``elements``).
      reduction: ``sum`` or ``max`` over the parts.
      constant: the cost of what the search does not choose.
      layers: layer index -> {choice: cost} (:func:`needed_keys`).
      paper_ratio: four-candidate layers use the paper's single k3/k5 ratio in the
        ``paper`` model (latency tables); else every member's entry is exact.
    """

    space: SearchSpace
    kind: str
    unit: str
    reduction: str
    constant: float
    layers: dict[int, dict[str, float]]
    paper_ratio: bool = False

    def __post_init__(self):
        if self.reduction not in REDUCTIONS:
            raise CostTableError(f"reduction {self.reduction!r} is not one of {REDUCTIONS}.")
        for layer in self.space.layers():
            if not layer.searchable:
                continue
            entries = self.layers.get(layer.index)
            if entries is None:
                raise CostTableError(f"{self.kind} table lacks searchable layer {layer.index}.")
            missing = [k for k in needed_keys(layer) if k not in entries]
            if missing:
                raise CostTableError(f"{self.kind} table, layer {layer.index}: missing key "
                                     f"{missing[0]!r} (the layer's choices: {layer.options}).")

    def fmt(self, value: float) -> str:
        """``value`` in this table's unit, as messages print it."""
        if self.unit == "ms":
            return f"{value:.3f}"
        if self.unit in ("parameters", "elements"):
            return f"{int(round(value))}"
        return f"{value:.4g}"

    @property
    def label(self) -> str:
        """How messages name the table (a latency table: its device)."""
        return f"the {self.kind} table"

    # -- one layer ----------------------------------------------------------------------
    def _layer(self, index: int):
        return self.space.layers()[index]

    def entries(self, index: int) -> dict[str, float]:
        return self.layers[index]

    def options(self, index: int) -> dict[str, float]:
        """Searchable layer ``index``'s choices (skip where allowed) and their exact costs."""
        layer = self._layer(index)
        return {c: self.layer_cost(index, c, "exact") for c in layer.options}

    def differentiable(self, index: int, d5x5, d100c, d50c):
        """Layer ``index``'s cost from its raw indicators (floats or tensors)."""
        layer = self._layer(index)
        return superkernel_cost(self.layers[index], d5x5, d100c, d50c,
                                members=layer.candidates, exact_k3=not self.paper_ratio)

    def layer_cost(self, index: int, choice: str, model: str = "paper") -> float:
        """The cost of searchable layer ``index`` decoded as ``choice``."""
        _check_model(model)
        entries = self.layers[index]
        if model == "exact":
            return float(entries.get(SKIP, 0.0)) if choice == SKIP else float(entries[choice])
        raw = decisions_from_choice(choice, self._layer(index).candidates)
        return float(self.differentiable(index, *raw))

    # -- a whole net --------------------------------------------------------------------
    def _combine(self, parts: Sequence[float]) -> float:
        if self.reduction == "sum":
            return float(self.constant + sum(parts))
        return float(max([self.constant, *parts]))

    def predict(self, choices: Sequence[str], model: str = "paper") -> float:
        """The cost of the decoded net ``choices`` (one per layer, fixed included)."""
        choices = validate_choices(self.space, choices)
        return self._combine([self.layer_cost(i, choices[i], model) for i in self.layers])

    def count(self, choices: Sequence[str]) -> int:
        """The exact cost of ``choices`` as an integer (an analytic table's count)."""
        return int(round(self.predict(choices, "exact")))

    def range(self, model: str = "paper") -> tuple[float, float]:
        """(cheapest, dearest) net of the space: per-layer extremes, the table being
        additive (or a max) over layers."""
        lows, highs = [], []
        for index in self.layers:
            values = [self.layer_cost(index, c, model) for c in self._layer(index).options]
            lows.append(min(values))
            highs.append(max(values))
        return self._combine(lows), self._combine(highs)

    def supernet_cost(self) -> dict:
        """What the supernet needs, as a plain (serialisable) dict."""
        return {"kind": self.kind, "unit": self.unit, "constant": float(self.constant),
                "paper_ratio": self.paper_ratio,
                "layers": {str(i): dict(e) for i, e in self.layers.items()}}

    def cost_record(self, choices: Sequence[str]) -> dict:
        """arch.json's ``costs`` entry of ``choices``: value, unit, kind, reduction."""
        return {"value": self.predict(choices, "exact"), "unit": self.unit, "kind": self.kind,
                "reduction": self.reduction}


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise CostTableError(f"Unknown cost model {model!r}; expected one of {MODELS}.")
