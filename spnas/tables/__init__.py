"""Latency tables (paper Sec. 3.4): the file format, the runtime models and the
shipped tables. Keras-free; the profiling tools that make tables live in
:mod:`spnas.latency`.
"""

from spnas.tables.runtime_model import (
    MODELS,
    BoundTable,
    bind,
    latency_range_ms,
    layer_runtime_exact,
    layer_runtime_paper,
    predict_ms,
)
from spnas.tables.shipped import resolve as resolve_table_path
from spnas.tables.table import (
    FORMAT,
    LatencyTable,
    LatencyTableError,
    import_original,
    load_table,
    save_table,
    table_from_json,
)

__all__ = [
    "FORMAT",
    "MODELS",
    "BoundTable",
    "LatencyTable",
    "LatencyTableError",
    "bind",
    "import_original",
    "latency_range_ms",
    "layer_runtime_exact",
    "layer_runtime_paper",
    "load_table",
    "predict_ms",
    "resolve_table_path",
    "save_table",
    "table_from_json",
]
