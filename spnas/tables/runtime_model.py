"""Runtime predictions from a latency table (paper Eq. 10-12), and the table bound
to a search space.

``paper`` is the model the search differentiates (Eq. 11-12, written once in
:func:`spnas.choices.superkernel_cost`: in a four-candidate layer k3e3 is
approximated as ``R_k5e3 * R_k3e6 / R_k5e6``); ``exact`` sums the table entry of
each chosen candidate. Both add the table's constant (stem, head, fixed layers).

A :class:`BoundTable` is a table validated once against one space, with the
strictness (a proxy table or not) decided once; the supernet, decoding, the
budget decode and every prediction take it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from spnas.choices import SKIP, decisions_from_choice, layer_runtime
from spnas.space import SearchSpace
from spnas.tables.cost import KINDS, MODELS, CostTable, CostTableError, _check_model
from spnas.tables.table import LatencyTable, LatencyTableError

__all__ = ["MODELS", "BoundTable", "bind", "latency_range_ms", "layer_runtime_exact",
           "layer_runtime_paper", "predict_ms"]


def layer_runtime_paper(entries: dict[str, float], choice: str) -> float:
    """Eq. 11-12 with hard decisions for one searchable four-candidate layer."""
    return float(layer_runtime(entries, *decisions_from_choice(choice)))


def layer_runtime_exact(entries: dict[str, float], choice: str) -> float:
    """The table entry of the chosen candidate (its projection for a skip that has one, else 0)."""
    return float(entries.get(SKIP, 0.0)) if choice == SKIP else entries[choice]


@dataclasses.dataclass(frozen=True)
class BoundTable(CostTable):
    """A latency table checked against a search space, once: the latency use of
    :class:`~spnas.tables.cost.CostTable` (ms, a sum, the paper's ratio).

    Create it with :func:`bind`. Attributes beside the cost table's: ``table``
    (the loaded :class:`LatencyTable`) and ``strict`` (False for a proxy table of
    another input size).
    """

    table: LatencyTable | None = None
    strict: bool = True

    @property
    def device(self) -> str:
        return self.table.device

    @property
    def label(self) -> str:
        return repr(self.table.device)

    @property
    def constant_ms(self) -> float:
        return self.constant

    def summary(self) -> dict:
        """What arch.json records about the table (device, path, sha256, ...)."""
        return self.table.summary()

    def supernet_latency(self) -> dict:
        """The part of the table the supernet needs, as a plain (serialisable) dict."""
        return self.supernet_cost()

    def layer_ms(self, index: int, choice: str, model: str = "paper") -> float:
        """Predicted runtime of searchable layer ``index`` under ``choice``."""
        return self.layer_cost(index, choice, model)

    def predict_ms(self, choices: Sequence[str], model: str = "paper") -> float:
        """Predicted end-to-end latency (ms) of ``choices`` (one per layer, fixed included)."""
        return self.predict(choices, model)

    def range_ms(self, model: str = "paper") -> tuple[float, float]:
        """(fastest, slowest) predicted latency over the whole space."""
        return self.range(model)


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
    unit, reduction = KINDS["latency"]
    try:
        return BoundTable(space, "latency", unit, reduction, table.constant_ms,
                          {i: dict(table.layers[i]) for i in space.searchable_indices()},
                          paper_ratio=True, table=table, strict=strict)
    except CostTableError as e:
        raise LatencyTableError(f"Latency table {table._name()}: {e}") from None


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
    _check_model(model)
    if space is None:
        space = table.space if isinstance(table, BoundTable) else SearchSpace()
    return bind(table, space, strict).predict_ms(choices, model)


def latency_range_ms(
    table: LatencyTable | BoundTable, space: SearchSpace, model: str = "paper", strict: bool = True
) -> tuple[float, float]:
    """(fastest, slowest) predicted latency over the whole space (see BoundTable)."""
    return bind(table, space, strict).range_ms(model)
