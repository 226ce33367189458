"""Export a trained model to TFLite (float and int8) and report how faithful and fast it is.

The paper deploys its searched ConvNet with TFLite and quotes on-device
latency (Stamoulis et al., 2019, Table 1); the release adds post-training
quantization with a representative dataset. :func:`export_model` writes, into a
work directory, ``model_float.tflite``, ``model_int8.tflite`` and
``export_report.json`` (all atomically), with:

* file sizes and op counts of both flatbuffers;
* for the float model, max ``|Keras - LiteRT|`` over a batch of real images,
  absolute and relative to max ``|Keras|`` (conversion must not change the net);
* for the int8 model, top-1 agreement with Keras (quantization may move logits
  but should rarely change the predicted class);
* the median LiteRT latency of both (``invoke()`` only, batch 1);
* with ``int8_table`` (an int8 latency table, ``spnas-latency profile
  --precision=int8``) and the net's ``arch.json`` in the work directory, the
  table's prediction for the int8 model next to its measured latency (same
  statistic as the table), under ``int8.table_prediction``;
* when the ``[onnx]`` extra is installed, ``model.onnx`` (float32, any batch)
  with its max ``|Keras - ONNX Runtime|`` (absolute and relative) and its ONNX
  Runtime latency under ``onnx``; otherwise a note line, and ``onnx.skipped``.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import zipfile
from collections.abc import Iterable

import keras
import ml_collections
import numpy as np
import tensorflow as tf

# Registers spnas's serialisable layers (SearchableMBConv, Supernet, ...) for loading.
import spnas.search.supernet  # noqa: F401
import spnas.superkernel  # noqa: F401
from spnas.arch.handoff import load_arch
from spnas.config_check import check as check_config
from spnas.data import build_dataset
from spnas.export import litert
from spnas.export import onnx as onnx_export
from spnas.export.tflite import ExportError, convert_float, convert_int8
from spnas.fileio import (
    atomic_write_bytes,
    atomic_write_json,
    check_input_file,
    check_writable_dir,
    note,
    one_line,
    sha256_file,
)
from spnas.tables.runtime_model import bind
from spnas.tables.table import LatencyTable, load_table
from spnas.train.checks import ARCH_FILE
from spnas.train.recipe import pipeline_kwargs
from spnas.workdir import RUN_FILE, begin_stage, locked

REPORT_FORMAT = "spnas.export_report/1"
FLOAT_FILE = "model_float.tflite"
INT8_FILE = "model_int8.tflite"
ONNX_FILE = "model.onnx"
REPORT_FILE = "export_report.json"
MODEL_FILE = "model.keras"  # what the trainer writes (EMA weights)
DEFAULT_NUM_EVAL = 200


def load_keras_model(path: str):
    """Loads a ``.keras`` file (plain or spnas layers), without compiling.

    The file is checked first (:func:`spnas.fileio.check_input_file`), then as
    a ``.keras`` zip archive, then loaded; the model must take square RGB
    images, as every spnas network does.

    Raises:
      FileNotFoundError: naming the missing path.
      PermissionError: the file cannot be read.
      ExportError: a directory, empty, not a ``.keras`` archive, damaged or
        truncated, layers Keras does not know, or not an image model (one line
        naming the file).
    """
    path = os.fspath(path)
    if path and not os.path.lexists(path):
        raise FileNotFoundError(
            f"Model file {path!r} does not exist (spnas-train writes the EMA weights to "
            f"<workdir>/{MODEL_FILE}; pass --model=PATH.keras otherwise)."
        )
    check_input_file(path, "Keras model", ExportError)
    if not path.endswith((".keras", ".h5")):
        raise ExportError(f"Keras model {path!r} must be a .keras file (or a legacy .h5 file); "
                          f"spnas-train writes <workdir>/{MODEL_FILE}.")
    if path.endswith(".keras"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError) as e:
            raise ExportError(f"Keras model {path!r} is not a .keras zip archive (damaged or "
                              f"truncated?): {one_line(e)}.") from None
        if "config.json" not in names:
            raise ExportError(f"Keras model {path!r} is a zip archive but not a Keras model "
                              "(no config.json inside).")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras raises ValueError/TypeError/OSError/zip errors alike
        raise ExportError(f"Cannot load Keras model {path!r}: {one_line(e)}") from e
    shape = tuple(model.inputs[0].shape) if len(getattr(model, "inputs", None) or []) == 1 else ()
    if len(shape) != 4 or shape[3] != 3 or not shape[1] or shape[1] != shape[2]:
        raise ExportError(f"Keras model {path!r} is not an image classifier spnas can export: "
                          f"its input is {shape or 'not a single tensor'}, expected "
                          "(None, S, S, 3).")
    return model


def take_images(batches: Iterable, count: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The first ``count`` images (and labels) of an iterable of batches.

    Args:
      batches: ``(images, labels)`` pairs or bare image batches (tf.data
        datasets, lists of arrays).
      count: how many to take.

    Raises:
      ExportError: the iterable holds fewer than one image.
    """
    images, labels = [], []
    have = 0
    for batch in batches:
        x, y = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
        x = np.asarray(x, dtype=np.float32)
        images.append(x)
        if y is not None:
            labels.append(np.asarray(y))
        have += x.shape[0]
        if have >= count:
            break
    if have == 0:
        raise ExportError("The dataset yielded no images.")
    x = np.concatenate(images)[:count]
    y = np.concatenate(labels)[:count] if len(labels) == len(images) else None
    return x, y


def _keras_outputs(model, images: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(images, batch_size=256, verbose=0), dtype=np.float32)


def compare_outputs(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """Agreement of two logit arrays ``[N, classes]``.

    Returns:
      ``max_abs_diff``, ``max_rel_diff`` (max abs diff / max ``|reference|``)
      and ``top1_agreement_pct``.
    """
    diff = float(np.max(np.abs(reference - candidate)))
    scale = float(np.max(np.abs(reference)))
    agree = float(np.mean(np.argmax(reference, -1) == np.argmax(candidate, -1)) * 100.0)
    return {
        "max_abs_diff": diff,
        "max_rel_diff": diff / scale if scale > 0 else float("inf"),
        "top1_agreement_pct": agree,
    }


def _accuracy(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None or labels.ndim != 2 or labels.shape != logits.shape:
        return None  # labels absent or for a different class count
    return float(np.mean(np.argmax(logits, -1) == np.argmax(labels, -1)) * 100.0)


def _tf_version() -> str:
    return tf.__version__


def export_model(
    model,
    workdir: str,
    calibration: np.ndarray,
    eval_images: np.ndarray,
    eval_labels: np.ndarray | None = None,
    *,
    threads: int = 1,
    warmup: int = litert.DEFAULT_WARMUP,
    repeats: int = litert.DEFAULT_REPEATS,
    int8_io: bool = False,
    metadata: dict | None = None,
    int8_table: LatencyTable | None = None,
    arch=None,
) -> dict:
    """Converts, checks and times ``model``; writes the flatbuffers and the report.

    Args:
      model: a built single-input Keras classifier.
      workdir: output directory (created if needed).
      calibration: real preprocessed images ``[N, S, S, 3]`` for int8 calibration.
      eval_images: real preprocessed images the exports are compared on.
      eval_labels: optional one-hot labels of ``eval_images`` (adds accuracies).
      threads, warmup, repeats: LiteRT latency measurement.
      int8_io: int8 instead of float32 input/output tensors for the int8 model.
      metadata: extra fields for the report (model path, dataset, ...).
      int8_table: an int8 LiteRT latency table to compare the int8 model's
        measured latency with (needs ``arch``).
      arch: the net's :class:`~spnas.arch.handoff.Arch` (its choices and space).

    Returns:
      The report (also written to ``workdir/export_report.json``).
    """
    workdir = check_writable_dir(workdir)
    calibration = np.asarray(calibration, dtype=np.float32)
    eval_images = np.asarray(eval_images, dtype=np.float32)
    in_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    for what, arr in (("calibration", calibration), ("evaluation", eval_images)):
        if arr.ndim != 4 or arr.shape[1:] != in_shape or arr.shape[0] == 0:
            raise ExportError(
                f"{what} images have shape {arr.shape}, the model takes [N, "
                f"{', '.join(map(str, in_shape))}] with N >= 1."
            )
    float_fb = convert_float(model)
    int8_fb = convert_int8(model, [calibration], num_samples=len(calibration), int8_io=int8_io)
    onnx_bytes = onnx_export.convert_onnx(model, batch=None) if onnx_export.onnx_available() \
        else None

    reference = _keras_outputs(model, eval_images)
    report: dict = {
        "format": REPORT_FORMAT,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        **(metadata or {}),
        "input_shape": [1, *in_shape],
        "num_params": int(model.count_params()),
        "runtime": "LiteRT",
        "runtime_version": litert.litert_version(),
        "converter": f"TensorFlow {_tf_version()} TFLiteConverter.from_keras_model",
        "latency_settings": {"threads": threads, "warmup": warmup, "repeats": repeats,
                             "batch": 1, "statistic": "invoke() wall time"},
        "eval": {"num_images": int(len(eval_images)),
                 "keras_top1_pct": _accuracy(reference, eval_labels)},
    }
    for key, fb, filename in (("float", float_fb, FLOAT_FILE), ("int8", int8_fb, INT8_FILE)):
        outputs = litert.run_tflite(fb, eval_images, threads=threads)
        stats = litert.measure_latency(fb, threads=threads, warmup=warmup, repeats=repeats)
        entry = {
            "file": filename,
            "size_bytes": len(fb),
            "op_counts": litert.op_counts(fb),
            **compare_outputs(reference, outputs),
            "top1_pct": _accuracy(outputs, eval_labels),
            "latency_ms": stats.median_ms,
            "latency": stats.to_dict(),
        }
        if key == "int8":
            entry["calibration_images"] = int(len(calibration))
            entry["io_dtype"] = "int8" if int8_io else "float32"
        report[key] = entry
    if int8_table is not None:
        report["int8"]["table_prediction"] = int8_prediction(int8_table, arch,
                                                             report["int8"]["latency"])
    report["onnx"] = _onnx_entry(onnx_bytes, reference, eval_images, eval_labels, threads=threads,
                                 warmup=warmup, repeats=repeats)
    # Model files first, report last: a report always describes files that exist.
    atomic_write_bytes(os.path.join(workdir, FLOAT_FILE), float_fb)
    atomic_write_bytes(os.path.join(workdir, INT8_FILE), int8_fb)
    if onnx_bytes is not None:
        atomic_write_bytes(os.path.join(workdir, ONNX_FILE), onnx_bytes)
    atomic_write_json(os.path.join(workdir, REPORT_FILE), report)
    print(f"wrote {os.path.join(workdir, REPORT_FILE)}")
    return report


def _onnx_entry(onnx_bytes, reference, eval_images, eval_labels, *, threads, warmup,
                repeats) -> dict:
    """The ONNX model's fidelity and ONNX Runtime latency, or why there is none."""
    if onnx_bytes is None:
        why = (f"{ONNX_FILE} not written: the [onnx] extra is not installed (missing: "
               f"{', '.join(onnx_export.missing_packages())}; pip install 'spnas[onnx]')")
        note(f"{why}.", sys.stdout)
        return {"skipped": why}
    outputs = onnx_export.run_onnx(onnx_bytes, eval_images, threads=threads)
    timer = onnx_export.prepare_onnx_for_timing(onnx_bytes, threads=threads)
    litert.time_invokes(timer, warmup)
    stats = litert.LatencyStats.from_samples(litert.time_invokes(timer, repeats), threads)
    return {
        "file": ONNX_FILE,
        "size_bytes": len(onnx_bytes),
        "runtime": "ONNX Runtime",
        "runtime_version": onnx_export.onnxruntime_version(),
        "converter": onnx_export.converter_version(),
        **compare_outputs(reference, outputs),
        "top1_pct": _accuracy(outputs, eval_labels),
        "latency_ms": stats.median_ms,
        "latency": stats.to_dict(),
    }


def check_int8_table(table: LatencyTable, where: str = "config.int8_table") -> LatencyTable:
    """The table, if it is an int8 LiteRT table (the int8 model's runtime); else ExportError."""
    if table.precision != "int8" or table.deployment_runtime != "litert":
        raise ExportError(
            f"{where}: latency table {table.path or table.device!r} holds "
            f"{table.precision} {table.deployment_runtime} timings; the int8 model is compared "
            "with an int8 LiteRT table (spnas-latency profile --precision=int8).")
    return table


def int8_prediction(table: LatencyTable, arch, latency: dict) -> dict:
    """The int8 table's prediction for ``arch`` next to the int8 model's measured latency.

    The measurement is taken with the table's statistic (``min``, ``p10`` or
    ``median``; the median for others), as :mod:`spnas.latency.validate` does.
    """
    if arch is None or arch.space is None:
        raise ExportError("config.int8_table needs the net's architecture with its search space: "
                          f"the {ARCH_FILE} spnas-search writes into the work directory.")
    bound = bind(table, arch.space)
    statistic = table.statistic if table.statistic in ("min", "p10", "median") else "median"
    measured = float(latency[f"{statistic}_ms"])
    exact = bound.predict_ms(arch.layers, "exact")
    return {
        "table": table.summary(),
        "arch": arch.path,
        "statistic": statistic,
        "predicted_ms": bound.predict_ms(arch.layers, "paper"),
        "predicted_ms_exact": exact,
        "measured_ms": measured,
        "error_pct_exact": 100.0 * (exact / measured - 1.0),
        "note": "measured: the exported int8 model alone, export latency settings; "
                "error relative to the measurement",
    }


def export_images(
    config: ml_collections.ConfigDict, image_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Calibration images and the comparison images with their labels.

    Read from ``config.data`` without augmentation, split with ``config.seed``
    exactly as the trainer reads them (:func:`spnas.train.recipe.pipeline_kwargs`):
    calibration on the first ``num_calibration`` images of ``train``, the
    comparison on the first ``num_eval`` of ``eval_split`` (with the training
    run's data section and seed, the training run's validation images).
    """
    data, kw = config.data, pipeline_kwargs(config)
    batch = int(config.get("batch_size", 64))

    def first(split: str, count: int):
        ds, _ = build_dataset(data.dataset, split, batch, image_size, training=False, **kw)
        return take_images(ds, count)

    calibration, _ = first("train", int(config.num_calibration))
    images, labels = first(config.eval_split, int(config.num_eval))
    return calibration, images, labels


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Exports ``config.model`` (default ``workdir/model.keras``) with real images.

    Args:
      config: an export config (configs/export_default.py): ``data`` (the
        section of configs/common.py), ``seed``, ``eval_split``, ``model``,
        ``num_calibration``, ``num_eval``, ``threads``, ``warmup``, ``repeats``,
        ``int8_io``, ``int8_table``.
      workdir: reads ``model.keras`` there, writes the exports and the report.

    The work directory is locked and the export checked against its record
    (``run.json``; :mod:`spnas.workdir`): a finished export of the same model with
    the same config is returned as recorded, without rewriting anything; one of
    another config or model is refused.

    Raises:
      ExportError, DatasetError, FileNotFoundError, PermissionError, WorkdirBusy,
      RunRecordError: naming the problem.
    """
    check_config(config, "export", error=ExportError)  # as the CLI does, for API callers
    model_path = config.model or os.path.join(workdir, MODEL_FILE)
    model = load_keras_model(model_path)
    workdir = check_writable_dir(workdir)
    with locked(workdir):
        stage = begin_stage(workdir, "export", config.to_dict(), prog="spnas-export",
                            inputs={"model_sha256": sha256_file(model_path)}, error=ExportError)
        report_path = os.path.join(workdir, REPORT_FILE)
        if stage.finished and os.path.isfile(report_path):
            print(f"spnas-export: the export in {workdir} is already finished with this config "
                  f"and model (recorded in {RUN_FILE}); nothing is rewritten. report: "
                  f"{report_path}", flush=True)
            with open(report_path) as f:
                return json.load(f)
        if stage.finished:
            raise ExportError(
                f"The export in {workdir} finished ({os.path.join(workdir, RUN_FILE)}) but its "
                f"{report_path} is gone; restore it, or use a new --workdir to export again.")
        report = _export(config, workdir, model, model_path)
        stage.finish({"file": REPORT_FILE, "float": FLOAT_FILE, "int8": INT8_FILE})
        return report


def _export(config: ml_collections.ConfigDict, workdir: str, model, model_path: str) -> dict:
    """The export itself, in a locked and recorded work directory."""
    table = arch = None
    if config.get("int8_table"):  # checked before the minutes of converting and timing
        table = check_int8_table(load_table(config.int8_table))
        arch_path = os.path.join(workdir, ARCH_FILE)
        if not os.path.isfile(arch_path):
            raise ExportError(f"config.int8_table needs the net's architecture: no {arch_path} "
                              "(spnas-search writes it; spnas-pipeline keeps it in its workdir).")
        arch = load_arch(arch_path)
        # The table must fit the arch's space (fails now, not after the conversions).
        int8_prediction(table, arch, {"min_ms": 1.0, "p10_ms": 1.0, "median_ms": 1.0})
    calibration, images, labels = export_images(config, int(model.inputs[0].shape[1]))
    data = config.data
    meta = {
        "model": os.path.abspath(model_path),
        "model_sha256": sha256_file(model_path),
        "dataset": {"name": data.dataset, "calibration_split": "train",
                    "eval_split": config.eval_split,
                    "validation_fraction": float(data.validation_fraction),
                    "seed": int(config.seed)},
    }
    return export_model(model, workdir, calibration, images, labels,
                        threads=int(config.threads), warmup=int(config.warmup),
                        repeats=int(config.repeats), int8_io=bool(config.int8_io), metadata=meta,
                        int8_table=table, arch=arch)
