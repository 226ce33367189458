"""``spnas-latency validate --table=T --n=100 --report=R.json [--space=...] [...]``.

Measures random networks of the table's space end to end against its
prediction (:func:`spnas.latency.validate.validate`), writes the JSON report
and the Fig. 7-style plot, and prints both runtime models' errors.
"""

from __future__ import annotations

import os

from absl import app, flags

from spnas import cli
from spnas.fileio import check_input_dir, check_output_file
from spnas.latency.cli_flags import given, make_target, require
from spnas.latency.cpus import parse_cpus
from spnas.space import SearchSpace, resolve_space
from spnas.tables.table import load_table

FLAGS = flags.FLAGS
flags.DEFINE_string("cache_dir", None, "validate: keep the converted networks here (reruns with "
                    "another table or settings skip the conversion).")
flags.DEFINE_integer("n", 100, "validate: random networks to measure.")
flags.DEFINE_integer("seed", 0, "validate: seed of the random networks.")
flags.DEFINE_string("report", None, "validate: output report JSON.")
flags.DEFINE_string("plot", None, "validate: scatter plot PNG (default: the report's name .png).")


def _space(table, name: str) -> SearchSpace:
    if FLAGS["space"].present:
        return resolve_space(FLAGS.space)
    if isinstance(table.extra.get("space"), dict):
        return SearchSpace.from_dict(table.extra["space"])
    raise app.UsageError(f"Table {name!r} records no search space: pass --space.")


def body() -> dict:
    require("validate", ("table", "report"), "--table and --report")
    target = make_target()
    affinity = parse_cpus(FLAGS.affinity) if target is None else None
    check_output_file(FLAGS.report, "Report")
    if FLAGS.plot:
        check_output_file(FLAGS.plot, "Plot")
    if FLAGS.cache_dir and os.path.lexists(FLAGS.cache_dir):
        check_input_dir(FLAGS.cache_dir, "--cache_dir")
    table = load_table(FLAGS.table)  # a file or a shipped table's name
    # target goes by position: it is also the name of cli.call's first parameter.
    report, plot = cli.call(
        "spnas.latency.validate:validate_to_file", table, _space(table, FLAGS.table), target,
        FLAGS.report, FLAGS.plot, n=FLAGS.n, seed=FLAGS.seed, threads=given("threads"),
        warmup=given("warmup"), repeats=given("repeats"), statistic=FLAGS.statistic,
        affinity=affinity, clock=FLAGS.clock, progress=FLAGS.progress, cache_dir=FLAGS.cache_dir,
        precision=FLAGS.precision, runtime=FLAGS.runtime)
    for model in ("paper", "exact"):
        m = report["metrics"][model]
        print(f"{model:>5}: RMSE {m['rmse_ms']:.4g} ms ({m['rmse_pct_of_mean']:.2f} % of mean), "
              f"MAPE {m['mape']:.2f} %, bias {m['bias_pct']:+.2f} %, within 5 % "
              f"{m['within5']:.0f} %, within 10 % {m['within10']:.0f} %")
    print(f"wrote {FLAGS.report} and {plot} ({report['n']} nets, mean measured "
          f"{report['measured_mean_ms']:.4g} ms, {report['settings']['seconds']:.0f} s)")
    return report
