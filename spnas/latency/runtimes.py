"""What a latency table is measured as: the precision and the runtime of its models.

FBNet's latency table is of int8 ops because phones run int8 (Wu et al., 2019),
and a float table mispredicts an int8 deployment: on the 2-core host a searched
CIFAR-10 net of 0.290 ms as float TFLite took 0.359 ms as full-integer int8
TFLite. A table is therefore profiled, and validated, as one
:class:`Deployment`:

* ``precision``: ``float32`` (float TFLite / float ONNX) or ``int8``
  (full-integer TFLite, :func:`spnas.export.tflite.convert_int8`);
* ``runtime``: ``litert`` (the LiteRT interpreter, or ``benchmark_model`` on a
  device) or ``onnxruntime`` (ONNX Runtime on this host,
  :mod:`spnas.export.onnx`).

int8 probe models are calibrated with :data:`CALIBRATION_SAMPLES` seeded
standard-normal inputs of the model's input shape, not real images: the
activation ranges (scales) they give differ from a trained net's, but the int8
kernels do the same work whatever the scales, so the timing is that of the
deployed model. Between the layers of a network the tensors stay int8, so a
layer's model has int8 input and output; only the stem takes float32 images
and only the head returns float32 logits, as the whole int8 network does
(one QUANTIZE, one DEQUANTIZE).

int8 ONNX (QDQ models from a quantizer) is not supported.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from spnas.errors import UserError
from spnas.export.litert import litert_version, prepare_for_timing
from spnas.export.onnx import (
    convert_onnx,
    converter_version,
    onnxruntime_version,
    prepare_onnx_for_timing,
    require_onnx,
)
from spnas.export.tflite import convert_float, convert_int8

PRECISIONS = ("float32", "int8")
RUNTIMES = ("litert", "onnxruntime")
RUNTIME_NAMES = {"litert": "LiteRT", "onnxruntime": "ONNX Runtime"}
# Random inputs each int8 probe model is calibrated with (timing only; see above).
CALIBRATION_SAMPLES = 8
CALIBRATION_INPUT_SEED = 7
# The in-process graph path converts ~4x faster than the SavedModel one and
# gives the same TFLite graph (spnas.export.tflite).
TFLITE_METHOD = "graph"


class DeploymentError(UserError):
    """A precision/runtime combination that cannot be profiled or validated as asked."""


@dataclasses.dataclass(frozen=True)
class Deployment:
    """The precision and runtime a table's models are converted to and timed with."""

    precision: str = "float32"
    runtime: str = "litert"

    def check(self, on_device: bool = False) -> Deployment:
        """Raises DeploymentError (one line) for an unknown or unsupported combination.

        Also checks that the ``[onnx]`` packages are installed for ONNX Runtime.
        """
        if self.precision not in PRECISIONS:
            raise DeploymentError(
                f"Unknown precision {self.precision!r}; expected one of {PRECISIONS}.")
        if self.runtime not in RUNTIMES:
            raise DeploymentError(f"Unknown runtime {self.runtime!r}; expected one of {RUNTIMES}.")
        if self.runtime == "onnxruntime":
            if self.precision == "int8":
                raise DeploymentError(
                    "--precision=int8 needs --runtime=litert: int8 ONNX models are not "
                    "supported (profile int8 with LiteRT, or float32 with ONNX Runtime).")
            if on_device:
                raise DeploymentError(
                    "--runtime=onnxruntime times on this host only; --target=adb runs TFLite "
                    "models with benchmark_model (use --runtime=litert).")
            require_onnx("--runtime=onnxruntime")
        return self

    @property
    def runtime_name(self) -> str:
        return RUNTIME_NAMES[self.runtime]

    @property
    def model_kind(self) -> str:
        """``float TFLite``, ``int8 TFLite`` or ``float ONNX`` (for the table's texts)."""
        fmt = "ONNX" if self.runtime == "onnxruntime" else "TFLite"
        return f"{'int8' if self.precision == 'int8' else 'float'} {fmt}"

    @property
    def suffix(self) -> str:
        """The file extension of its models."""
        return ".onnx" if self.runtime == "onnxruntime" else ".tflite"

    def to_json(self) -> dict:
        return {"precision": self.precision, "runtime": self.runtime}

    def runtime_version(self) -> str:
        return onnxruntime_version() if self.runtime == "onnxruntime" else litert_version()

    def converter(self) -> str:
        """What made the models, for the table's ``extra["converter"]``."""
        if self.runtime == "onnxruntime":
            return f"{converter_version()} (TensorFlow {tf.__version__}), float32"
        if self.precision == "int8":
            return (f"TensorFlow {tf.__version__} TFLiteConverter, full-integer int8 "
                    f"(calibrated on {CALIBRATION_SAMPLES} seeded random inputs)")
        return f"TensorFlow {tf.__version__} TFLiteConverter, float32"


FLOAT_LITERT = Deployment()  # what every table was before deployments were recorded


def random_calibration(model, n: int = CALIBRATION_SAMPLES,
                       seed: int = CALIBRATION_INPUT_SEED) -> np.ndarray:
    """``n`` seeded standard-normal inputs ``[n, *input shape]`` of ``model`` (timing only)."""
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def convert_for(model, deployment: Deployment, float_input: bool = True,
                float_output: bool = True) -> bytes:
    """The model as ``deployment`` runs it: float/int8 TFLite bytes or ONNX bytes.

    ``float_input`` / ``float_output`` apply to int8 only: False keeps that end
    int8 (a layer inside a network; see the module docstring).
    """
    if deployment.runtime == "onnxruntime":
        return convert_onnx(model)
    if deployment.precision == "int8":
        return convert_int8(model, [random_calibration(model)], num_samples=CALIBRATION_SAMPLES,
                            method=TFLITE_METHOD, int8_input=not float_input,
                            int8_output=not float_output)
    return convert_float(model, method=TFLITE_METHOD)


def prepare(model_bytes: bytes, runtime: str = "litert", threads: int = 1, seed: int = 0):
    """A ready-to-time runner of ``model_bytes``: ``invoke()`` runs it once, input set."""
    if runtime == "onnxruntime":
        return prepare_onnx_for_timing(model_bytes, threads=threads, seed=seed)
    return prepare_for_timing(model_bytes, threads=threads, seed=seed)
