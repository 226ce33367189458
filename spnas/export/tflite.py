"""Keras -> TFLite conversion: a float model and a full-integer (int8) model.

The paper deploys its searched ConvNet with TFLite on a Pixel 1 and profiles
the candidate layers with the same runtime (Stamoulis et al., 2019, Sec. 3.4
and 4); the release's training code adds post-training quantization with a
representative dataset. This module is the TensorFlow edge that produces both
flatbuffers from a Keras 3 model.

Two conversion paths give the same TFLite graph (BatchNormalization folded
into the convolutions, variables frozen):

* ``saved_model`` (default): ``tf.lite.TFLiteConverter.from_keras_model``. With
  Keras 3 in TF 2.21 it exports the model as a SavedModel (``model.export``)
  and converts that; the supported path, used for the deployable exports.
* ``graph``: a ``tf.function`` of the model in inference mode, traced once,
  given to ``from_concrete_functions`` without a trackable object, which
  freezes the variables in-process. TF marks this path deprecated, but it skips
  writing and re-reading a SavedModel and is about 4x faster (0.6 s instead of
  2.5 s for one MBConv layer on a 2-core host), which matters to the latency
  profiler that converts ~84 one-layer models per table.
  (``from_concrete_functions`` *with* the model as trackable object keeps the
  Keras 3 variables as ``VAR_HANDLE``/``READ_VARIABLE`` ops, which the int8
  calibrator cannot run, so neither path uses it.)

int8 models are fully integer inside (weights and activations int8, int32
biases; only ``TFLITE_BUILTINS_INT8`` ops are allowed, so conversion fails
rather than silently leaving float ops). By default their input and output stay
float32: the converter adds one QUANTIZE op at the input and one DEQUANTIZE at
the output, so the model is a drop-in replacement for the float one and takes
the same normalised images. ``int8_io=True`` gives int8 input and output
tensors instead (what a microcontroller deployment wants);
:func:`spnas.export.litert.run_tflite` applies the scales either way.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import warnings
from collections.abc import Iterable, Iterator

import numpy as np
import tensorflow as tf
from absl import logging as absl_logging

from spnas.errors import UserError

DEFAULT_NUM_CALIBRATION = 200  # images fed to the int8 calibrator
METHODS = ("saved_model", "graph")


class ExportError(UserError):
    """A model cannot be converted, loaded or run as asked."""


def _converter(model, method: str = "saved_model"):
    """A converter for ``model`` (see the module docstring for ``method``)."""
    if method not in METHODS:
        raise ExportError(f"Unknown conversion method {method!r}; expected one of {METHODS}.")
    if not getattr(model, "inputs", None) or len(model.inputs) != 1:
        raise ExportError(
            f"Model {getattr(model, 'name', model)!r} must be a built Keras model with exactly one "
            "input (build it with keras.Input or call it once on data before exporting)."
        )
    if method == "saved_model":
        return tf.lite.TFLiteConverter.from_keras_model(model)
    spec = tf.TensorSpec(tuple(model.inputs[0].shape), model.inputs[0].dtype)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete])


@contextlib.contextmanager
def _quiet():
    """Silences the converter's chatter for one conversion.

    It prints a SavedModel banner to stdout, warns through absl about the
    graph path's deprecation and logs "Using new converter" per model, and
    warns "Statistics for quantized inputs were expected" (the input stays
    float32 unless ``int8_io``, so there are none to give).
    """
    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            yield
    finally:
        absl_logging.set_verbosity(level)


def _convert(converter, what: str) -> bytes:
    try:
        with _quiet():
            return bytes(converter.convert())
    except Exception as e:  # the converter raises many private error types
        # The converter's messages end with the MLIR diagnostic that matters.
        last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ExportError(f"TFLite {what} conversion failed: {last}") from e


def convert_float(model, method: str = "saved_model") -> bytes:
    """Converts a Keras model to a float32 TFLite flatbuffer.

    Args:
      model: a built single-input ``keras.Model`` (functional or subclassed).
      method: ``saved_model`` (supported path) or ``graph`` (faster; see the
        module docstring).

    Returns:
      The ``.tflite`` flatbuffer.

    Raises:
      ExportError: the model has no single input or the converter fails.
    """
    with _quiet():
        converter = _converter(model, method)
    return _convert(converter, "float")


def _single_samples(representative: Iterable[np.ndarray], input_shape: tuple) -> Iterator[np.ndarray]:
    """Splits batches (or single images) into float32 batches of one."""
    for item in representative:
        if isinstance(item, (tuple, list)):  # (images, labels) batches from a dataset
            item = item[0]
        arr = np.asarray(item, dtype=np.float32)
        if arr.ndim == len(input_shape) - 1:
            arr = arr[None]
        if arr.shape[1:] != tuple(input_shape[1:]):
            raise ExportError(
                f"Representative images have shape {arr.shape[1:]}, the model takes "
                f"{tuple(input_shape[1:])}."
            )
        for i in range(arr.shape[0]):
            yield arr[i : i + 1]


def convert_int8(
    model,
    representative: Iterable[np.ndarray],
    num_samples: int = DEFAULT_NUM_CALIBRATION,
    int8_io: bool = False,
    *,
    method: str = "saved_model",
    int8_input: bool | None = None,
    int8_output: bool | None = None,
) -> bytes:
    """Converts a Keras model to a full-integer (int8) TFLite flatbuffer.

    Args:
      model: a built single-input ``keras.Model``.
      representative: real, preprocessed inputs for calibrating the activation
        ranges: arrays ``[B, H, W, C]`` or ``[H, W, C]``, or ``(images, labels)``
        pairs; batches are split into single images.
      num_samples: how many images to calibrate on (the first ones).
      int8_io: int8 input/output tensors instead of float32 ones.
      method: ``saved_model`` or ``graph`` (see the module docstring; both
        freeze the variables, so both calibrate).
      int8_input, int8_output: set the input or the output type alone (None:
        ``int8_io``). The latency profiler times a network's layers as separate
        models: int8 between layers, float32 only at the network's own input
        and output, so the sum has one QUANTIZE and one DEQUANTIZE, as the net.

    Returns:
      The ``.tflite`` flatbuffer.

    Raises:
      ExportError: no representative images, wrong shapes, or the converter
        cannot quantize an op to int8.
    """
    if num_samples < 1:
        raise ExportError(f"num_samples must be >= 1, got {num_samples}.")
    input_shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else None
    if input_shape is None:
        raise ExportError("Model must be built with one input before int8 conversion.")
    samples = list(itertools.islice(_single_samples(representative, input_shape), num_samples))
    if not samples:
        raise ExportError("int8 conversion needs at least one representative image; got none.")

    def dataset():
        for s in samples:
            yield [s]

    with _quiet():
        converter = _converter(model, method)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io if int8_input is None else int8_input:
        converter.inference_input_type = tf.int8
    if int8_io if int8_output is None else int8_output:
        converter.inference_output_type = tf.int8
    return _convert(converter, "int8")
