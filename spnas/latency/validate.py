"""Validating a latency table against measured whole networks (paper Fig. 7).

The paper checks its runtime model by generating 100 random ConvNets of the
search space, measuring them on the Pixel 1 and comparing with the prediction:
RMSE 1.32 ms, "an average 1.76 % prediction error" (Stamoulis et al., 2019,
Sec. 4, Fig. 7). :func:`validate` does the same for any table we profile:

* ``n`` architectures are drawn uniformly per searchable layer (each
  candidate, and skip where the layer may be skipped; seeded, see
  :func:`spnas.space.sample_choices`);
* each is built as a plain network from the same blocks the table profiled
  (:func:`spnas.latency.probe.network_model`), converted as the table's
  models were (float or int8 TFLite, or float ONNX for an ONNX Runtime table;
  :mod:`spnas.latency.runtimes`) and
  timed end to end on the table's target with the table's statistic, timing
  and thread settings: on the host all networks are timed interleaved
  (:func:`spnas.latency.timing.time_interleaved`), on a device by
  ``benchmark_model`` over adb;
* both runtime models are scored: ``paper`` (Eq. 11-12, which approximates
  k3e3 from the other three entries) and ``exact`` (the table entry of each
  chosen candidate). Percent errors are relative to the measured latency.

The report has RMSE (ms), mean absolute percent error, the share of networks
within 5 % and 10 %, the bias, and the RMSE as a percent of the mean measured
latency (the form of the paper's 1.76 %), and every network's choices,
predictions and measurement.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure
from tqdm import tqdm

from spnas.errors import UserError
from spnas.export.litert import read_tflite
from spnas.fileio import atomic_write_bytes, atomic_write_json, note
from spnas.latency.build import host_description, statistic_of
from spnas.latency.probe import network_model
from spnas.latency.runtimes import FLOAT_LITERT, Deployment, convert_for
from spnas.latency.timing import (
    check_statistic,
    load_average,
    measure,
    rounds_of,
    statistic_value,
)
from spnas.space import SearchSpace, sample_choices
from spnas.tables.runtime_model import bind
from spnas.tables.table import LatencyTable

REPORT_FORMAT = "spnas.latency_validation/1"


class ValidationError(UserError):
    """A table cannot be validated as asked (another target, no statistic, bad counts)."""


def error_metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Prediction errors; percents are relative to ``measured`` and given as percents.

    Returns:
      ``rmse_ms``, ``mape`` (mean absolute % error), ``within5``/``within10``
      (% of networks with |error| <= 5 / 10 %), ``bias_pct`` (mean signed %
      error), ``max_abs_pct`` and ``rmse_pct_of_mean`` (RMSE / mean measured).
    """
    p = np.asarray(predicted, dtype=np.float64)
    m = np.asarray(measured, dtype=np.float64)
    if p.shape != m.shape or p.size == 0:
        raise ValidationError(f"Need equally many predictions and measurements, got {p.size}, {m.size}.")
    if np.any(m <= 0):
        raise ValidationError("Measured latencies must be positive.")
    rel = (p - m) / m
    rmse = float(np.sqrt(np.mean((p - m) ** 2)))
    return {
        "rmse_ms": rmse,
        "mape": float(np.mean(np.abs(rel)) * 100),
        "within5": float(np.mean(np.abs(rel) <= 0.05) * 100),
        "within10": float(np.mean(np.abs(rel) <= 0.10) * 100),
        "bias_pct": float(np.mean(rel) * 100),
        "max_abs_pct": float(np.max(np.abs(rel)) * 100),
        "rmse_pct_of_mean": float(rmse / np.mean(m) * 100),
    }


def _table_settings(table: LatencyTable, target, statistic: str | None) -> str:
    """The statistic to measure with; checks the table was profiled on this kind of target."""
    where = "adb" if target is not None else "host"
    profiled = table.extra.get("target", "host" if table.runtime == "LiteRT" else None)
    if profiled is not None and profiled != where:
        raise ValidationError(
            f"Table {table.path or table.device!r} was profiled on target {profiled!r}; validate "
            f"it on the same target (--target={profiled}), not {where!r}."
        )
    statistic = statistic or statistic_of(table)
    if statistic is None:
        raise ValidationError(
            f"Table {table.path or table.device!r} records no statistic (an imported table?); "
            "pass --statistic, or validate a table made by spnas-latency profile."
        )
    return statistic


def _settings(table: LatencyTable, target, *, statistic, threads, warmup, repeats, clock) -> dict:
    """The measurement settings: those given, the others as the table was profiled."""
    statistic = _table_settings(table, target, statistic)
    extra = table.extra
    clock = clock or extra.get("clock", "wall")
    if target is None and clock not in ("wall", "thread"):
        raise ValidationError(f"Unknown clock {clock!r}; expected 'wall' or 'thread'.")
    check_statistic(statistic, target is not None)
    return {
        "statistic": statistic,
        "threads": int(threads or extra.get("threads", 1)),
        "warmup": int(warmup if warmup is not None else extra.get("warmup", 20)),
        "repeats": int(repeats or extra.get("repeats", 100)),
        "clock": clock,
    }


def _deployment(table: LatencyTable, target, precision, runtime) -> Deployment:
    """The table's precision and runtime; a differing ``precision``/``runtime`` is refused."""
    own = table.deployment
    for key, given in (("precision", precision), ("runtime", runtime)):
        if given is not None and given != own[key]:
            raise ValidationError(
                f"Table {table.path or table.device!r} was profiled with {key} {own[key]!r}; "
                f"validate measures networks as the table's entries were (leave out "
                f"--{key}, or pass --{key}={own[key]}), not {given!r}.")
    return Deployment(own["precision"], own["runtime"]).check(on_device=target is not None)


def _measure_nets(space, archs, settings, *, target, affinity, progress, cache_dir,
                  deployment=FLOAT_LITERT):
    """Converts (or reads from ``cache_dir``) and times the networks; (stats, rounds)."""
    fbs = [_converted(space, choices, cache_dir, deployment)
           for choices in tqdm(archs, disable=not progress, desc="converting", unit="net")]
    rounds = rounds_of(target, settings["repeats"])
    with tqdm(total=rounds, disable=not progress, desc="timing", unit="round") as bar:
        stats = measure(fbs, target=target, threads=settings["threads"],
                        warmup=settings["warmup"], repeats=settings["repeats"],
                        affinity=affinity, clock=settings["clock"], progress=bar,
                        runtime=deployment.runtime)
    return stats, rounds


def _scored(bound, archs, stats, statistic: str) -> list[dict]:
    return [{
        "choices": choices,
        "predicted_paper_ms": bound.predict_ms(choices, "paper"),
        "predicted_exact_ms": bound.predict_ms(choices, "exact"),
        "measured_ms": statistic_value(s, statistic),
        "spread": float(s.spread) if np.isfinite(s.spread) else None,
    } for choices, s in zip(archs, stats)]


def _summary(table: LatencyTable, nets: list[dict], settings: dict) -> dict:
    """The metrics of both runtime models, the table, the settings; the nets go last."""
    extra = table.extra
    calibration = extra.get("calibration") or {}
    calibrated = {tuple(c) for c in calibration.get("archs", [])}
    measured = [x["measured_ms"] for x in nets]
    metrics = {name: error_metrics([x[f"predicted_{name}_ms"] for x in nets], measured)
               for name in ("paper", "exact")}
    out: dict = {"format": REPORT_FORMAT, "n": len(nets)}
    for name, m in metrics.items():
        out.update({f"rmse_ms_{name}": m["rmse_ms"], f"mape_{name}": m["mape"],
                    f"within5_{name}": m["within5"], f"within10_{name}": m["within10"]})
    out.update({
        "metrics": metrics,
        "measured_mean_ms": float(np.mean(measured)),
        "percent_units": "percent (100 = 100 %), errors relative to the measured latency",
        "table": {**table.summary(), "statistic": extra.get("statistic"),
                  "overhead_subtracted": extra.get("overhead_subtracted", False),
                  "calibration_scale": calibration.get("scale"),
                  "calibration_n": calibration.get("n", 0),
                  "profiled_load_average": extra.get("load_average")},
        "settings": settings,
        # Networks the table was calibrated on are not held out; the default
        # seeds differ, so this is normally 0.
        "nets_in_calibration": sum(tuple(x["choices"]) in calibrated for x in nets),
    })
    return out


def validate(
    table: LatencyTable,
    space: SearchSpace,
    *,
    n: int = 100,
    seed: int = 0,
    threads: int | None = None,
    warmup: int | None = None,
    repeats: int | None = None,
    statistic: str | None = None,
    target=None,
    affinity: Sequence[int] | None = None,
    clock: str | None = None,
    strict: bool = True,
    progress: bool = True,
    cache_dir: str | None = None,
    precision: str | None = None,
    runtime: str | None = None,
) -> dict:
    """Measures ``n`` random networks of ``space`` and scores the table's predictions.

    Settings left None are taken from the table (what it was profiled with).

    Args:
      table: the latency table (checked against ``space``).
      space: the search space the table was profiled for.
      n: number of random networks.
      seed: seed of the architecture sampling.
      threads, warmup, repeats: measurement settings (interpreter or
        ``--num_threads``; untimed and timed invokes per network).
      statistic: ``median``/``p10`` (host) or ``avg``/``min`` (device).
      target: None for this host, or an :class:`spnas.latency.adb.AdbTarget`.
      affinity: host CPUs to pin the timing to.
      clock: host timing clock (``wall`` or ``thread``).
      strict: check the table's input size and layer shapes against ``space``.
      progress: show progress bars.
      cache_dir: keep the converted networks there, named by a hash of the
        space, the choices and the TensorFlow version (conversion dominates
        the run time on a small host; a rerun with another table reuses them).
      precision, runtime: None (the table's own deployment: int8 networks for
        an int8 table, ONNX Runtime for an ONNX Runtime table), or the same
        values; others are refused.

    Returns:
      The report (see the module docstring); nothing is written.

    Raises:
      ValidationError: bad settings, or a table of another target, precision or
        runtime (a ValueError).
      DeploymentError: the table's runtime is not installed or not for ``target``.
      LatencyTableError: a table of another space.
    """
    if n < 1:
        raise ValidationError(f"n must be >= 1, got {n}.")
    bound = bind(table, space, strict)
    settings = _settings(table, target, statistic=statistic, threads=threads, warmup=warmup,
                         repeats=repeats, clock=clock)
    deployment = _deployment(table, target, precision, runtime)
    start = time.perf_counter()
    load_before = load_average()
    if target is not None:
        target.connect()
    rng = np.random.default_rng(seed)
    archs = [sample_choices(space, rng) for _ in range(n)]
    stats, rounds = _measure_nets(space, archs, settings, target=target, affinity=affinity,
                                  progress=progress, cache_dir=cache_dir, deployment=deployment)
    nets = _scored(bound, archs, stats, settings["statistic"])
    report = _summary(table, nets, {
        "seed": seed, "statistic": settings["statistic"], "threads": settings["threads"],
        "warmup": settings["warmup"], "repeats": settings["repeats"], "rounds": rounds,
        **deployment.to_json(),
        "target": target.describe() if target is not None else {"target": "host"},
        "clock": settings["clock"] if target is None else "device",
        "affinity": list(affinity) if affinity else None,
        "host": host_description(),
        "load_average": [load_before, load_average()],
        "seconds": round(time.perf_counter() - start, 1),
    })
    report.update({"space": space.to_dict(), "nets": nets})
    return report


def _converted(space: SearchSpace, choices: list[str], cache_dir: str | None,
               deployment: Deployment = FLOAT_LITERT) -> bytes:
    def convert():
        return convert_for(network_model(space, choices), deployment)

    if not cache_dir:
        return convert()
    # A float32/LiteRT key is the one of caches made before other deployments existed.
    parts = [space.to_dict(), choices, tf.__version__]
    if deployment != FLOAT_LITERT:
        parts.append(deployment.to_json())
    key = json.dumps(parts, sort_keys=True)
    path = os.path.join(cache_dir, f"net_{hashlib.sha256(key.encode()).hexdigest()[:20]}"
                                   f"{deployment.suffix}")
    if os.path.lexists(path):
        try:
            if deployment.runtime == "litert":
                return read_tflite(path, "Cached network")
            with open(path, "rb") as f:
                data = f.read()
            if data:
                return data
            note(f"Cached network {path!r} is empty. Converting it again.", sys.stdout)
        except (OSError, UserError) as e:  # ours to rebuild, but say so
            note(f"{e} Converting it again.", sys.stdout)
    fb = convert()
    atomic_write_bytes(path, fb)
    return fb


def plot_scatter(report: dict, path: str) -> None:
    """Fig. 7-style scatter: measured vs predicted latency, both models, the y = x line."""
    nets = report["nets"]
    measured = np.array([x["measured_ms"] for x in nets])
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    for model, marker, color in (("paper", "o", "tab:blue"), ("exact", "x", "tab:red")):
        pred = np.array([x[f"predicted_{model}_ms"] for x in nets])
        ax.scatter(measured, pred, marker=marker, s=22, color=color, alpha=0.7,
                   label=f"{model}: RMSE {report[f'rmse_ms_{model}']:.3g} ms, "
                         f"MAPE {report[f'mape_{model}']:.2f} %")
    everything = np.concatenate([measured] + [[x[f"predicted_{m}_ms"] for x in nets]
                                              for m in ("paper", "exact")])
    lo, hi = float(everything.min()), float(everything.max())
    pad = 0.03 * (hi - lo or hi)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    device = report["table"].get("device", "")
    deployment = report["table"].get("deployment") or {}
    if deployment:
        device = f"{device}, {deployment['precision']} {deployment['runtime']}"
    ax.set_title(f"Runtime model vs {report['n']} random nets\n{device}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(path, buf.getvalue())


def write_report(report: dict, path: str, plot_path: str | None = None) -> str:
    """Writes the JSON report and the scatter plot atomically; returns the plot's path.

    ``plot_path`` defaults to the report's path with ``.png``.
    """
    plot_path = plot_path or os.path.splitext(path)[0] + ".png"
    plot_scatter(report, plot_path)
    atomic_write_json(path, {**report, "plot": os.path.basename(plot_path)})
    return plot_path


def validate_to_file(table: LatencyTable, space: SearchSpace, target, path: str,
                     plot_path: str | None = None, **kwargs) -> tuple[dict, str]:
    """:func:`validate` on ``target`` (None: this host), then :func:`write_report`.

    Returns the report and the plot's path.
    """
    report = validate(table, space, target=target, **kwargs)
    return report, write_report(report, path, plot_path)
