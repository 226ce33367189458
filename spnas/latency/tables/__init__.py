"""Latency tables shipped with spnas (JSON, ``spnas.latency_table/1``).

``embedded_cpu``: :func:`spnas.search.space.embedded_space` profiled on the
project's 2-core x86 development host (AMD EPYC VM, shared with other jobs) so
the default search needs no profiling step::

  spnas-latency profile --space=embedded --out=spnas/latency/tables/embedded_cpu.json \
      --threads=1 --repeats=2000 --statistic=p10

(float TFLite, LiteRT with XNNPACK, 1 thread; ``p10`` because the host was
loaded, see :data:`spnas.latency.profile.STATISTICS`). The file records its
own settings, host, load average and per-entry spread.
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
