"""Keras -> ONNX, and running and timing ONNX models with ONNX Runtime on this host.

The paper profiles and deploys with one runtime, TFLite (Stamoulis et al.,
2019, Sec. 3.4); a latency table is only as good as its match to the runtime
the network ships with, and ONNX Runtime is the other common CPU deployment.
This module is that second runtime's edge, the counterpart of
:mod:`spnas.export.tflite` (conversion) and :mod:`spnas.export.litert`
(running and timing):

* :func:`convert_onnx`: a ``tf.function`` of the model in inference mode,
  traced once for batch 1 (or any batch), converted by ``tf2onnx``. Keras 3's
  own ``model.export(format="onnx")`` goes through the same converter but needs
  the model called once first and is slower (1.3 s against 0.7 s for one
  MBConv layer on the 2-core host), so the profiler calls the converter itself.
* :func:`make_session`: an ``InferenceSession`` on the CPU provider with
  ``intra_op_num_threads = threads`` (one by default, like the LiteRT timing),
  one inter-op thread, sequential execution and all graph optimizations on.
* :func:`prepare_onnx_for_timing`: a session with its input bound once
  (``io_binding``), wrapped so that ``invoke()`` runs it: the timing loops of
  :mod:`spnas.latency.timing` time ONNX Runtime exactly as they time LiteRT's
  ``invoke()`` (input already set, output left in place).

The packages are optional (``pip install 'spnas[onnx]'``: onnxruntime, onnx,
tf2onnx); :func:`require_onnx` names what is missing in one line.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import logging

import numpy as np
import tensorflow as tf

from spnas.errors import UserError
from spnas.fileio import one_line

# The extra's packages: import name -> distribution name.
PACKAGES = {"onnxruntime": "onnxruntime", "onnx": "onnx", "tf2onnx": "tf2onnx"}
OPSET = 17  # ONNX opset of the exports (ONNX Runtime >= 1.14 runs it)
INPUT_NAME = "input"


class OnnxUnavailable(UserError):
    """The ONNX packages (the ``[onnx]`` extra) are not installed."""


class OnnxError(UserError):
    """A model cannot be converted to ONNX, loaded or run by ONNX Runtime."""


def missing_packages() -> list[str]:
    """The ``[onnx]`` extra's packages that cannot be imported here."""
    missing = []
    for name in PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def onnx_available() -> bool:
    """Whether onnxruntime, onnx and tf2onnx can all be imported."""
    return not missing_packages()


def require_onnx(what: str = "ONNX Runtime") -> None:
    """Raises OnnxUnavailable (one line naming the missing packages) unless all import."""
    missing = missing_packages()
    if missing:
        raise OnnxUnavailable(
            f"{what} needs the [onnx] extra, which is not installed (missing: "
            f"{', '.join(missing)}); install it with: pip install 'spnas[onnx]'."
        )


def onnxruntime_version() -> str:
    """The installed ``onnxruntime`` version (``unknown`` if not found)."""
    try:
        return importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def converter_version() -> str:
    """``tf2onnx <version>, opset <n>`` (what made the models)."""
    try:
        version = importlib.metadata.version("tf2onnx")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"tf2onnx {version}, opset {OPSET}"


@contextlib.contextmanager
def _quiet():
    """Keeps the converter's per-model INFO lines (opset, optimizer passes) out of the output."""
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def convert_onnx(model, batch: int | None = 1) -> bytes:
    """The float32 ONNX model of a built single-input Keras model.

    Args:
      model: a built single-input ``keras.Model``.
      batch: the batch dimension of the ONNX input (None: any batch).

    Raises:
      OnnxUnavailable: the packages are missing.
      OnnxError: the model has no single input, or the converter fails.
    """
    require_onnx("ONNX export")
    import tf2onnx  # optional: checked above

    if not getattr(model, "inputs", None) or len(model.inputs) != 1:
        raise OnnxError(f"Model {getattr(model, 'name', model)!r} must be a built Keras model "
                        "with exactly one input.")
    shape = (batch, *tuple(model.inputs[0].shape)[1:])
    spec = (tf.TensorSpec(shape, tf.float32, name=INPUT_NAME),)
    fn = tf.function(lambda x: model(x, training=False))
    try:
        with _quiet():
            proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=OPSET)
    except Exception as e:  # the converter raises many error types
        raise OnnxError(f"ONNX conversion failed: {one_line(e)}") from e
    return proto.SerializeToString()


def make_session(onnx_bytes: bytes, threads: int = 1):
    """An ONNX Runtime CPU session: ``threads`` intra-op threads, sequential, optimized.

    Raises:
      OnnxUnavailable: onnxruntime is missing.
      OnnxError: bad thread count, or bytes ONNX Runtime cannot load.
    """
    require_onnx()
    import onnxruntime as ort  # optional: checked above

    if threads < 1:
        raise OnnxError(f"threads must be >= 1, got {threads}.")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(bytes(onnx_bytes), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own private error types
        raise OnnxError(f"ONNX Runtime cannot load the model: {one_line(e)}") from e


def run_onnx(onnx_bytes: bytes, inputs: np.ndarray, threads: int = 1) -> np.ndarray:
    """Runs a single-input, single-output model on a batch, one image at a time for batch 1."""
    session = make_session(onnx_bytes, threads)
    (inp,) = session.get_inputs()
    x = np.asarray(inputs, dtype=np.float32)
    batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
    if batch is None:
        return np.asarray(session.run(None, {inp.name: x})[0], dtype=np.float32)
    chunks = [session.run(None, {inp.name: x[i:i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(chunks).astype(np.float32)


class OnnxTimer:
    """A session with its input bound once; :meth:`invoke` runs it (timing loops call it).

    Attributes:
      session: the ``InferenceSession``.
      binding: its ``IOBinding`` (input bound, output on the CPU).
    """

    def __init__(self, session, binding, inputs: np.ndarray):
        self.session = session
        self.binding = binding
        self.inputs = inputs  # the bound buffer must outlive the binding

    def invoke(self) -> None:
        self.session.run_with_iobinding(self.binding)


def prepare_onnx_for_timing(onnx_bytes: bytes, threads: int = 1, seed: int = 0) -> OnnxTimer:
    """An :class:`OnnxTimer` with a fixed seeded normal input (as the LiteRT timing)."""
    session = make_session(onnx_bytes, threads)
    (inp,) = session.get_inputs()
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    binding = session.io_binding()
    binding.bind_cpu_input(inp.name, x)
    for out in session.get_outputs():
        binding.bind_output(out.name, "cpu")
    timer = OnnxTimer(session, binding, x)
    timer.invoke()  # allocates the outputs once, before any timing
    return timer
