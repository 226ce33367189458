"""Table work that needs no timing: predicting an architecture's latency, importing
the original release's table (Keras-free; ``spnas-latency predict`` and ``import``).
"""

from __future__ import annotations

import json
import os

from spnas.arch.handoff import load_arch
from spnas.arch.registry import get_arch
from spnas.arch.stages import ArchError
from spnas.space import CANDIDATES, SearchSpace, uniform_choices
from spnas.tables import runtime_model, shipped
from spnas.tables.table import (
    LatencyTable,
    LatencyTableError,
    import_original,
    load_table,
    save_table,
)


def resolve_arch(arch: str, space: SearchSpace | None = None):
    """Returns (choices, space, label) for a registry name, arch.json or all_<choice>."""
    if arch.startswith("all_") and arch[4:] in CANDIDATES:
        space = space or SearchSpace()
        return uniform_choices(space, arch[4:]), space, arch
    if arch.endswith(".json") or os.path.sep in arch:
        data = load_arch(arch)
        space = SearchSpace.from_dict(data["space"]) if "space" in data else (space or SearchSpace())
        return list(data["layers"]), space, arch
    entry = get_arch(arch)
    if entry.choices is None:
        raise ArchError(f"Architecture {arch!r} is not in the single-path search space.")
    return list(entry.choices), entry.space or SearchSpace(), arch


def predict(table: str, arch: str, model: str = "paper") -> dict:
    """The predicted latency of ``arch`` with ``table`` (a path or a shipped table's name).

    Returns ``{"table": LatencyTable, "path", "choices", "ms"}``.
    """
    choices, space, _ = resolve_arch(arch)
    path = shipped.resolve(table)
    loaded = load_table(path, space=space)
    ms = runtime_model.predict_ms(loaded, choices, space, model=model)
    return {"table": loaded, "path": path, "choices": choices, "ms": ms}


def import_table(source: str, out: str, constant_ms: float, device: str) -> LatencyTable:
    """Converts the original release's table file ``source`` and writes it to ``out``."""
    with open(source) as f:
        try:
            data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise LatencyTableError(f"Latency table {source!r} is not valid JSON: {e}.") from None
    table = import_original(data, constant_ms=constant_ms, device=device, path=source)
    save_table(table, out)
    return table
