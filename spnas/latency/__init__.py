"""Latency on a device: profiling tables (host LiteRT, adb), validating them against
whole networks, and the host's speed drift (paper Sec. 3.4).

The table format and the runtime models are in :mod:`spnas.tables` (re-exported
here for callers of the earlier layout).
"""

from spnas.tables import (
    FORMAT,
    LatencyTable,
    LatencyTableError,
    import_original,
    latency_range_ms,
    load_table,
    predict_ms,
    save_table,
)

__all__ = [
    "FORMAT",
    "LatencyTable",
    "LatencyTableError",
    "import_original",
    "latency_range_ms",
    "load_table",
    "predict_ms",
    "save_table",
]
