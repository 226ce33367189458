"""``spnas-pipeline``: the whole paper pipeline in one command.

search (``spnas-search``) -> train the found net with the MnasNet schedule
(``spnas-train``) -> export float and int8 TFLite (``spnas-export``) -> measure
its latency on this host -> one summary table: predicted vs measured latency,
accuracy and model size. Each stage is the library function its own CLI calls,
on one work directory, so a killed pipeline rerun with the same command resumes
(search and training restore their checkpoints).

  spnas-pipeline --workdir=DIR [--search.lambda_=0.2] [--train.epochs=20]
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

from spnas.configs_path import default_config_path

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("search", default_config_path("default.py"),
                                "Search configuration.", lock_config=True)
config_flags.DEFINE_config_file("train", default_config_path("train_default.py"),
                                "Training configuration.", lock_config=True)
flags.DEFINE_string("workdir", None, "Output directory of every stage.")
flags.mark_flag_as_required("workdir")

REPORT = "pipeline_report.json"


def run(search_config, train_config, workdir: str) -> dict:
    """Runs search, training and export in ``workdir``; returns the summary."""
    from spnas.export.report import run as export_run
    from spnas.fileio import atomic_write_json
    from spnas.search.run import run as search_run
    from spnas.train.run import run as train_run

    t0 = time.time()
    print("== 1/3 search ==", flush=True)
    arch = search_run(search_config, workdir)
    t_search = time.time() - t0
    print("== 2/3 train the searched net ==", flush=True)
    train_config.unlock()
    train_config.arch = os.path.join(os.path.abspath(workdir), "arch.json")
    train_config.lock()
    trained = train_run(train_config, workdir)
    t_train = time.time() - t0 - t_search
    print("== 3/3 export to TFLite and measure ==", flush=True)
    exported = export_run(workdir, dataset=search_config.dataset, threads=1)
    seconds = time.time() - t0

    table = arch["latency_table"] or {}
    # Compare like with like: the statistic the table was profiled with (the
    # shipped CPU table holds the min of the invokes; the paper's, the median).
    statistic, drift = "median", None
    if table.get("path") and os.path.exists(table["path"]):
        from spnas.latency.drift import measure_with_drift
        from spnas.latency.profile import statistic_of
        from spnas.space import SearchSpace
        from spnas.tables.table import load_table

        loaded = load_table(table["path"])
        profiled = statistic_of(loaded)
        statistic = profiled if profiled in ("min", "p10") else "median"
        if not search_config.get("table_proxy", False):
            # The host's speed now vs when the table was profiled (tables made
            # with --calibrate); see spnas/latency/drift.py.
            with open(os.path.join(workdir, "model_float.tflite"), "rb") as f:
                drift = measure_with_drift(f.read(), loaded, SearchSpace.from_dict(arch["space"]),
                                           statistic=statistic)
    measured = exported["float"]["latency"]
    summary = {
        "workdir": os.path.abspath(workdir),
        "device": table.get("device"),
        "predicted_ms": arch["predicted_ms"],
        "predicted_ms_exact": arch["predicted_ms_exact"],
        "measured_ms": measured[f"{statistic}_ms"],
        "measured_ms_median": measured["median_ms"],
        "measured_ms_p10": measured["p10_ms"],
        "measured_ms_min": measured["min_ms"],
        "table_statistic": statistic,
        "host_drift": drift,
        "top1": trained.get("top1"),
        "top5": trained.get("top5"),
        "int8_top1_agreement_pct": exported["int8"].get("top1_agreement_pct"),
        "float_bytes": exported["float"]["size_bytes"],
        "int8_bytes": exported["int8"]["size_bytes"],
        "layers": arch["layers"],
        "seconds": {"search": round(t_search, 1), "train": round(t_train, 1),
                    "total": round(seconds, 1)},
    }
    atomic_write_json(os.path.join(workdir, REPORT), summary)
    for line in summary_table(summary):
        print(line)
    return summary


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
        f"| {'measured float TFLite (' + s['table_statistic'] + ', 1 thread)':<38} | {measured:>11.4f} ms |",
        f"| {'prediction error (exact vs measured)':<38} | {err:>+12.1f} % |",
        *drift_rows(s),
        f"| {'top-1 / top-5 (EMA, validation)':<38} | {pct(s['top1']):>6} / {pct(s['top5'])} |",
        f"| {'int8 top-1 agreement with Keras':<38} | {pct(s['int8_top1_agreement_pct'], 1):>14} |",
        f"| {'model size float / int8':<38} | {s['float_bytes'] / 1024:>5.0f} / {s['int8_bytes'] / 1024:.0f} KB |",
        f"| {'wall time':<38} | {s['seconds']['total']:>12.0f} s |",
        "",
        f"report: {os.path.join(s['workdir'], REPORT)}",
    ]


def main_(argv):
    del argv
    from spnas.errors import USER_ERRORS

    try:
        run(FLAGS.search, FLAGS.train, FLAGS.workdir)
    except USER_ERRORS as e:
        print(f"spnas-pipeline: error: {e}", file=sys.stderr)
        sys.exit(2)


def main():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main_)


if __name__ == "__main__":
    main()
