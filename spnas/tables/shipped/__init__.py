"""Latency tables shipped with spnas (JSON, ``spnas.latency_table/1``), and the one
resolver of a table argument.

``embedded_cpu``: :func:`spnas.space.embedded_space` profiled on the project's
2-core x86 development host (AMD EPYC VM) so the default search needs no
profiling step::

  spnas-latency profile --space=embedded --out=spnas/tables/shipped/embedded_cpu.json \
      --threads=1 --repeats=2000 --statistic=min --subtract_overhead --calibrate=10

``cifar10_cpu``: :func:`spnas.space.cifar_space` (the paper's space for 32x32
CIFAR-10 images: stride-1 stem, width 0.5), profiled the same way on the same host
(47 s; calibration scale 1.0055 over ten networks, sd 0.66 %; range 0.103-0.479 ms)::

  spnas-latency profile --space=cifar10 --out=spnas/tables/shipped/cifar10_cpu.json \
      --threads=1 --repeats=2000 --statistic=min --subtract_overhead --calibrate=10

``embedded_cpu_int8`` and ``embedded_cpu_onnxruntime``: the embedded space as
full-integer int8 TFLite models on LiteRT (``deployment: int8 / litert``) and as
float ONNX models on ONNX Runtime (``float32 / onnxruntime``, 1 intra-op thread),
profiled the same way on the same host, with ``--precision=int8`` and
``--runtime=onnxruntime`` (88 s and 85 s at load ~3). Validated against 30 random
networks each (bench/results/validate_embedded_cpu_int8.json and
validate_embedded_cpu_onnxruntime.json): MAPE 0.69 % and 0.68 % (exact sum)::

  spnas-latency profile --space=embedded --out=spnas/tables/shipped/embedded_cpu_int8.json \
      --precision=int8 --threads=1 --repeats=2000 --statistic=min --subtract_overhead \
      --calibrate=10

``nasbench_macro_cpu``: :func:`spnas.space.nasbench_macro_space` (NAS-Bench-Macro's
8-layer space; entries for k3_e3, k5_e6 and, at the three strided first layers, the
projection skip), profiled the same way on the same host kind (AMD EPYC VM, 2026-12-08;
88 s; range 0.209-3.160 ms). Its calibration networks spread more than the other
spaces' (measured / predicted 1.00-1.29, sd 8.7 %: the nets with k5_e6 in the
256-channel stage run slower in a network than their layers alone, their 1536-channel
weights no longer staying in the caches), so a prediction on this space can be off by
~10-20 % for the largest nets::

  spnas-latency profile --space=nasbench_macro --out=spnas/tables/shipped/nasbench_macro_cpu.json \
      --threads=1 --repeats=2000 --statistic=min --subtract_overhead --calibrate=10

``smoke_cpu``: :func:`spnas.space.smoke_space`, profiled the same way. Each file
records its own settings, host, load average and per-entry spread.
"""

from __future__ import annotations

import os

_DIR = os.path.dirname(os.path.abspath(__file__))


def available() -> list[str]:
    """Names of the shipped tables (file names without ``.json``)."""
    return sorted(f[: -len(".json")] for f in os.listdir(_DIR) if f.endswith(".json"))


def path(name: str) -> str:
    """The file of a shipped table, e.g. ``path("embedded_cpu")``.

    Raises:
      FileNotFoundError: naming the shipped tables when ``name`` is not one.
    """
    stem = name[: -len(".json")] if name.endswith(".json") else name
    file = os.path.join(_DIR, stem + ".json")
    if os.sep in stem or not os.path.isfile(file):
        raise FileNotFoundError(
            f"No shipped latency table {name!r}; available: {', '.join(available()) or 'none'}."
        )
    return file


def resolve(value: str) -> str:
    """A table argument (``--table``, ``config.latency_table``) as a file path.

    An existing path (even a directory or a broken link: the reader,
    :func:`spnas.tables.table.load_table`, says what is wrong with it) wins;
    otherwise ``value`` names a shipped table. Every command resolves a table
    through this one function: ``load_table`` calls it, so a shipped name works
    wherever a table is read.

    Raises:
      FileNotFoundError: empty, a path that does not exist, or not a shipped name
        (lists the shipped tables).
    """
    value = os.fspath(value or "")
    if not value:
        raise FileNotFoundError(
            "No latency table given: pass a table file or one of the shipped tables "
            f"({', '.join(available())})."
        )
    if os.path.lexists(value):
        return value
    if os.sep in value or (os.altsep and os.altsep in value):
        raise FileNotFoundError(
            f"Latency table file {value!r} does not exist. No shipped latency table has that "
            f"name either; available: {', '.join(available()) or 'none'}."
        )
    return path(value)
