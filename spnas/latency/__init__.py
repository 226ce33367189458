"""Latency tables and runtime models (paper Sec. 3.4)."""

from spnas.latency.runtime_model import latency_range_ms, predict_ms
from spnas.latency.table import (
    FORMAT,
    LatencyTable,
    LatencyTableError,
    import_original,
    load_table,
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
