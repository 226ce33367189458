"""``spnas-latency``: latency tables and predictions.

  spnas-latency predict --table=T --arch=NAME_OR_ARCH_JSON [--model=paper|exact]
  spnas-latency import --table=ORIGINAL.json --out=TABLE.json [--device=...]
  spnas-latency profile --space=embedded|paper|SPACE.json --out=TABLE.json
                [--threads=1] [--warmup=20] [--repeats=100] [--statistic=median|p10]
                [--max_spread=X] [--device=NAME]

``--arch`` takes a registry name (``spnas_pixel1``), an ``arch.json`` path, or
``all_<choice>`` (e.g. ``all_k5_e6``, the supernet itself). The last line of
``predict`` is ``predicted_ms: <value>``.

``profile`` times every candidate of every searchable layer of a space as a
one-layer TFLite model with the LiteRT interpreter on this host
(:mod:`spnas.latency.profile`) and writes the table atomically, only when
profiling has finished. ``--space`` takes ``embedded``
(:func:`spnas.search.space.embedded_space`), ``paper`` (the 224x224 ImageNet
space) or a JSON file holding a search-space dict (or an ``arch.json``, whose
``space`` is used). The embedded table takes about a minute on a 2-core host.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from spnas.latency import runtime_model
from spnas.latency.profile import ProfileError
from spnas.latency.table import LatencyTableError, import_original, load_table, save_table

FLAGS = flags.FLAGS
flags.DEFINE_string("table", None, "Latency table (spnas format or the original release's).")
flags.DEFINE_string("arch", None, "Registry name, arch.json path, or all_<choice>.")
flags.DEFINE_enum("model", "paper", list(runtime_model.MODELS), "Runtime model to use.")
flags.DEFINE_string("out", None, "Output table path (import, profile).")
flags.DEFINE_string("device", "Pixel 1",
                    "Device name recorded by import (profile: default this host's CPU).")
flags.DEFINE_float("constant_ms", 19.5999, "Constant term for import (stem, head, fixed layers).")
flags.DEFINE_string("space", "embedded", "profile: 'embedded', 'paper' or a search-space JSON file.")
flags.DEFINE_integer("threads", 1, "profile: LiteRT interpreter threads.")
flags.DEFINE_integer("warmup", 20, "profile: untimed invokes per model.")
flags.DEFINE_integer("repeats", 100, "profile: timed invokes per model.")
flags.DEFINE_enum("statistic", "median", ["median", "p10"],
                  "profile: table value per model (p10 resists load on a shared host).")
flags.DEFINE_float("max_spread", None,
                   "profile: fail if a model's (p90-p10)/median stays above this.")
flags.DEFINE_bool("progress", True, "profile: show progress bars.")

COMMANDS = ("predict", "import", "profile")


def resolve_arch(arch: str, space=None):
    """Returns (choices, space, label) for a registry name, arch.json or all_<choice>."""
    from spnas.models.registry import get_arch
    from spnas.search.decode import load_arch
    from spnas.search.space import CANDIDATES, SearchSpace, uniform_choices

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


def profile(space: str, out: str, device: str | None = None, **kwargs) -> None:
    """Profiles ``space`` on this host and writes the table to ``out`` atomically."""
    from spnas.fileio import check_writable_dir
    from spnas.latency.profile import host_description, profile_table, resolve_space

    # Fail on an unwritable destination now, not after minutes of profiling.
    check_writable_dir(os.path.dirname(os.path.abspath(out)))
    resolved = resolve_space(space)
    table = profile_table(resolved, device=device or host_description(), **kwargs)
    save_table(table, out)
    print(f"wrote {out} ({len(table.layers)} searchable layers, constant {table.constant_ms:.4f} ms, "
          f"max spread {table.extra['max_spread']:.2f}, {table.extra['profile_seconds']:.0f} s)")


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
            if not FLAGS.out:
                raise app.UsageError("profile needs --out.")
            profile(FLAGS.space, FLAGS.out,
                    device=FLAGS.device if FLAGS["device"].present else None,
                    threads=FLAGS.threads, warmup=FLAGS.warmup, repeats=FLAGS.repeats,
                    statistic=FLAGS.statistic, max_spread=FLAGS.max_spread,
                    progress=FLAGS.progress)
    except (LatencyTableError, FileNotFoundError, KeyError, ValueError, ProfileError,
            PermissionError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"spnas-latency: error: {msg}", file=sys.stderr)
        sys.exit(2)


def main():
    app.run(main_)


if __name__ == "__main__":
    main()
