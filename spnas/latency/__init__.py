"""Latency on a device: profiling tables (host LiteRT, adb), validating them against
whole networks, and the host's speed drift (paper Sec. 3.4).

* :mod:`~spnas.latency.probe`: the Keras models timed (layers, fixed parts,
  overhead probe, whole networks) and their conversion;
* :mod:`~spnas.latency.runtimes`: the precision (float32, int8) and runtime
  (LiteRT, ONNX Runtime) a table's models are converted to and timed with;
* :mod:`~spnas.latency.timing`, :mod:`~spnas.latency.cpus`: timing on this host;
  :mod:`~spnas.latency.adb`: on an Android device;
* :mod:`~spnas.latency.build`: the table from the timings;
  :mod:`~spnas.latency.profile`: the profiling run;
* :mod:`~spnas.latency.validate` (paper Fig. 7), :mod:`~spnas.latency.drift`;
* :mod:`~spnas.latency.offline`: predict and import (no timing);
* ``spnas-latency``: :mod:`~spnas.latency.main`, :mod:`~spnas.latency.cli_flags`
  and one ``cmd_*`` module per subcommand.

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
