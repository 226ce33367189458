"""Runtime predictions from a latency table (paper Eq. 10-12), in NumPy.

``paper`` is the model the search differentiates (Eq. 11-12: k3e3 approximated
as ``R_k5e3 * R_k3e6 / R_k5e6``); ``exact`` sums the table entry of each chosen
candidate. Both add the table's constant (stem, head, fixed layers).
"""

from __future__ import annotations

from collections.abc import Sequence

from spnas.latency.table import LatencyTable
from spnas.search.space import SKIP, SearchSpace, parse_choice, validate_choices

MODELS = ("paper", "exact")


def layer_runtime_paper(entries: dict[str, float], choice: str) -> float:
    """Eq. 11-12 with hard decisions for one searchable layer."""
    if choice == SKIP:
        return 0.0
    k, e = parse_choice(choice)
    d5x5 = 1.0 if k == 5 else 0.0
    d100c = 1.0 if e == 6 else 0.0
    ratio = entries["k3_e6"] / entries["k5_e6"]
    r_ch = entries["k5_e3"] + d100c * (entries["k5_e6"] - entries["k5_e3"])
    return r_ch * ratio + r_ch * (1.0 - ratio) * d5x5


def layer_runtime_exact(entries: dict[str, float], choice: str) -> float:
    return 0.0 if choice == SKIP else entries[choice]


def predict_ms(
    table: LatencyTable,
    choices: Sequence[str],
    space: SearchSpace | None = None,
    model: str = "paper",
    strict: bool = True,
) -> float:
    """Predicted end-to-end latency (ms) of an architecture of the space.

    Args:
      table: the latency table.
      choices: one choice per supernet layer (fixed layers included).
      space: the search space; defaults to the paper's ImageNet space.
      model: ``paper`` (Eq. 11-12) or ``exact`` (table lookup).
      strict: check the table's input size and layer shapes too (False for a
        proxy table; see LatencyTable.validate_for).
    """
    if model not in MODELS:
        raise ValueError(f"Unknown runtime model {model!r}; expected one of {MODELS}.")
    space = space or SearchSpace()
    table.validate_for(space, strict=strict)
    choices = validate_choices(space, choices)
    fn = layer_runtime_paper if model == "paper" else layer_runtime_exact
    total = table.constant_ms
    for layer, choice in zip(space.layers(), choices):
        if layer.searchable:
            total += fn(table.entries(layer.index), choice)
    return float(total)


def latency_range_ms(table: LatencyTable, space: SearchSpace, model: str = "paper") -> tuple[float, float]:
    """(fastest, slowest) predicted latency over the whole space.

    The model is additive over layers, so the extremes are per-layer extremes.
    """
    fn = layer_runtime_paper if model == "paper" else layer_runtime_exact
    lo = hi = table.constant_ms
    for layer in space.layers():
        if not layer.searchable:
            continue
        options = ("k3_e3", "k3_e6", "k5_e3", "k5_e6") + ((SKIP,) if layer.skippable else ())
        values = [fn(table.entries(layer.index), c) for c in options]
        lo += min(values)
        hi += max(values)
    return float(lo), float(hi)
