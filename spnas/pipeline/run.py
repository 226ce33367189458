"""``spnas-pipeline`` (library): the whole paper pipeline on one work directory.

search (:func:`spnas.search.run.run`) -> train the found net with the MnasNet
recipe (:func:`spnas.train.run.run`, given the search's :class:`Arch` object)
-> export float and int8 TFLite (:func:`spnas.export.report.run`) -> measure
its latency on this host -> one summary table: predicted vs measured latency,
accuracy and model size. Each stage is the library function its own CLI calls,
on one work directory, so a killed pipeline rerun with the same command resumes
(search and training restore their checkpoints). The work directory is locked
once for the whole pipeline, and each stage checks its record (``run.json``,
:mod:`spnas.workdir`): a rerun skips the finished stages, and a finished
pipeline shows its recorded summary.

**One data section.** The search config's ``data`` section drives all three
stages: training and export run on a copy of their configs whose ``data`` is the
search's (a differing ``--train.data.*`` / ``--export.data.*`` is replaced, with
a note), and the export reads its images with the training run's ``seed`` and
``eval_split``, so the int8-agreement images are the training run's validation
images. The command line is in :mod:`spnas.pipeline.main`.
"""

from __future__ import annotations

import json
import os
import sys
import time

import ml_collections

from spnas.arch.handoff import Arch
from spnas.configs import export_default
from spnas.export.report import FLOAT_FILE, INT8_FILE
from spnas.export.report import run as export_run
from spnas.fileio import atomic_write_json, check_writable_dir
from spnas.latency.build import statistic_of
from spnas.latency.drift import measure_with_drift
from spnas.search.run import run as search_run
from spnas.tables.table import load_table
from spnas.train.run import run as train_run
from spnas.workdir import RUN_FILE, begin_stage, locked

REPORT = "pipeline_report.json"


def _differences(a: ml_collections.ConfigDict, b: ml_collections.ConfigDict) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    return sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))


def with_data(config: ml_collections.ConfigDict, data: ml_collections.ConfigDict,
              what: str, **keys) -> ml_collections.ConfigDict:
    """A copy of ``config`` whose ``data`` section is ``data`` (and ``keys`` set).

    Prints a note naming the ``data`` keys that differed (they are replaced).
    """
    out = config.copy_and_resolve_references()
    differing = _differences(config.data, data)
    if differing:
        print(f"spnas-pipeline: note: {what}.data.{{{', '.join(differing)}}} replaced by the "
              "search's (one data section drives search, train and export).", file=sys.stderr)
    out.data = data.copy_and_resolve_references()
    for key, value in keys.items():
        out[key] = value
    return out


def run(search_config: ml_collections.ConfigDict, train_config: ml_collections.ConfigDict,
        workdir: str, export_config: ml_collections.ConfigDict | None = None) -> dict:
    """Runs search, training and export in ``workdir``; returns the summary.

    ``export_config`` defaults to configs/export_default.py at one LiteRT thread.
    """
    if export_config is None:
        export_config = export_default.get_config()
    train_config = with_data(train_config, search_config.data, "train")
    export_config = with_data(export_config, search_config.data, "export",
                              seed=int(train_config.seed), eval_split=train_config.eval_split)
    workdir = check_writable_dir(workdir)
    # One lock for the whole pipeline (the stages take it again, re-entrantly); each
    # stage checks its own record and skips itself when it had finished.
    with locked(workdir):
        t0 = time.time()
        print("== 1/3 search ==", flush=True)
        arch = search_run(search_config, workdir)
        t_search = time.time() - t0
        print("== 2/3 train the searched net ==", flush=True)
        trained = train_run(train_config, workdir, arch=arch)
        t_train = time.time() - t0 - t_search
        print("== 3/3 export to TFLite and measure ==", flush=True)
        exported = export_run(export_config, workdir)
        configs = {"search": search_config.to_dict(), "train": train_config.to_dict(),
                   "export": export_config.to_dict()}
        # The stages refused any other config already; this entry only says whether
        # the summary was made (then it is shown, not measured and written again).
        stage = begin_stage(workdir, "pipeline", configs, refuse=False, prog="spnas-pipeline")
        path = os.path.join(workdir, REPORT)
        if stage.finished and os.path.isfile(path):
            print(f"spnas-pipeline: the pipeline in {workdir} is already finished with these "
                  f"configs (recorded in {RUN_FILE}); its summary, from {path}:", flush=True)
            with open(path) as f:
                summary = json.load(f)
        else:
            statistic, drift = _measure_drift(arch, workdir,
                                              search_config.get("table_proxy", False))
            summary = _summary(arch, trained, exported, statistic, drift, workdir,
                               (t_search, t_train, time.time() - t0))
            atomic_write_json(path, summary)
            stage.finish({"file": REPORT})
    for line in summary_table(summary):
        print(line)
    return summary


def _measure_drift(arch: Arch, workdir: str, proxy: bool) -> tuple[str, dict | None]:
    """The statistic to compare with (the one the table was profiled with; the shipped
    CPU table holds the min of the invokes, the paper's the median) and the host's
    speed drift since profiling (tables made with --calibrate; spnas/latency/drift.py)."""
    table = arch.get("latency_table") or {}
    if not (table.get("path") and os.path.exists(table["path"])):
        return "median", None
    loaded = load_table(table["path"])
    profiled = statistic_of(loaded)
    statistic = profiled if profiled in ("min", "p10") else "median"
    if proxy or loaded.deployment_runtime != "litert":
        return statistic, None
    # -- an int8 table (as the search's table) is compared with the int8 model --
    model_file = INT8_FILE if loaded.precision == "int8" else FLOAT_FILE
    with open(os.path.join(workdir, model_file), "rb") as f:
        drift = measure_with_drift(f.read(), loaded, arch.space, statistic=statistic)
    return statistic, drift


def _summary(arch: Arch, trained: dict, exported: dict, statistic: str, drift: dict | None,
             workdir: str, seconds: tuple[float, float, float]) -> dict:
    table = arch.get("latency_table") or {}
    measured_model = "int8" if table.get("precision") == "int8" else "float"  # the table's kind
    measured = exported[measured_model]["latency"]
    return {
        "workdir": os.path.abspath(workdir),
        "device": table.get("device"),
        "predicted_ms": arch["predicted_ms"],
        "predicted_ms_exact": arch["predicted_ms_exact"],
        "measured_ms": measured[f"{statistic}_ms"],
        "measured_ms_median": measured["median_ms"],
        "measured_ms_p10": measured["p10_ms"],
        "measured_ms_min": measured["min_ms"],
        "table_statistic": statistic,
        "measured_model": measured_model,  # int8 when the search's table is an int8 table
        "host_drift": drift,
        "top1": trained.get("top1"),
        "top5": trained.get("top5"),
        "int8_top1_agreement_pct": exported["int8"].get("top1_agreement_pct"),
        "float_bytes": exported["float"]["size_bytes"],
        "int8_bytes": exported["int8"]["size_bytes"],
        # -- int8 latency against an int8 table (export config int8_table), if given --
        "int8_table_prediction": exported["int8"].get("table_prediction"),
        # -- end int8 table --
        "layers": arch["layers"],
        "arch": {"file": arch.path, "sha256": arch.sha256},
        "export_images": exported.get("dataset"),
        "seconds": {"search": round(seconds[0], 1), "train": round(seconds[1], 1),
                    "total": round(seconds[2], 1)},
    }


def drift_rows(s: dict) -> list[str]:
    """Rows on the host's speed drift since the table was profiled (if measured)."""
    d = s.get("host_drift")
    if not d:
        return []
    err = 100.0 * (s["predicted_ms_exact"] / d["measured_ms_at_profiling_speed"] - 1.0)
    return [
        f"| {'host slowdown since profiling':<38} | {d['drift']:>13.3f}x |",
        f"| {'prediction error at profiling speed':<38} | {err:>+12.1f} % |",
    ]


def int8_rows(s: dict) -> list[str]:
    """Rows on the int8 model against an int8 table (export config int8_table), if given."""
    p = s.get("int8_table_prediction")
    if not p:
        return []
    return [
        f"| {'predicted int8 (int8 table, exact)':<38} | {p['predicted_ms_exact']:>11.4f} ms |",
        f"| {'measured int8 TFLite (' + p['statistic'] + ', 1 thread)':<38} | "
        f"{p['measured_ms']:>11.4f} ms |",
        f"| {'int8 prediction error':<38} | {p['error_pct_exact']:>+12.1f} % |",
    ]


def summary_table(s: dict) -> list[str]:
    measured = s["measured_ms"]
    err = 100.0 * (s["predicted_ms_exact"] / measured - 1.0)

    def pct(x, scale=100.0):
        return "n/a" if x is None else f"{scale * x:.1f} %"

    return [
        "",
        f"| {'result':<38} | {'value':>14} |",
        f"|{'-' * 40}|{'-' * 16}|",
        f"| {'predicted latency (paper model)':<38} | {s['predicted_ms']:>11.4f} ms |",
        f"| {'predicted latency (exact table sum)':<38} | {s['predicted_ms_exact']:>11.4f} ms |",
        f"| {'measured ' + s.get('measured_model', 'float') + ' TFLite (' + s['table_statistic'] + ', 1 thread)':<38} | {measured:>11.4f} ms |",
        f"| {'prediction error (exact vs measured)':<38} | {err:>+12.1f} % |",
        *drift_rows(s),
        *int8_rows(s),
        f"| {'top-1 / top-5 (EMA, validation)':<38} | {pct(s['top1']):>6} / {pct(s['top5'])} |",
        f"| {'int8 top-1 agreement with Keras':<38} | {pct(s['int8_top1_agreement_pct'], 1):>14} |",
        f"| {'model size float / int8':<38} | {s['float_bytes'] / 1024:>5.0f} / {s['int8_bytes'] / 1024:.0f} KB |",
        f"| {'wall time':<38} | {s['seconds']['total']:>12.0f} s |",
        "",
        f"report: {os.path.join(s['workdir'], REPORT)}",
    ]
