"""Table work that needs no timing: predicting an architecture's latency, importing
the original release's table (Keras-free; ``spnas-latency predict`` and ``import``).
"""

from __future__ import annotations

import dataclasses
import os

from spnas.arch.handoff import load_arch
from spnas.arch.registry import get_arch
from spnas.arch.stages import ArchError
from spnas.fileio import check_output_file, one_line, sha256_file
from spnas.space import CANDIDATES, SearchSpace, uniform_choices
from spnas.tables import runtime_model
from spnas.tables.table import (
    FORMAT,
    LatencyTable,
    LatencyTableError,
    import_original,
    is_original_format,
    read_table_json,
    save_table,
    table_from_json,
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

    An architecture that records no space of its own (``all_<choice>``, a
    registry net without one) is read in the table's recorded space, so
    ``--table=embedded_cpu --arch=all_k3_e3`` predicts on the embedded space.

    Returns ``{"table": LatencyTable, "path", "choices", "ms"}``.
    """
    path, data = read_table_json(table)
    loaded = table_from_json(data, path=path)
    recorded = loaded.extra.get("space")
    try:
        default = SearchSpace.from_dict(recorded) if isinstance(recorded, dict) else None
    except (TypeError, ValueError) as e:
        raise LatencyTableError(f"Latency table {path!r}: its 'space' is not a search "
                                f"space: {one_line(e)}") from None
    choices, space, _ = resolve_arch(arch, default)
    loaded = dataclasses.replace(loaded, sha256=sha256_file(path))
    loaded.validate_for(space)
    ms = runtime_model.predict_ms(loaded, choices, space, model=model)
    return {"table": loaded, "path": path, "choices": choices, "ms": ms}


def import_table(source: str, out: str, constant_ms: float, device: str) -> LatencyTable:
    """Converts the original release's table file ``source`` and writes it to ``out``.

    Raises:
      LatencyTableError: ``source`` is unreadable, not JSON, already in spnas
        format, or not the original's layer-indexed layout (one line naming it).
      FileNotFoundError, PermissionError: ``source`` missing or unreadable,
        ``out`` not writable.
    """
    check_output_file(out, "Output table", LatencyTableError)
    path, data = read_table_json(source)
    if isinstance(data, dict) and data.get("format") == FORMAT:
        raise LatencyTableError(
            f"Latency table {path!r} is already in spnas format ({FORMAT!r}); import converts "
            "the original release's table. Use it as it is."
        )
    if not is_original_format(data):
        raise LatencyTableError(
            f"Latency table {path!r} is not in the original release's format: expected a JSON "
            'object {"0": {"0": ms, "1": ms, "2": ms, "3": ms}, "1": {...}, ...} with one entry '
            "per layer."
        )
    table = import_original(data, constant_ms=constant_ms, device=device, path=path)
    save_table(table, out)
    return table
