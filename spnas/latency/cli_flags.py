"""The flags ``spnas-latency``'s subcommands share, and what they build from them.

Keras-free, like every ``spnas-latency`` command module: flags are read and
checked before :func:`spnas.cli.call` loads TensorFlow. Each subcommand's own
flags are in its module (:mod:`~spnas.latency.cli_predict`,
:mod:`~spnas.latency.cli_import`, :mod:`~spnas.latency.cli_profile`,
:mod:`~spnas.latency.cli_validate`).
"""

from __future__ import annotations

import shlex

from absl import app, flags

from spnas.latency.adb import DEFAULT_REMOTE_DIR, DEFAULT_ROUNDS, DEFAULT_TIMEOUT_S, AdbTarget
from spnas.latency.cpus import parse_cpus

FLAGS = flags.FLAGS
flags.DEFINE_string("table", None, "Latency table (spnas format or the original release's).")
flags.DEFINE_string("out", None, "Output table path (import, profile).")
flags.DEFINE_string("device", "Pixel 1",
                    "Device name recorded by import (profile: default this host's CPU).")
flags.DEFINE_string("space", "embedded", "profile, validate: 'embedded', 'cifar10', 'paper' or a "
                    "search-space JSON file (validate: default the table's own space).")
flags.DEFINE_integer("threads", 1, "profile, validate: interpreter threads (validate: default "
                     "the table's).")
flags.DEFINE_integer("warmup", 20, "profile, validate: untimed invokes per model.")
flags.DEFINE_integer("repeats", 100, "profile, validate: timed invokes per model.")
flags.DEFINE_enum("statistic", None, ["median", "p10", "avg", "min"],
                  "profile: table value per model; host: median (default), p10 or min (resist "
                  "load on a shared host; min is the most repeatable); adb: avg (default) or "
                  "min. validate: default the table's.")
flags.DEFINE_bool("progress", True, "profile, validate: show progress bars.")
flags.DEFINE_string("affinity", None, "profile, validate: CPU ids to pin the timing to, e.g. "
                    "'0' or '4-7' (host: os.sched_setaffinity; adb: taskset on the device).")
flags.DEFINE_enum("clock", None, ["wall", "thread"],
                  "host timing clock: wall (default) or thread (CPU time of the invoking thread; "
                  "threads=1 only). validate: default the table's.")
flags.DEFINE_enum("target", "host", ["host", "adb"], "profile, validate: where to time.")
flags.DEFINE_enum("precision", None, ["float32", "int8"],
                  "profile: the models' precision: float32 (default) or int8 (full-integer "
                  "TFLite). validate: the table's (another is refused).")
flags.DEFINE_enum("runtime", None, ["litert", "onnxruntime"],
                  "profile: the runtime timed: litert (default) or onnxruntime (host, float32, "
                  "needs the [onnx] extra). validate: the table's (another is refused).")
flags.DEFINE_string("adb", "adb", "adb: the adb executable.")
flags.DEFINE_string("serial", None, "adb: device serial (default: the only device listed).")
flags.DEFINE_string("benchmark_model", None,
                    "adb: TFLite benchmark_model binary for the device (host file or device path).")
flags.DEFINE_string("remote_dir", DEFAULT_REMOTE_DIR, "adb: device directory for the models.")
flags.DEFINE_integer("rounds", DEFAULT_ROUNDS, "adb: benchmark_model calls per model.")
flags.DEFINE_float("timeout_s", DEFAULT_TIMEOUT_S, "adb: time limit of every adb call.")
flags.DEFINE_string("benchmark_args", "", "adb: extra benchmark_model flags, space-separated.")


def require(command: str, names: tuple[str, ...], what: str) -> None:
    """A usage error ``<command> needs <what>.`` unless every flag in ``names`` is set."""
    if not all(getattr(FLAGS, name) for name in names):
        raise app.UsageError(f"{command} needs {what}.")


def given(name: str):
    """The flag's value where it was given on the command line, else None."""
    return FLAGS[name].value if FLAGS[name].present else None


def make_target() -> AdbTarget | None:
    """The AdbTarget the flags describe, or None for ``--target=host``."""
    if FLAGS.target == "host":
        return None
    if not FLAGS.benchmark_model:
        raise app.UsageError("--target=adb needs --benchmark_model (a host file or device path).")
    return AdbTarget(
        benchmark_model=FLAGS.benchmark_model, adb=FLAGS.adb, serial=FLAGS.serial,
        remote_dir=FLAGS.remote_dir, rounds=FLAGS.rounds, timeout_s=FLAGS.timeout_s,
        benchmark_args=tuple(shlex.split(FLAGS.benchmark_args)), cpus=parse_cpus(FLAGS.affinity),
    )
