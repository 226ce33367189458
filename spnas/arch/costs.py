"""Every cost of a decoded net, each with its unit: what arch.json's ``costs`` records.

Latency comes from a profiled or imported table (when the search had one that fits
its space); MACs, parameters and peak activation memory are counted exactly from
the layer plans (:mod:`spnas.arch.params`, :mod:`spnas.arch.memory`).
"""

from __future__ import annotations

from collections.abc import Sequence

from spnas.arch.memory import ActivationTable
from spnas.arch.params import MacsTable, ParamsTable
from spnas.space import SearchSpace
from spnas.tables.cost import CostTable

__all__ = ["COST_KINDS", "cost_records", "cost_table"]

# The costs a search may target (additive tables), by ``config.cost``.
COST_KINDS = ("latency", "macs", "params")


def cost_table(kind: str, space: SearchSpace) -> CostTable:
    """The analytic table of ``kind`` (``macs``, ``params`` or ``activation``) of ``space``."""
    makers = {"macs": MacsTable, "params": ParamsTable, "activation": ActivationTable}
    if kind not in makers:
        raise ValueError(f"No analytic {kind!r} table; expected one of {tuple(makers)}.")
    return makers[kind].from_space(space)


def cost_records(space: SearchSpace, choices: Sequence[str],
                 latency: CostTable | None = None) -> dict:
    """``{kind: {"value", "unit", "kind", "reduction"}}`` of ``choices``: latency (with a
    table; the exact table sum), MACs, parameters and peak activation memory."""
    tables = [latency] if latency is not None else []
    tables += [cost_table(kind, space) for kind in ("macs", "params", "activation")]
    return {t.kind: t.cost_record(choices) for t in tables}
