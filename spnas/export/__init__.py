"""TFLite export, LiteRT execution and timing (the deployment edge of the paper, Sec. 4).

* :mod:`spnas.export.tflite`: Keras -> float and full-integer (int8) TFLite.
* :mod:`spnas.export.litert`: run a ``.tflite`` with the LiteRT interpreter,
  time ``invoke()``, count ops.
* :mod:`spnas.export.report`: export a trained model and write
  ``export_report.json``; :mod:`spnas.export.main` is ``spnas-export``.

TensorFlow and LiteRT are imported only when a function needs them.
"""

from spnas.export.litert import LatencyStats, measure_latency, op_counts, run_tflite
from spnas.export.tflite import ExportError, convert_float, convert_int8

__all__ = [
    "ExportError",
    "LatencyStats",
    "convert_float",
    "convert_int8",
    "measure_latency",
    "op_counts",
    "run_tflite",
]
