"""Running and timing TFLite models with the LiteRT interpreter (``ai_edge_litert``).

Single-Path NAS profiles each candidate layer on the target device with the
deployment runtime and sums the per-layer medians (Stamoulis et al., 2019,
Sec. 3.4, Eq. 10); these helpers do the host-side equivalent. Latency is the
wall time of ``Interpreter.invoke()`` alone (``time.perf_counter``), after a
warm-up, with the input already set. The interpreter is created with its
defaults, so on x86/ARM CPUs LiteRT applies its XNNPACK delegate to float and
int8 graphs, as a deployed app would.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import time
from collections import Counter

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from spnas.export.tflite import ExportError
from spnas.fileio import one_line, read_input_bytes

# Invokes before timing (allocations, caches, delegate set-up). On our 2-core
# VM the first few hundred invokes of a 32x32 net ran up to 30 % slower than
# later ones, so the warm-up is longer than the usual handful.
DEFAULT_WARMUP = 200
DEFAULT_REPEATS = 1000  # timed invokes; min and p10 need many to be repeatable


def litert_version() -> str:
    """The installed ``ai-edge-litert`` version (``unknown`` if not found)."""
    try:
        return importlib.metadata.version("ai-edge-litert")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Summary of timed ``invoke()`` calls (milliseconds).

    Attributes:
      median_ms, mean_ms, p10_ms, p90_ms, min_ms: statistics of the timed
        invokes (``min`` is the most repeatable on a shared host).
      spread: ``(p90 - p10) / median``, a scale-free noise measure.
      repeats: number of timed invokes.
      threads: interpreter threads.
    """

    median_ms: float
    mean_ms: float
    p10_ms: float
    p90_ms: float
    spread: float
    repeats: int
    threads: int
    min_ms: float = math.nan

    @classmethod
    def from_samples(cls, samples_ms, threads: int) -> LatencyStats:
        """Statistics of raw per-invoke times in ms."""
        t = np.asarray(samples_ms, dtype=np.float64)
        if t.size == 0:
            raise ValueError("No latency samples.")
        median = float(np.median(t))
        p10, p90 = (float(v) for v in np.percentile(t, [10, 90]))
        return cls(
            median_ms=median,
            mean_ms=float(t.mean()),
            p10_ms=p10,
            p90_ms=p90,
            spread=(p90 - p10) / median if median > 0 else float("inf"),
            repeats=int(t.size),
            threads=int(threads),
            min_ms=float(t.min()),
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def make_interpreter(tflite_bytes: bytes, threads: int = 1, delegates: bool = True):
    """A LiteRT interpreter with tensors allocated.

    Args:
      tflite_bytes: the flatbuffer.
      threads: ``num_threads`` of the interpreter (>= 1).
      delegates: apply LiteRT's default delegates (XNNPACK on CPU); False gives
        the plain built-in kernels (used to list the model's own ops).

    Raises:
      ExportError: bad thread count or bytes that are not a TFLite model.
    """
    if threads < 1:
        raise ExportError(f"threads must be >= 1, got {threads}.")
    if not isinstance(tflite_bytes, (bytes, bytearray)) or not tflite_bytes:
        raise ExportError("Expected the bytes of a .tflite model.")
    if not is_tflite(tflite_bytes):
        raise ExportError("LiteRT cannot load the model: the bytes are not a TFLite "
                          "flatbuffer (no 'TFL3' identifier).")
    resolver = (OpResolverType.AUTO if delegates
                else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    try:
        interp = Interpreter(model_content=bytes(tflite_bytes), num_threads=threads,
                             experimental_op_resolver_type=resolver)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ExportError(f"LiteRT cannot load the model: {one_line(e)}") from e
    return interp


def is_tflite(data: bytes) -> bool:
    """Whether ``data`` starts like a TFLite flatbuffer (file identifier ``TFL3``)."""
    return len(data) >= 8 and bytes(data[4:8]) == b"TFL3"


def read_tflite(path: str, what: str = "TFLite model") -> bytes:
    """The bytes of a ``.tflite`` file, checked: every failure one line naming the file.

    The file must be a readable, non-empty TFLite flatbuffer that LiteRT loads.

    Raises:
      FileNotFoundError, PermissionError: missing or unreadable.
      ExportError: a directory, empty, not a TFLite flatbuffer, or damaged.
    """
    data = read_input_bytes(path, what, ExportError)
    if not is_tflite(data):
        raise ExportError(f"{what} {path!r} is not a TFLite flatbuffer (no 'TFL3' identifier).")
    try:
        make_interpreter(data, delegates=False)
    except ExportError as e:
        reason = str(e).removeprefix("LiteRT cannot load the model: ").rstrip(".")
        raise ExportError(f"{what} {path!r} is damaged or truncated: {reason}.") from None
    return data


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    q = np.round(x / scale + zero)
    return np.clip(q, info.min, info.max).astype(detail["dtype"])


def _dequantize(q: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if not scale:  # not a quantized tensor
        return q.astype(np.float32)
    return ((q.astype(np.float32) - zero) * scale).astype(np.float32)


def run_tflite(tflite_bytes: bytes, inputs: np.ndarray, threads: int = 1) -> np.ndarray:
    """Runs a single-input, single-output model on a batch.

    Integer (int8/uint8) input tensors get ``inputs`` quantized with the
    tensor's scale and zero point, integer outputs are dequantized, so the
    caller always passes and receives float32.

    Args:
      tflite_bytes: the flatbuffer.
      inputs: float array ``[N, ...]`` matching the model's input (without batch).
      threads: interpreter threads.

    Returns:
      float32 outputs ``[N, ...]``.

    Raises:
      ExportError: the input shape does not match the model.
    """
    interp = make_interpreter(tflite_bytes, threads)
    (inp,) = interp.get_input_details()
    x = np.asarray(inputs, dtype=np.float32)
    want = tuple(int(d) for d in inp["shape"][1:])
    if x.ndim != len(inp["shape"]) or x.shape[1:] != want:
        raise ExportError(f"Model input is [N, {', '.join(map(str, want))}], got {x.shape}.")
    n = x.shape[0]
    batch = int(inp["shape"][0])
    if batch != n and int(inp["shape_signature"][0]) == -1:
        interp.resize_tensor_input(inp["index"], [n, *want])
        interp.allocate_tensors()
        (inp,) = interp.get_input_details()
        batch = n
    chunks = []
    for start in range(0, n, batch):
        part = x[start : start + batch]
        if part.shape[0] != batch:  # fixed-batch model and a ragged tail
            part = np.concatenate([part, np.zeros((batch - part.shape[0], *want), np.float32)])
        if np.issubdtype(inp["dtype"], np.integer):
            part = _quantize(part, inp)
        interp.set_tensor(inp["index"], part.astype(inp["dtype"]))
        interp.invoke()
        (out,) = interp.get_output_details()
        chunks.append(_dequantize(interp.get_tensor(out["index"]), out))
    return np.concatenate(chunks)[:n]


def _timing_input(detail: dict, seed: int) -> np.ndarray:
    # Values do not change the work of conv nets; a seeded normal avoids
    # denormal/zero fast paths that an all-zeros input could hit.
    x = np.random.default_rng(seed).standard_normal(tuple(detail["shape"])).astype(np.float32)
    return _quantize(x, detail) if np.issubdtype(detail["dtype"], np.integer) else x


def time_invokes(interp, count: int) -> list[float]:
    """Times ``count`` calls of ``interp.invoke()``; returns ms per call."""
    out = []
    for _ in range(count):
        start = time.perf_counter()
        interp.invoke()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def prepare_for_timing(tflite_bytes: bytes, input_shape=None, threads: int = 1, seed: int = 0):
    """An interpreter with a fixed input set, ready for :func:`time_invokes`.

    Args:
      tflite_bytes: the flatbuffer.
      input_shape: full input shape including batch; None keeps the model's.
      threads: interpreter threads.
      seed: seed of the input values.
    """
    interp = make_interpreter(tflite_bytes, threads)
    (inp,) = interp.get_input_details()
    if input_shape is not None and tuple(input_shape) != tuple(inp["shape"]):
        try:
            interp.resize_tensor_input(inp["index"], list(input_shape))
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ExportError(
                f"Cannot run the model with input shape {tuple(input_shape)} "
                f"(its input is {tuple(inp['shape'])}): {e}"
            ) from e
        (inp,) = interp.get_input_details()
    interp.set_tensor(inp["index"], _timing_input(inp, seed))
    return interp


def measure_latency(
    tflite_bytes: bytes,
    input_shape=None,
    threads: int = 1,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    seed: int = 0,
) -> LatencyStats:
    """Median (and spread) of the wall time of ``invoke()``.

    Args:
      tflite_bytes: the flatbuffer.
      input_shape: full input shape including batch (e.g. ``(1, 32, 32, 3)``);
        None keeps the model's own.
      threads: interpreter threads.
      warmup: untimed invokes first.
      repeats: timed invokes.
      seed: seed of the (fixed) input values.

    Raises:
      ExportError: bad counts, shapes or model bytes.
    """
    if repeats < 1 or warmup < 0:
        raise ExportError(f"Need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}.")
    interp = prepare_for_timing(tflite_bytes, input_shape, threads, seed)
    time_invokes(interp, warmup)
    return LatencyStats.from_samples(time_invokes(interp, repeats), threads)


def op_counts(tflite_bytes: bytes) -> dict[str, int]:
    """Built-in op names of the model and how often each occurs.

    Read from an interpreter without the default delegates, so the counts are
    the model's own ops (``CONV_2D``, ``DEPTHWISE_CONV_2D``, ...), not
    ``DELEGATE`` nodes.
    """
    interp = make_interpreter(tflite_bytes, threads=1, delegates=False)
    counts = Counter(op["op_name"] for op in interp._get_ops_details())
    return dict(sorted(counts.items()))


def delegated(tflite_bytes: bytes, threads: int = 1) -> bool:
    """Whether LiteRT's default delegate (XNNPACK on CPU) took over part of the graph."""
    interp = make_interpreter(tflite_bytes, threads)
    return any(op["op_name"] == "DELEGATE" for op in interp._get_ops_details())
