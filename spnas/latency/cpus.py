"""CPU lists: parsing ``--affinity`` and pinning the host's timing thread.

Keras-free (the command-line tools read their flags with it before
TensorFlow loads); the device side pins with ``taskset``
(:func:`spnas.latency.adb.cpu_mask`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from spnas.errors import UserError


class CpuError(UserError):
    """A CPU list that is malformed or names CPUs this process may not use."""


def parse_cpus(spec: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"0,2-3"`` -> ``(0, 2, 3)``; None or ``""`` -> None.

    Raises:
      CpuError: a malformed list.
    """
    if spec is None or spec == "":
        return None
    cpus = tuple(int(c) for c in spec) if not isinstance(spec, str) else _cpu_list(spec)
    if not cpus or any(c < 0 for c in cpus):
        raise CpuError(f"Malformed CPU list {spec!r}; expected ids >= 0.")
    return tuple(sorted(set(cpus)))


def _cpu_list(spec: str) -> tuple[int, ...]:
    cpus: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError  # caught below
                cpus.extend(range(lo, hi + 1))
            else:
                cpus.append(int(part))
        except ValueError:
            raise CpuError(
                f"Malformed CPU list {spec!r}; expected ids and ranges like '0' or '0,2-3'."
            ) from None
    return tuple(cpus)


@contextlib.contextmanager
def cpu_affinity(cpus: Sequence[int] | None) -> Iterator[None]:
    """Pins the calling thread to ``cpus`` for the block (None: no change).

    Threads created inside the block (the interpreter's workers) inherit the
    mask; the previous mask is restored afterwards.

    Raises:
      CpuError: CPUs this process may not use, or no affinity support.
    """
    if not cpus:
        yield
        return
    if not hasattr(os, "sched_setaffinity"):
        raise CpuError("CPU affinity needs os.sched_setaffinity (Linux); drop --affinity.")
    allowed = os.sched_getaffinity(0)
    bad = sorted(set(cpus) - allowed)
    if bad:
        raise CpuError(f"CPUs {bad} are not available to this process (allowed: {sorted(allowed)}).")
    os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)
