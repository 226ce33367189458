"""TFLite export, LiteRT execution and timing (the deployment edge of the paper, Sec. 4).

* :mod:`spnas.export.tflite`: Keras -> float and full-integer (int8) TFLite.
* :mod:`spnas.export.litert`: run a ``.tflite`` with the LiteRT interpreter,
  time ``invoke()``, count ops.
* :mod:`spnas.export.report`: export a trained model and write
  ``export_report.json``; :mod:`spnas.export.main` is ``spnas-export``.

Importing the package imports nothing else: ``spnas-export`` reads its flags
before TensorFlow loads (see :mod:`spnas.cli`).
"""
