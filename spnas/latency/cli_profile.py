"""``spnas-latency profile --space=embedded|paper|SPACE.json --out=TABLE.json [...]``.

The destination and the space are checked before TensorFlow loads; the table
is written atomically, only when profiling has finished
(:func:`spnas.latency.profile.profile_to_file`).
"""

from __future__ import annotations

from absl import flags

from spnas import cli
from spnas.fileio import check_output_file
from spnas.latency.cli_flags import make_target, require
from spnas.latency.cpus import parse_cpus
from spnas.space import resolve_space

FLAGS = flags.FLAGS
flags.DEFINE_float("max_spread", None,
                   "profile: re-measure, then fail, if a model's spread stays above this "
                   "(host: (p90-p10)/median, adb: std/avg).")
flags.DEFINE_bool("subtract_overhead", False,
                  "profile: take the fixed cost of one invoke (timed on a probe model) off every "
                  "entry, so the sum of separately timed layers matches one whole-network invoke.")
flags.DEFINE_integer("calibrate", 0,
                     "profile: also time this many whole random networks with the layers and "
                     "scale the table to them (median measured/predicted); 0: no.")


def body() -> None:
    require("profile", ("out",), "--out")
    target = make_target()
    affinity = parse_cpus(FLAGS.affinity)
    # Fail on a destination that cannot be written (a directory, a read-only
    # place) now, not after minutes of profiling.
    check_output_file(FLAGS.out, "Output table")
    space = resolve_space(FLAGS.space)
    # target goes by position: it is also the name of cli.call's first parameter.
    table = cli.call(
        "spnas.latency.profile:profile_to_file", space, FLAGS.out,
        FLAGS.device if FLAGS["device"].present else None, target,
        threads=FLAGS.threads, warmup=FLAGS.warmup, repeats=FLAGS.repeats,
        statistic=FLAGS.statistic or ("median" if target is None else "avg"),
        max_spread=FLAGS.max_spread, progress=FLAGS.progress, affinity=affinity,
        clock=FLAGS.clock or "wall", subtract_overhead=FLAGS.subtract_overhead,
        calibrate=FLAGS.calibrate, precision=FLAGS.precision or "float32",
        runtime=FLAGS.runtime or "litert")
    spread = table.extra["max_spread"]
    calibration = table.extra.get("calibration")
    if calibration:
        print(f"calibration: scale {calibration['scale']:.4f} from {calibration['n']} networks "
              f"(measured/predicted sd {calibration['ratio_sd_pct']:.2f} %)")
    print(f"wrote {FLAGS.out} ({table.precision} {table.deployment_runtime}, "
          f"{len(table.layers)} searchable layers, constant "
          f"{table.constant_ms:.4f} ms, max spread {'n/a' if spread is None else f'{spread:.2f}'}"
          f", {table.extra['profile_seconds']:.0f} s)")
