"""Runtime predictions from a latency table (paper Eq. 10-12), and the table bound
to a search space.

``paper`` is the model the search differentiates (Eq. 11-12, written once in
:func:`spnas.space.layer_runtime`: k3e3 approximated as
``R_k5e3 * R_k3e6 / R_k5e6``); ``exact`` sums the table entry of each chosen
candidate. Both add the table's constant (stem, head, fixed layers).

A :class:`BoundTable` is a table validated once against one space, with the
strictness (a proxy table or not) decided once; the supernet, decoding, the
budget decode and every prediction take it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from spnas.space import (
    CANDIDATES,
    SKIP,
    SearchSpace,
    decisions_from_choice,
    layer_runtime,
    validate_choices,
)
from spnas.tables.table import LatencyTable, LatencyTableError

MODELS = ("paper", "exact")


def layer_runtime_paper(entries: dict[str, float], choice: str) -> float:
    """Eq. 11-12 with hard decisions for one searchable layer."""
    return float(layer_runtime(entries, *decisions_from_choice(choice)))


def layer_runtime_exact(entries: dict[str, float], choice: str) -> float:
    """The table entry of the chosen candidate (0 for skip)."""
    return 0.0 if choice == SKIP else entries[choice]


def _layer_fn(model: str):
    if model not in MODELS:
        raise LatencyTableError(f"Unknown runtime model {model!r}; expected one of {MODELS}.")
    return layer_runtime_paper if model == "paper" else layer_runtime_exact


@dataclasses.dataclass(frozen=True)
class BoundTable:
    """A latency table checked against a search space, once.

    Create it with :func:`bind`. Attributes: ``table`` (the loaded table),
    ``space`` and ``strict`` (False for a proxy table of another input size).
    """

    table: LatencyTable
    space: SearchSpace
    strict: bool = True

    @property
    def device(self) -> str:
        return self.table.device

    @property
    def constant_ms(self) -> float:
        return self.table.constant_ms

    def entries(self, index: int) -> dict[str, float]:
        return self.table.entries(index)

    def summary(self) -> dict:
        """What arch.json records about the table (device, path, sha256, ...)."""
        return self.table.summary()

    def supernet_latency(self) -> dict:
        """The part of the table the supernet needs, as a plain (serialisable) dict."""
        return {
            "constant_ms": self.table.constant_ms,
            "layers": {str(i): dict(self.table.layers[i]) for i in self.table.searchable_indices},
        }

    def layer_ms(self, index: int, choice: str, model: str = "paper") -> float:
        """Predicted runtime of searchable layer ``index`` under ``choice``."""
        return _layer_fn(model)(self.table.entries(index), choice)

    def predict_ms(self, choices: Sequence[str], model: str = "paper") -> float:
        """Predicted end-to-end latency (ms) of ``choices`` (one per layer, fixed included)."""
        fn = _layer_fn(model)
        choices = validate_choices(self.space, choices)
        total = self.table.constant_ms
        for layer, choice in zip(self.space.layers(), choices):
            if layer.searchable:
                total += fn(self.table.entries(layer.index), choice)
        return float(total)

    def range_ms(self, model: str = "paper") -> tuple[float, float]:
        """(fastest, slowest) predicted latency over the whole space.

        The model is additive over layers, so the extremes are per-layer extremes.
        """
        fn = _layer_fn(model)
        lo = hi = self.table.constant_ms
        for layer in self.space.layers():
            if not layer.searchable:
                continue
            options = CANDIDATES + ((SKIP,) if layer.skippable else ())
            values = [fn(self.table.entries(layer.index), c) for c in options]
            lo += min(values)
            hi += max(values)
        return float(lo), float(hi)


def bind(table: LatencyTable | BoundTable, space: SearchSpace, strict: bool = True) -> BoundTable:
    """Validates ``table`` against ``space`` once and returns the bound table.

    A table already bound to an equal space (and strictness) is returned as is.

    Raises:
      LatencyTableError: naming the layer (and key) that does not match.
    """
    if isinstance(table, BoundTable):
        if table.space == space and table.strict == strict:
            return table
        table = table.table
    table.validate_for(space, strict=strict)
    return BoundTable(table, space, strict)


def predict_ms(
    table: LatencyTable | BoundTable,
    choices: Sequence[str],
    space: SearchSpace | None = None,
    model: str = "paper",
    strict: bool = True,
) -> float:
    """Predicted end-to-end latency (ms) of an architecture of the space.

    A one-off convenience over :meth:`BoundTable.predict_ms`.

    Args:
      table: the latency table (or a bound one).
      choices: one choice per supernet layer (fixed layers included).
      space: the search space; defaults to the bound one, else the paper's.
      model: ``paper`` (Eq. 11-12) or ``exact`` (table lookup).
      strict: check the table's input size and layer shapes too (False for a
        proxy table; see LatencyTable.validate_for).
    """
    _layer_fn(model)
    if space is None:
        space = table.space if isinstance(table, BoundTable) else SearchSpace()
    return bind(table, space, strict).predict_ms(choices, model)


def latency_range_ms(
    table: LatencyTable | BoundTable, space: SearchSpace, model: str = "paper", strict: bool = True
) -> tuple[float, float]:
    """(fastest, slowest) predicted latency over the whole space (see BoundTable)."""
    return bind(table, space, strict).range_ms(model)
