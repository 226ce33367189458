"""``spnas-latency``: latency tables and predictions.

  spnas-latency predict --table=T --arch=NAME_OR_ARCH_JSON [--model=paper|exact]
  spnas-latency import --table=ORIGINAL.json --out=TABLE.json [--device=...]
  spnas-latency profile --space=embedded|paper|SPACE.json --out=TABLE.json
                [--threads=1] [--warmup=20] [--repeats=100] [--statistic=median|p10]
                [--max_spread=X] [--device=NAME] [--affinity=0] [--clock=wall|thread]
                [--subtract_overhead] [--calibrate=10]
  spnas-latency profile --target=adb --benchmark_model=PATH [--adb=adb] [--serial=S]
                [--threads=1] [--statistic=avg|min] [--rounds=3] [--affinity=4-7]
                [--benchmark_args="--use_gpu=true"] ... (same --space/--out)
  spnas-latency validate --table=T --n=100 --report=R.json [--space=...] [--seed=0]
                [--threads=N] [--target=host|adb ...] [--plot=R.png] [--cache_dir=DIR]

``--arch`` takes a registry name (``spnas_pixel1``), an ``arch.json`` path, or
``all_<choice>`` (e.g. ``all_k5_e6``, the supernet itself). The last line of
``predict`` is ``predicted_ms: <value>``.

``profile`` times every candidate of every searchable layer of a space as a
one-layer TFLite model with the LiteRT interpreter on this host
(:mod:`spnas.latency.profile`) and writes the table atomically, only when
profiling has finished. ``--space`` takes ``embedded``
(:func:`spnas.space.embedded_space`), ``paper`` (the 224x224 ImageNet
space) or a JSON file holding a search-space dict (or an ``arch.json``, whose
``space`` is used). The embedded table takes about a minute on a 2-core host.
``--target=adb`` times the same models on an Android device with the
``benchmark_model`` binary the user supplies (:mod:`spnas.latency.adb`).

``validate`` measures ``--n`` random networks of the table's space end to end
on the table's target, with the table's statistic and settings, and writes a
JSON report (RMSE, mean absolute % error, share within 5/10 %, for the paper's
and the exact runtime model) and a Fig. 7-style scatter plot
(:mod:`spnas.latency.validate`). The recipe for a new device is in
``docs/new_device.md``.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from spnas.tables import runtime_model
from spnas.latency.adb import DEFAULT_REMOTE_DIR, DEFAULT_ROUNDS, DEFAULT_TIMEOUT_S, AdbError
from spnas.latency.profile import ProfileError
from spnas.tables.table import LatencyTableError, import_original, load_table, save_table

FLAGS = flags.FLAGS
flags.DEFINE_string("table", None, "Latency table (spnas format or the original release's).")
flags.DEFINE_string("arch", None, "Registry name, arch.json path, or all_<choice>.")
flags.DEFINE_enum("model", "paper", list(runtime_model.MODELS), "Runtime model to use.")
flags.DEFINE_string("out", None, "Output table path (import, profile).")
flags.DEFINE_string("device", "Pixel 1",
                    "Device name recorded by import (profile: default this host's CPU).")
flags.DEFINE_float("constant_ms", 19.5999, "Constant term for import (stem, head, fixed layers).")
flags.DEFINE_string("space", "embedded", "profile, validate: 'embedded', 'paper' or a "
                    "search-space JSON file (validate: default the table's own space).")
flags.DEFINE_integer("threads", 1, "profile, validate: interpreter threads (validate: default "
                     "the table's).")
flags.DEFINE_integer("warmup", 20, "profile, validate: untimed invokes per model.")
flags.DEFINE_integer("repeats", 100, "profile, validate: timed invokes per model.")
flags.DEFINE_enum("statistic", None, ["median", "p10", "avg", "min"],
                  "profile: table value per model; host: median (default), p10 or min (resist "
                  "load on a shared host; min is the most repeatable); adb: avg (default) or "
                  "min. validate: default the table's.")
flags.DEFINE_float("max_spread", None,
                   "profile: re-measure, then fail, if a model's spread stays above this "
                   "(host: (p90-p10)/median, adb: std/avg).")
flags.DEFINE_bool("progress", True, "profile, validate: show progress bars.")
flags.DEFINE_bool("subtract_overhead", False,
                  "profile: take the fixed cost of one invoke (timed on a probe model) off every "
                  "entry, so the sum of separately timed layers matches one whole-network invoke.")
flags.DEFINE_integer("calibrate", 0,
                     "profile: also time this many whole random networks with the layers and "
                     "scale the table to them (median measured/predicted); 0: no.")
flags.DEFINE_string("cache_dir", None, "validate: keep the converted networks here (reruns with "
                    "another table or settings skip the conversion).")
flags.DEFINE_string("affinity", None, "profile, validate: CPU ids to pin the timing to, e.g. "
                    "'0' or '4-7' (host: os.sched_setaffinity; adb: taskset on the device).")
flags.DEFINE_enum("clock", None, ["wall", "thread"],
                  "host timing clock: wall (default) or thread (CPU time of the invoking thread; "
                  "threads=1 only). validate: default the table's.")
flags.DEFINE_enum("target", "host", ["host", "adb"], "profile, validate: where to time.")
flags.DEFINE_string("adb", "adb", "adb: the adb executable.")
flags.DEFINE_string("serial", None, "adb: device serial (default: the only device listed).")
flags.DEFINE_string("benchmark_model", None,
                    "adb: TFLite benchmark_model binary for the device (host file or device path).")
flags.DEFINE_string("remote_dir", DEFAULT_REMOTE_DIR, "adb: device directory for the models.")
flags.DEFINE_integer("rounds", DEFAULT_ROUNDS, "adb: benchmark_model calls per model.")
flags.DEFINE_float("timeout_s", DEFAULT_TIMEOUT_S, "adb: time limit of every adb call.")
flags.DEFINE_string("benchmark_args", "", "adb: extra benchmark_model flags, space-separated.")
flags.DEFINE_integer("n", 100, "validate: random networks to measure.")
flags.DEFINE_integer("seed", 0, "validate: seed of the random networks.")
flags.DEFINE_string("report", None, "validate: output report JSON.")
flags.DEFINE_string("plot", None, "validate: scatter plot PNG (default: the report's name .png).")

COMMANDS = ("predict", "import", "profile", "validate")


def resolve_arch(arch: str, space=None):
    """Returns (choices, space, label) for a registry name, arch.json or all_<choice>."""
    from spnas.arch.handoff import load_arch
    from spnas.arch.registry import get_arch
    from spnas.space import CANDIDATES, SearchSpace, uniform_choices

    if arch.startswith("all_") and arch[4:] in CANDIDATES:
        space = space or SearchSpace()
        return uniform_choices(space, arch[4:]), space, arch
    if arch.endswith(".json") or os.path.sep in arch:
        data = load_arch(arch)
        space = SearchSpace.from_dict(data["space"]) if "space" in data else (space or SearchSpace())
        return list(data["layers"]), space, arch
    entry = get_arch(arch)
    if entry.choices is None:
        raise ValueError(f"Architecture {arch!r} is not in the single-path search space.")
    return list(entry.choices), entry.space or SearchSpace(), arch


def predict(table_path: str, arch: str, model: str = "paper") -> float:
    choices, space, _ = resolve_arch(arch)
    table = load_table(table_path, space=space)
    ms = runtime_model.predict_ms(table, choices, space, model=model)
    print(f"table: {table.device} ({table_path})")
    print(f"arch: {arch}")
    print(f"layers: {' '.join(choices)}")
    print(f"model: {model}")
    print(f"predicted_ms: {ms:.4f}")
    return ms


def make_target():
    """The AdbTarget the flags describe, or None for ``--target=host``."""
    import shlex

    from spnas.latency.adb import AdbTarget
    from spnas.latency.profile import parse_cpus

    if FLAGS.target == "host":
        return None
    if not FLAGS.benchmark_model:
        raise app.UsageError("--target=adb needs --benchmark_model (a host file or device path).")
    return AdbTarget(
        benchmark_model=FLAGS.benchmark_model, adb=FLAGS.adb, serial=FLAGS.serial,
        remote_dir=FLAGS.remote_dir, rounds=FLAGS.rounds, timeout_s=FLAGS.timeout_s,
        benchmark_args=tuple(shlex.split(FLAGS.benchmark_args)), cpus=parse_cpus(FLAGS.affinity),
    )


def profile(space: str, out: str, device: str | None = None, target=None, **kwargs) -> None:
    """Profiles ``space`` on this host (or ``target``) and writes the table to ``out`` atomically."""
    from spnas.fileio import check_writable_dir
    from spnas.latency.profile import host_description, profile_table, resolve_space

    # Fail on an unwritable destination now, not after minutes of profiling.
    check_writable_dir(os.path.dirname(os.path.abspath(out)))
    resolved = resolve_space(space)
    if target is not None:
        target.connect()
        if device is None:
            info = target.describe()
            device = f"{info.get('model', 'unknown')} ({info.get('abi', 'unknown')}, " \
                     f"adb {target.serial})"
        kwargs["affinity"] = None  # pinned on the device by the target's taskset
    table = profile_table(resolved, device=device or host_description(), target=target, **kwargs)
    save_table(table, out)
    spread = table.extra["max_spread"]
    calibration = table.extra.get("calibration")
    if calibration:
        print(f"calibration: scale {calibration['scale']:.4f} from {calibration['n']} networks "
              f"(measured/predicted sd {calibration['ratio_sd_pct']:.2f} %)")
    print(f"wrote {out} ({len(table.layers)} searchable layers, constant {table.constant_ms:.4f} ms, "
          f"max spread {'n/a' if spread is None else f'{spread:.2f}'}, "
          f"{table.extra['profile_seconds']:.0f} s)")


def validate(table_path: str, report_path: str, target=None, plot: str | None = None,
             **kwargs) -> dict:
    """Measures random networks against the table's prediction; writes the report and plot."""
    from spnas.fileio import check_writable_dir
    from spnas.latency.profile import resolve_space
    from spnas.latency.validate import validate as run_validation
    from spnas.latency.validate import write_report
    from spnas.space import SearchSpace

    check_writable_dir(os.path.dirname(os.path.abspath(report_path)))
    table = load_table(_table_path(table_path))
    if FLAGS["space"].present:
        space = resolve_space(FLAGS.space)
    elif isinstance(table.extra.get("space"), dict):
        space = SearchSpace.from_dict(table.extra["space"])
    else:
        raise app.UsageError(f"Table {table_path!r} records no search space: pass --space.")
    report = run_validation(table, space, target=target, **kwargs)
    plot_path = write_report(report, report_path, plot)
    for model in ("paper", "exact"):
        m = report["metrics"][model]
        print(f"{model:>5}: RMSE {m['rmse_ms']:.4g} ms ({m['rmse_pct_of_mean']:.2f} % of mean), "
              f"MAPE {m['mape']:.2f} %, bias {m['bias_pct']:+.2f} %, within 5 % "
              f"{m['within5']:.0f} %, within 10 % {m['within10']:.0f} %")
    print(f"wrote {report_path} and {plot_path} ({report['n']} nets, mean measured "
          f"{report['measured_mean_ms']:.4g} ms, {report['settings']['seconds']:.0f} s)")
    return report


def _table_path(value: str) -> str:
    if os.path.exists(value):
        return value
    from spnas.tables import shipped as tables

    return tables.path(value)  # FileNotFoundError names the shipped tables


def main_(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"Usage: spnas-latency {{{'|'.join(COMMANDS)}}} --flags ...")
    command = argv[1]
    try:
        if command == "predict":
            if not FLAGS.table or not FLAGS.arch:
                raise app.UsageError("predict needs --table and --arch.")
            predict(FLAGS.table, FLAGS.arch, FLAGS.model)
        elif command == "import":
            if not FLAGS.table or not FLAGS.out:
                raise app.UsageError("import needs --table (original format) and --out.")
            import json

            with open(FLAGS.table) as f:
                data = json.load(f)
            table = import_original(data, constant_ms=FLAGS.constant_ms, device=FLAGS.device,
                                    path=FLAGS.table)
            save_table(table, FLAGS.out)
            print(f"wrote {FLAGS.out} ({len(table.layers)} searchable layers, device {table.device!r})")
        elif command == "profile":
            from spnas.latency.profile import parse_cpus

            if not FLAGS.out:
                raise app.UsageError("profile needs --out.")
            target = make_target()
            statistic = FLAGS.statistic or ("median" if target is None else "avg")
            profile(FLAGS.space, FLAGS.out,
                    device=FLAGS.device if FLAGS["device"].present else None, target=target,
                    threads=FLAGS.threads, warmup=FLAGS.warmup, repeats=FLAGS.repeats,
                    statistic=statistic, max_spread=FLAGS.max_spread,
                    progress=FLAGS.progress, affinity=parse_cpus(FLAGS.affinity),
                    clock=FLAGS.clock or "wall", subtract_overhead=FLAGS.subtract_overhead,
                    calibrate=FLAGS.calibrate)
        elif command == "validate":
            from spnas.latency.profile import parse_cpus

            if not FLAGS.table or not FLAGS.report:
                raise app.UsageError("validate needs --table and --report.")
            target = make_target()

            def given(name):
                return FLAGS[name].value if FLAGS[name].present else None

            validate(FLAGS.table, FLAGS.report, target=target, plot=FLAGS.plot, n=FLAGS.n,
                     seed=FLAGS.seed, threads=given("threads"), warmup=given("warmup"),
                     repeats=given("repeats"), statistic=FLAGS.statistic,
                     affinity=parse_cpus(FLAGS.affinity) if target is None else None,
                     clock=FLAGS.clock, progress=FLAGS.progress, cache_dir=FLAGS.cache_dir)
    except (LatencyTableError, FileNotFoundError, KeyError, ValueError, ProfileError,
            PermissionError, AdbError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"spnas-latency: error: {msg}", file=sys.stderr)
        sys.exit(2)


def main():
    app.run(main_)


if __name__ == "__main__":
    main()
