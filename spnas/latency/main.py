"""``spnas-latency``: latency tables and predictions.

  spnas-latency predict --table=T --arch=NAME_OR_ARCH_JSON [--model=paper|exact]
  spnas-latency import --table=ORIGINAL.json --out=TABLE.json [--device=...]
  spnas-latency profile --space=embedded|paper|SPACE.json --out=TABLE.json
                [--threads=1] [--warmup=20] [--repeats=100] [--statistic=median|p10]
                [--max_spread=X] [--device=NAME] [--affinity=0] [--clock=wall|thread]
                [--subtract_overhead] [--calibrate=10]
                [--precision=float32|int8] [--runtime=litert|onnxruntime]
  spnas-latency profile --target=adb --benchmark_model=PATH [--adb=adb] [--serial=S]
                [--threads=1] [--statistic=avg|min] [--rounds=3] [--affinity=4-7]
                [--benchmark_args="--use_gpu=true"] ... (same --space/--out)
  spnas-latency validate --table=T --n=100 --report=R.json [--space=...] [--seed=0]
                [--threads=N] [--target=host|adb ...] [--plot=R.png] [--cache_dir=DIR]

``--arch`` takes a registry name (``spnas_pixel1``), an ``arch.json`` path, or
``all_<choice>`` (e.g. ``all_k5_e6``, the supernet itself). The last line of
``predict`` is ``predicted_ms: <value>``.

``--table`` takes a table file or a shipped table's name (``embedded_cpu``),
resolved by the one resolver every table argument goes through
(:func:`spnas.tables.shipped.resolve`, called by ``load_table``). An ``--arch``
with no space of its own (``all_<choice>``) is read in the table's recorded
space. A table, arch or output path that cannot be what it should be (missing,
a directory, empty, binary, truncated, of another format or version) is one
line naming the file.

``profile`` times every candidate of every searchable layer of a space as a
one-layer TFLite model with the LiteRT interpreter on this host
(:mod:`spnas.latency.profile`) and writes the table atomically, only when
profiling has finished. ``--space`` takes ``embedded``
(:func:`spnas.space.embedded_space`), ``paper`` (the 224x224 ImageNet
space), ``smoke`` or a JSON file holding a search-space dict (or an
``arch.json``, whose ``space`` is used). The embedded table takes about a minute on a 2-core host.
``--precision=int8`` profiles full-integer TFLite models instead of float
ones, ``--runtime=onnxruntime`` float ONNX models with ONNX Runtime (the
``[onnx]`` extra); the table records both (``deployment``) and ``validate``
measures its networks the same way (:mod:`spnas.latency.runtimes`).
``--target=adb`` times the same models on an Android device with the
``benchmark_model`` binary the user supplies (:mod:`spnas.latency.adb`).

``validate`` measures ``--n`` random networks of the table's space end to end
on the table's target, with the table's statistic and settings, and writes a
JSON report (RMSE, mean absolute % error, share within 5/10 %, for the paper's
and the exact runtime model) and a Fig. 7-style scatter plot
(:mod:`spnas.latency.validate`). The recipe for a new device is in
``docs/new_device.md``.

The shared flags are in :mod:`spnas.latency.cli_flags`, each subcommand in its
own ``spnas.latency.cli_*`` module.
"""

from __future__ import annotations

from absl import app, flags

from spnas import cli
from spnas.latency import cli_flags, cli_import, cli_predict, cli_profile, cli_validate

COMMANDS = {
    "predict": cli_predict,
    "import": cli_import,
    "profile": cli_profile,
    "validate": cli_validate,
}
for _module in (cli_flags, *COMMANDS.values()):
    flags.adopt_module_key_flags(_module)


def _body(argv) -> None:
    if len(argv) < 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"Usage: spnas-latency {{{'|'.join(COMMANDS)}}} --flags ...")
    COMMANDS[argv[1]].body()  # nothing returned: app.run would take it as the exit status


main = cli.entry_point("spnas-latency", _body)

if __name__ == "__main__":
    main()
