"""Timing TFLite (or ONNX) models on this host, and the statistics a table may hold.

All models of a profiling (or validation) run are timed *interleaved*
(:func:`time_interleaved`): the repeats are split into rounds of :data:`CHUNK`
invokes and each round visits every model, so load from other processes during
the run is shared by all entries instead of biasing some of them.

Two knobs make host timings more repeatable on a shared machine:
:func:`spnas.latency.cpus.cpu_affinity` pins the timing thread (and the
interpreter's threads, created after it) to chosen CPUs with ``os.sched_setaffinity``, and
``clock="thread"`` times each invoke by the CPU time of the calling thread
(``time.thread_time_ns``) instead of wall time, so time the thread spends
descheduled by other processes is not counted (single-threaded interpreters
only: worker threads' time would be missed).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from spnas.errors import UserError
from spnas.export.litert import LatencyStats, measure_latency, time_invokes
from spnas.latency.adb import ADB_STATISTICS
from spnas.latency.cpus import cpu_affinity
from spnas.latency.probe import convert, network_model
from spnas.latency.runtimes import prepare
from spnas.space import SearchSpace

CHUNK = 10  # timed invokes per visit of a model; repeats / CHUNK rounds
CHUNK_WARMUP = 1  # untimed invokes each time the timing returns to a model
# Table value per model. ``median`` is what the paper's on-device profiling
# reports. On a shared, loaded host the median of long invokes rises more than
# that of short ones (they are hit by more interruptions), so a sum of short
# per-layer medians underestimates a whole network's median: on the embedded
# space with the 2-core host at load ~4, the additive prediction had 6.2 % RMSE
# (-5.3 % bias) against 20 measured networks with medians, 2.6 % (-0.8 %) with
# p10. ``p10`` approximates what an idle machine's median would be. ``min`` is
# the most repeatable on this host: contention from other jobs (shared caches,
# memory bandwidth, the hypervisor) slows whole stretches of invokes, which
# moves even p10 by several percent between runs, while the fastest of many
# invokes stays within ~1 % (two profiles of the embedded space: median entry
# difference 1.2 % with min, 3.0 % with p10, 12.8 % with median).
STATISTICS = ("median", "p10", "min")
# How one invoke is timed on the host: wall time (time.perf_counter), or the
# CPU time of the invoking thread, which leaves out time spent descheduled.
CLOCKS = ("wall", "thread")

# Kept as a name: host timings are LatencyStats, min included.
HostStats = LatencyStats


class TimingError(UserError):
    """Timing settings that cannot be used: counts, clock or statistic (names which)."""


def check_clock(clock: str, threads: int) -> None:
    """Raises TimingError for an unknown clock, or ``thread`` with several threads."""
    if clock not in CLOCKS:
        raise TimingError(f"Unknown clock {clock!r}; expected one of {CLOCKS}.")
    if clock == "thread" and threads != 1:
        raise TimingError(
            f"clock='thread' times only the calling thread; it needs threads=1, got {threads}."
        )


def check_statistic(statistic: str, on_device: bool) -> None:
    """Raises TimingError unless ``statistic`` is one the host (or a device) reports."""
    allowed = ADB_STATISTICS if on_device else STATISTICS
    if statistic not in allowed:
        where = "benchmark_model on a device" if on_device else "the host profiler"
        raise TimingError(f"Unknown statistic {statistic!r} for {where}; expected one of {allowed}.")


def statistic_value(stats, statistic: str) -> float:
    """``stats.<statistic>_ms``: one of a LatencyStats' or a BenchmarkStats' values."""
    return float(getattr(stats, f"{statistic}_ms"))


def load_average() -> float | None:
    """This host's 1-minute load average (None where it is not known)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _thread_time_invokes(interp, count: int) -> list[float]:
    out = []
    for _ in range(count):
        start = time.thread_time_ns()
        interp.invoke()
        out.append((time.thread_time_ns() - start) * 1e-6)
    return out


def split_repeats(repeats: int, chunk: int = CHUNK) -> list[int]:
    """The timed invokes of each round: ``repeats`` in rounds of about ``chunk``."""
    rounds = max(1, -(-repeats // chunk))
    base, extra = divmod(repeats, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def time_interleaved(
    flatbuffers: Sequence[bytes],
    threads: int = 1,
    warmup: int = 20,
    repeats: int = 100,
    chunk: int = CHUNK,
    progress=None,
    clock: str = "wall",
    runtime: str = "litert",
) -> list[HostStats]:
    """Times several models interleaved; one :class:`HostStats` per model.

    Every model is warmed up, then its ``repeats`` timed invokes are split into
    rounds of about ``chunk`` invokes; each round visits every model once (in a
    rotating order) and times its chunk after :data:`CHUNK_WARMUP` untimed
    invokes (the other models evicted its weights from the caches). More
    repeats thus spread each model's samples over a longer time, which
    averages out changes of load on a shared host.

    Args:
      flatbuffers: the models.
      threads, warmup, repeats: as for :func:`spnas.export.litert.measure_latency`.
      chunk: timed invokes per visit of a model.
      progress: optional tqdm bar, advanced by one per round.
      clock: ``wall`` or ``thread`` (see :data:`CLOCKS`).
      runtime: ``litert`` (TFLite flatbuffers) or ``onnxruntime`` (ONNX models,
        timed the same way: ``invoke()`` runs the session with its input bound).
    """
    check_clock(clock, threads)
    timer = time_invokes if clock == "wall" else _thread_time_invokes
    interps = [prepare(fb, runtime, threads=threads) for fb in flatbuffers]
    for interp in interps:
        timer(interp, warmup)
    samples: list[list[float]] = [[] for _ in interps]
    for r, count in enumerate(split_repeats(repeats, chunk)):
        for j in range(len(interps)):
            i = (j + r) % len(interps)
            timer(interps[i], CHUNK_WARMUP)
            samples[i].extend(timer(interps[i], count))
        if progress is not None:
            progress.update(1)
    return [HostStats.from_samples(s, threads) for s in samples]


def measure_network(
    space: SearchSpace,
    choices: Sequence[str],
    threads: int = 1,
    warmup: int = 20,
    repeats: int = 100,
) -> LatencyStats:
    """Whole-network TFLite latency of an architecture (to check a table)."""
    return measure_latency(convert(network_model(space, choices)), threads=threads,
                           warmup=warmup, repeats=repeats)


def measure(flatbuffers, *, target=None, threads=1, warmup=20, repeats=100, affinity=None,
            clock="wall", progress=None, runtime="litert"):
    """Times models on ``target`` (an AdbTarget) or, for None, interleaved on this host.

    ``runtime`` (host only): ``litert`` or ``onnxruntime``.
    """
    if target is not None:
        return target.measure(flatbuffers, threads=threads, warmup=warmup, repeats=repeats,
                              progress=progress)
    with cpu_affinity(affinity):
        return time_interleaved(flatbuffers, threads, warmup, repeats, progress=progress,
                                clock=clock, runtime=runtime)


def rounds_of(target, repeats: int) -> int:
    """How many timing rounds :func:`measure` makes (one progress step each)."""
    return target.rounds if target is not None else len(split_repeats(repeats))
