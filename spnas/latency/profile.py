"""On-host latency-table profiling with TFLite and the LiteRT interpreter.

The paper's runtime model (Stamoulis et al., 2019, Sec. 3.4, Eq. 10-12) needs,
for every searchable layer, the runtime of the four candidates k3e3, k3e6,
k5e3, k5e6 *at that layer's position* (input size, channels, stride), measured
on the target device, plus a constant for the parts the search never changes.
The authors profiled these on a Pixel 1 with TFLite; we do the same on the host
CPU:

* each candidate of each searchable layer becomes a one-layer Keras model,
  input ``(1, hw, hw, in_ch)`` -> :func:`spnas.models.blocks.mbconv` with that
  kernel/expansion and the layer's stride and residual, converted to a float
  TFLite model and timed with the LiteRT interpreter (``repeats`` timed
  ``invoke()`` calls after ``warmup``; the table holds their median, their
  10th percentile (``statistic="p10"``) or their minimum (``"min"``));
* the constant is the sum of the same statistic over the fixed parts, each
  timed as its own TFLite model the same way: the stem (conv 3x3 + BN + ReLU),
  every non-searchable MBConv layer (the paper's fixed first and last layers),
  and the head (conv 1x1 + BN + ReLU + pool + FC to ``space.num_classes``).
  Timing them separately, like the searchable layers, keeps the table additive:
  the prediction of a network is one sum of per-model times. Each model pays
  the fixed cost of one ``invoke()``, a network pays it once:
  ``subtract_overhead`` times a probe model that does next to no work and
  takes its time off every entry but the stem, and ``calibrate`` times whole
  random networks with the layers and scales the table to them (see
  :func:`table_from_profile`).

All models are converted first and then timed *interleaved*: the repeats are
split into rounds of :data:`CHUNK` invokes and each round visits every model, so
load from other processes during the run is shared by all entries instead of
biasing some of them. The settings, per-entry spread ``(p90-p10)/median``, the
constant's parts, the layer shapes (checked by
:meth:`LatencyTable.validate_for`) and the host's load average are recorded in
the table's ``extra`` fields.

Two knobs make host tables more repeatable on a shared machine: ``affinity``
pins the timing thread (and the interpreter's threads, created after it) to
chosen CPUs with ``os.sched_setaffinity``, and ``clock="thread"`` times each
invoke by the CPU time of the calling thread (``time.thread_time_ns``) instead
of wall time, so time the thread spends descheduled by other processes is not
counted (single-threaded interpreters only: worker threads' time would be
missed). With ``target`` (an :class:`spnas.latency.adb.AdbTarget`) the same
models are timed on an Android device by ``benchmark_model`` instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import os
import platform
import time
from collections.abc import Iterator, Sequence

import numpy as np

from spnas.errors import UserError
from spnas.export.litert import (
    LatencyStats,
    delegated,
    litert_version,
    prepare_for_timing,
    time_invokes,
)
from spnas.export.tflite import convert_float
from spnas.space import CANDIDATES, LayerSpec, SearchSpace, parse_choice
from spnas.tables.table import LatencyTable

CHUNK = 10  # timed invokes per visit of a model; repeats / CHUNK rounds
CHUNK_WARMUP = 1  # untimed invokes each time the timing returns to a model
MAX_RETRIES = 2  # extra measurements of models whose spread exceeds max_spread
# The profiler converts ~4 models per layer; the in-process graph path gives the
# same TFLite graph as the SavedModel path about 4x faster (spnas.export.tflite).
CONVERSION = "graph"
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
# Seed of the calibration networks: not 0, the default seed of spnas-latency
# validate, so a validation draws other networks than the calibration.
CALIBRATION_SEED = 20190402
# An entry never drops below this share of its raw value when the invoke
# overhead is taken off (a layer always does some work of its own).
MIN_AFTER_OVERHEAD = 0.05
# How one invoke is timed on the host: wall time (time.perf_counter), or the
# CPU time of the invoking thread, which leaves out time spent descheduled.
CLOCKS = ("wall", "thread")


class ProfileError(UserError, RuntimeError):
    """Profiling could not produce a trustworthy table."""


# Kept as a name: host timings are LatencyStats, min included.
HostStats = LatencyStats


# ----------------------------------------------------------------------------- models


def layer_model(layer: LayerSpec, choice: str):
    """A one-layer Keras model: MBConv ``choice`` at ``layer``'s position.

    Args:
      layer: the supernet layer (input size, channels, stride, residual).
      choice: ``k{K}_e{E}`` (a candidate, or a fixed layer's own choice).
    """
    import keras

    from spnas.models.blocks import mbconv

    kernel, expansion = parse_choice(choice)
    inp = keras.Input((layer.input_hw, layer.input_hw, layer.in_ch), batch_size=1)
    out = mbconv(inp, layer.out_ch, kernel, layer.stride, expansion, layer.residual,
                 name=f"layer{layer.index}")
    return keras.Model(inp, out, name=f"layer{layer.index}_{choice}")


def fixed_part_models(space: SearchSpace) -> dict[str, object]:
    """The parts the search never changes, as one-part Keras models.

    Keys: ``stem``, ``layer_<i>`` for every non-searchable layer, ``head``.
    """
    import keras

    from spnas.models.blocks import head, stem

    layers = space.layers()
    parts: dict[str, object] = {}
    inp = keras.Input((space.input_size, space.input_size, 3), batch_size=1)
    parts["stem"] = keras.Model(inp, stem(inp, space.stem_filters, space.stem_stride), name="stem")
    for layer in layers:
        if not layer.searchable:
            parts[f"layer_{layer.index}"] = layer_model(layer, layer.fixed_choice)
    last = layers[-1]
    hw = -(-last.input_hw // last.stride)
    inp = keras.Input((hw, hw, last.out_ch), batch_size=1)
    # Dropout is the identity at inference and vanishes in the TFLite graph.
    parts["head"] = keras.Model(
        inp, head(inp, space.head_filters, space.num_classes, space.dropout), name="head"
    )
    return parts


def overhead_probe_model():
    """A model with next to no work: its time is the fixed cost of one invoke.

    Every separately timed model of a table pays this cost once, a whole
    network only once in all; :func:`table_from_profile` can subtract it
    (``subtract_overhead``). One 1x1 convolution of 8 channels on a 1x1 input
    goes through the same runtime path (one delegated graph) as a layer.
    """
    import keras

    inp = keras.Input((1, 1, 8), batch_size=1)
    return keras.Model(inp, keras.layers.Conv2D(8, 1, name="probe")(inp), name="overhead_probe")


def calibration_choices(space: SearchSpace, n: int, seed: int = CALIBRATION_SEED) -> list[list[str]]:
    """``n`` random architectures of ``space`` (uniform per layer, as validation draws)."""
    from spnas.search.random_search import layer_options, sample_choices

    rng = np.random.default_rng(seed)
    options = layer_options(space)
    return [sample_choices(space, rng, options) for _ in range(n)]


def network_model(space: SearchSpace, choices: Sequence[str]):
    """The plain network of ``choices`` built from the same blocks as the table.

    Used to check the table's additive prediction against a whole-network
    measurement (:func:`measure_network`). Skipped layers are left out.
    """
    import keras

    from spnas.models.blocks import head, mbconv, stem
    from spnas.space import SKIP, validate_choices

    choices = validate_choices(space, choices)
    inp = keras.Input((space.input_size, space.input_size, 3), batch_size=1)
    x = stem(inp, space.stem_filters, space.stem_stride)
    for layer, choice in zip(space.layers(), choices):
        if choice == SKIP:
            continue
        k, e = parse_choice(choice)
        x = mbconv(x, layer.out_ch, k, layer.stride, e, layer.residual, name=f"layer{layer.index}")
    return keras.Model(inp, head(x, space.head_filters, space.num_classes, space.dropout))


def resolve_space(spec: str) -> SearchSpace:
    """``embedded``, ``paper`` or a JSON file of a search-space dict (or an arch.json).

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: anything else, naming what is wrong.
    """
    import json

    from spnas.space import embedded_space

    if spec == "embedded":
        return embedded_space()
    if spec == "paper":
        return SearchSpace()
    if not spec.endswith(".json"):
        raise ValueError(f"Unknown space {spec!r}; expected 'embedded', 'paper' or a .json file.")
    if not os.path.isfile(spec):
        raise FileNotFoundError(f"Search-space file {spec!r} does not exist.")
    with open(spec) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"Search-space file {spec!r} is not valid JSON: {e}.") from None
    if isinstance(data, dict) and isinstance(data.get("space"), dict):
        data = data["space"]  # an arch.json
    if not isinstance(data, dict):
        raise ValueError(f"Search-space file {spec!r} must hold a JSON object.")
    try:
        return SearchSpace.from_dict(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Search-space file {spec!r}: {e}") from None


# ----------------------------------------------------------------------------- timing


def parse_cpus(spec: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"0,2-3"`` -> ``(0, 2, 3)``; None or ``""`` -> None.

    Raises:
      ValueError: a malformed list.
    """
    if spec is None or spec == "":
        return None
    if not isinstance(spec, str):
        cpus = tuple(int(c) for c in spec)
    else:
        cpus_list: list[int] = []
        for part in spec.split(","):
            part = part.strip()
            try:
                if "-" in part:
                    lo, hi = (int(x) for x in part.split("-", 1))
                    if hi < lo:
                        raise ValueError
                    cpus_list.extend(range(lo, hi + 1))
                else:
                    cpus_list.append(int(part))
            except ValueError:
                raise ValueError(
                    f"Malformed CPU list {spec!r}; expected ids and ranges like '0' or '0,2-3'."
                ) from None
        cpus = tuple(cpus_list)
    if not cpus or any(c < 0 for c in cpus):
        raise ValueError(f"Malformed CPU list {spec!r}; expected ids >= 0.")
    return tuple(sorted(set(cpus)))


@contextlib.contextmanager
def cpu_affinity(cpus: Sequence[int] | None) -> Iterator[None]:
    """Pins the calling thread to ``cpus`` for the block (None: no change).

    Threads created inside the block (the interpreter's workers) inherit the
    mask; the previous mask is restored afterwards.

    Raises:
      ValueError: CPUs this process may not use, or no affinity support.
    """
    if not cpus:
        yield
        return
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError("CPU affinity needs os.sched_setaffinity (Linux); drop --affinity.")
    allowed = os.sched_getaffinity(0)
    bad = sorted(set(cpus) - allowed)
    if bad:
        raise ValueError(f"CPUs {bad} are not available to this process (allowed: {sorted(allowed)}).")
    os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def check_clock(clock: str, threads: int) -> None:
    """Raises ValueError for an unknown clock, or ``thread`` with several threads."""
    if clock not in CLOCKS:
        raise ValueError(f"Unknown clock {clock!r}; expected one of {CLOCKS}.")
    if clock == "thread" and threads != 1:
        raise ValueError(
            f"clock='thread' times only the calling thread; it needs threads=1, got {threads}."
        )


def _thread_time_invokes(interp, count: int) -> list[float]:
    out = []
    for _ in range(count):
        start = time.thread_time_ns()
        interp.invoke()
        out.append((time.thread_time_ns() - start) * 1e-6)
    return out


def _split_repeats(repeats: int, chunk: int = CHUNK) -> list[int]:
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
    """
    check_clock(clock, threads)
    timer = time_invokes if clock == "wall" else _thread_time_invokes
    interps = [prepare_for_timing(fb, threads=threads) for fb in flatbuffers]
    for interp in interps:
        timer(interp, warmup)
    samples: list[list[float]] = [[] for _ in interps]
    for r, count in enumerate(_split_repeats(repeats, chunk)):
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
    from spnas.export.litert import measure_latency

    fb = convert_float(network_model(space, choices), method=CONVERSION)
    return measure_latency(fb, threads=threads, warmup=warmup, repeats=repeats)


# ----------------------------------------------------------------------------- table


def host_description() -> str:
    """This host's CPU model and OS, e.g. ``AMD EPYC (Linux x86_64)``."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu} ({platform.system()} {platform.machine()})"


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__


@dataclasses.dataclass(frozen=True)
class Profile:
    """Raw timings of a profiling run (before choosing a statistic).

    Attributes:
      space: the profiled search space.
      layers: per searchable layer index, per candidate, the timing stats
        (:class:`LatencyStats` on the host, :class:`~spnas.latency.adb.BenchmarkStats`
        on a device).
      parts: the fixed parts (``stem``, ``layer_<i>``, ``head``) and their stats.
      delegate: whether LiteRT's default delegate (XNNPACK) ran the models
        (None: not known, e.g. on a device).
      threads, warmup, repeats: the measurement settings.
      seconds: wall time of the whole run (conversion included).
      load_average: the host's 1-minute load average before and after.
      target: ``{"target": "host"}`` or the device's description
        (:meth:`~spnas.latency.adb.AdbTarget.describe`).
      clock: how host invokes were timed (see :data:`CLOCKS`).
      affinity: the host CPUs the timing ran on (None: not pinned).
      overhead: stats of :func:`overhead_probe_model`, timed with the rest.
      calibration: ``(choices, stats)`` of whole random networks timed with
        the rest (see :func:`table_from_profile`).
      calibration_seed: the seed they were drawn with.
    """

    space: SearchSpace
    layers: dict[int, dict[str, object]]
    parts: dict[str, object]
    delegate: bool | None
    threads: int
    warmup: int
    repeats: int
    seconds: float
    load_average: tuple[float | None, float | None] = (None, None)
    target: dict = dataclasses.field(default_factory=lambda: {"target": "host"})
    clock: str = "wall"
    affinity: tuple[int, ...] | None = None
    overhead: object | None = None
    calibration: list = dataclasses.field(default_factory=list)
    calibration_seed: int | None = None

    @property
    def on_device(self) -> bool:
        return self.target.get("target") == "adb"


def check_statistic(statistic: str, on_device: bool) -> None:
    """Raises ValueError unless ``statistic`` is one the host (or a device) reports."""
    from spnas.latency.adb import ADB_STATISTICS

    allowed = ADB_STATISTICS if on_device else STATISTICS
    if statistic not in allowed:
        where = "benchmark_model on a device" if on_device else "the host profiler"
        raise ValueError(f"Unknown statistic {statistic!r} for {where}; expected one of {allowed}.")


def profile_space(
    space: SearchSpace,
    *,
    threads: int = 1,
    warmup: int = 20,
    repeats: int = 100,
    progress: bool = True,
    max_spread: float | None = None,
    target=None,
    affinity: Sequence[int] | None = None,
    clock: str = "wall",
    calibrate: int = 0,
    calibration_seed: int = CALIBRATION_SEED,
) -> Profile:
    """Converts and times every candidate of every searchable layer and the fixed parts.

    All models are converted first, then timed together by
    :func:`time_interleaved` (or by ``target.measure`` on a device), so each
    entry's samples are spread over the whole timing window and a change of
    load scales all entries alike. See :func:`profile_table` for the arguments.
    """
    from tqdm import tqdm

    if threads < 1 or repeats < 1 or warmup < 0:
        raise ValueError(
            f"Need threads >= 1, repeats >= 1 and warmup >= 0; got {threads}, {repeats}, {warmup}."
        )
    if max_spread is not None and max_spread <= 0:
        raise ValueError(f"max_spread must be positive, got {max_spread}.")
    if calibrate < 0:
        raise ValueError(f"calibrate must be >= 0, got {calibrate}.")
    if target is None:
        check_clock(clock, threads)
    affinity = tuple(affinity) if affinity else None
    start = time.perf_counter()
    load_before = _load_average()
    if target is not None:
        target.connect()  # a missing device fails now, not after converting
    searchable = [layer for layer in space.layers() if layer.searchable]
    builders = [(("part", name), model) for name, model in fixed_part_models(space).items()]
    labels = [label for label, _ in builders]
    labels += [(layer.index, c) for layer in searchable for c in CANDIDATES]
    labels.append(("probe", "overhead"))
    fbs = []
    with tqdm(total=len(labels), disable=not progress, desc="converting", unit="model") as bar:
        for _label, model in builders:
            fbs.append(convert_float(model, method=CONVERSION))
            bar.update(1)
        by_index = {layer.index: layer for layer in searchable}
        for index, choice in labels[len(builders):-1]:
            fbs.append(convert_float(layer_model(by_index[index], choice), method=CONVERSION))
            bar.update(1)
        fbs.append(convert_float(overhead_probe_model(), method=CONVERSION))
        bar.update(1)
    calibration_archs = calibration_choices(space, calibrate, calibration_seed)
    with tqdm(total=calibrate, disable=not progress or not calibrate, desc="converting nets",
              unit="net") as bar:
        for choices in calibration_archs:
            fbs.append(convert_float(network_model(space, choices), method=CONVERSION))
            bar.update(1)

    def measure(models, bar=None):
        if target is not None:
            return target.measure(models, threads=threads, warmup=warmup, repeats=repeats,
                                  progress=bar)
        with cpu_affinity(affinity):
            return time_interleaved(models, threads, warmup, repeats, progress=bar, clock=clock)

    rounds = target.rounds if target is not None else len(_split_repeats(repeats))
    with tqdm(total=rounds, disable=not progress, desc="timing", unit="round") as bar:
        stats = measure(fbs, bar)
    # The probe's spread is no reason to fail: its few microseconds are all noise.
    checked = len(labels) - 1  # neither the probe nor the calibration networks
    for _ in range(MAX_RETRIES if max_spread is not None else 0):
        noisy = [i for i, s in enumerate(stats[:checked]) if s.spread > max_spread]
        if not noisy:
            break
        again = measure([fbs[i] for i in noisy])
        for i, s in zip(noisy, again):
            stats[i] = s if s.spread < stats[i].spread else stats[i]
    if max_spread is not None:
        spread_name = "std/avg" if target is not None else "(p90-p10)/median"
        for label, s in zip(labels[:checked], stats[:checked]):
            if s.spread > max_spread:
                where = f"fixed part {label[1]}" if label[0] == "part" else \
                    f"layer {label[0]} {label[1]}"
                raise ProfileError(
                    f"{where}: spread {spread_name} is {s.spread:.2f} after "
                    f"{MAX_RETRIES + 1} measurements, above max_spread={max_spread}. The "
                    f"{'device' if target is not None else 'host'} is too busy for a stable "
                    "table; profile on an idle machine or raise --repeats."
                )
    layers: dict[int, dict[str, object]] = {layer.index: {} for layer in searchable}
    parts: dict[str, object] = {}
    for (key, name), s in zip(labels[:checked], stats[:checked]):
        if key == "part":
            parts[name] = s
        else:
            layers[key][name] = s
    return Profile(
        space=space,
        layers=layers,
        parts=parts,
        delegate=delegated(fbs[0], threads) if target is None else None,
        threads=threads,
        warmup=warmup,
        repeats=repeats,
        seconds=time.perf_counter() - start,
        load_average=(load_before, _load_average()),
        target=target.describe() if target is not None else {"target": "host"},
        clock=clock if target is None else "device",
        affinity=affinity,
        overhead=stats[checked],
        calibration=list(zip(calibration_archs, stats[checked + 1:])),
        calibration_seed=calibration_seed,
    )


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def statistic_value(stats, statistic: str) -> float:
    """``stats.<statistic>_ms``: one of a LatencyStats' or a BenchmarkStats' values."""
    return float(getattr(stats, f"{statistic}_ms"))


def _spread(stats) -> float | None:
    # benchmark_model's summary-only output has no spread; JSON has no NaN.
    return round(float(stats.spread), 4) if math.isfinite(stats.spread) else None


def statistic_of(table: LatencyTable) -> str | None:
    """The statistic a profiled table holds (``median``, ``p10``, ``avg``, ``min``), if recorded."""
    text = table.extra.get("statistic")
    if not isinstance(text, str) or not text.split():
        return None
    return text.split()[0]


def _calibration(profile: Profile, entries, constant_parts, statistic: str) -> dict:
    from spnas.space import SKIP

    ratios = []
    constant = sum(constant_parts.values())
    for choices, stats in profile.calibration:
        predicted = constant + sum(entries[layer.index][c] for layer, c in
                                   zip(profile.space.layers(), choices)
                                   if layer.searchable and c != SKIP)
        ratios.append(statistic_value(stats, statistic) / predicted)
    return {
        "scale": float(np.median(ratios)),
        "n": len(ratios),
        "seed": profile.calibration_seed,
        "ratios": [round(float(r), 5) for r in ratios],
        "ratio_sd_pct": float(np.std(ratios) / np.mean(ratios) * 100),
        "archs": [list(c) for c, _ in profile.calibration],
        "method": "median of measured / predicted over whole random networks timed with the "
                  "layers; all entries and the constant multiplied by it",
    }


def table_from_profile(
    profile: Profile,
    statistic: str = "median",
    device: str = "this host",
    subtract_overhead: bool = False,
) -> LatencyTable:
    """The latency table of a profiling run.

    Args:
      profile: the raw timings.
      statistic: ``median``, ``p10`` or ``min`` of the timed invokes on the
        host (see :data:`STATISTICS`); ``avg`` or ``min`` of benchmark_model's
        timed runs on a device.
      device: the device name recorded in the table.
      subtract_overhead: take the fixed cost of one invoke (the
        :func:`overhead_probe_model`'s time, same statistic) off every entry
        and fixed part but the stem, which keeps it for the whole network: a
        network pays it once, the sum of separately timed models once per
        model. Without it the table over-predicts by ~(models - 1) x overhead
        (about 2.4 us per model on the 2-core host: +7 to +13 % on the
        0.3 ms embedded networks). An entry is kept at no less than
        :data:`MIN_AFTER_OVERHEAD` of its raw value.

    When the profile timed calibration networks (``calibrate`` of
    :func:`profile_table`), every entry and the constant are then multiplied
    by the median of measured / predicted over those networks. A model timed
    alone in a loop keeps its weights in the caches; inside a network they
    were evicted by the other layers, so at 224x224 on the 2-core host whole
    networks ran ~14 % slower than the sum of their layers (the ratio varied
    by only ~1 % between networks). One scale leaves the search unchanged (its
    loss uses ln R) and makes absolute predictions right; the scale, the
    ratios and the networks are recorded in ``extra["calibration"]``.
    """
    check_statistic(statistic, profile.on_device)
    space = profile.space
    overhead = statistic_value(profile.overhead, statistic) if profile.overhead else None
    if subtract_overhead and overhead is None:
        raise ValueError("This profile has no overhead probe to subtract.")

    def net(value: float) -> float:
        if not subtract_overhead:
            return value
        return max(value - overhead, MIN_AFTER_OVERHEAD * value)

    entries = {i: {c: net(statistic_value(s, statistic)) for c, s in row.items()}
               for i, row in profile.layers.items()}
    spread = {str(i): {c: _spread(s) for c, s in row.items()}
              for i, row in profile.layers.items()}
    spread["constant"] = {n: _spread(s) for n, s in profile.parts.items()}
    shapes = {
        str(layer.index): {"in": layer.in_ch, "out": layer.out_ch, "stride": layer.stride,
                           "hw": layer.input_hw}
        for layer in space.layers() if layer.searchable
    }
    constant_parts = {n: statistic_value(s, statistic) if n == "stem" else
                      net(statistic_value(s, statistic)) for n, s in profile.parts.items()}
    calibration = None
    if profile.calibration:
        calibration = _calibration(profile, entries, constant_parts, statistic)
        scale = calibration["scale"]
        entries = {i: {c: v * scale for c, v in row.items()} for i, row in entries.items()}
        constant_parts = {n: v * scale for n, v in constant_parts.items()}
    all_spreads = [v for row in spread.values() for v in row.values() if v is not None]
    if profile.on_device:
        runtime, version = "TFLite benchmark_model", "unknown (user-supplied binary)"
        source = "spnas-latency profile --target=adb (one-layer float TFLite models, " \
                 "benchmark_model on the device)"
        stat_text = f"{statistic} of benchmark_model timed runs (us, converted to ms), batch 1"
        delegate = "benchmark_model defaults" + (
            f" with {' '.join(profile.target.get('benchmark_args') or [])}"
            if profile.target.get("benchmark_args") else "")
        host = profile.target
    else:
        runtime, version = "LiteRT", litert_version()
        source = "spnas-latency profile (one-layer float TFLite models timed with LiteRT)"
        clock_text = ("wall time (time.perf_counter)" if profile.clock == "wall"
                      else "thread CPU time (time.thread_time_ns)")
        stat_text = f"{statistic} of invoke() {clock_text}, batch 1"
        delegate = "XNNPACK (LiteRT default)" if profile.delegate else "none (built-in kernels)"
        host = host_description()
    extra = {
        "target": profile.target.get("target", "host"),
        "threads": profile.threads,
        "warmup": profile.warmup,
        "repeats": profile.repeats,
        "rounds": profile.target.get("rounds") if profile.on_device
        else len(_split_repeats(profile.repeats)),
        "statistic": stat_text,
        "clock": profile.clock,
        "affinity": list(profile.affinity) if profile.affinity else None,
        "delegate": delegate,
        "converter": f"TensorFlow {_tf_version()} TFLiteConverter, float32",
        "host": host,
        "profile_seconds": round(profile.seconds, 1),
        "load_average": list(profile.load_average),
        "constant_parts_ms": constant_parts,
        "invoke_overhead_ms": overhead,
        "overhead_subtracted": bool(subtract_overhead),
        "calibration": calibration,
        "layer_shapes": shapes,
        "spread": spread,
        "max_spread": float(np.max(all_spreads)) if all_spreads else None,
        "space": space.to_dict(),
    }
    return LatencyTable(
        device=device,
        input_size=space.input_size,
        constant_ms=float(sum(constant_parts.values())),
        layers=entries,
        runtime=runtime,
        runtime_version=version,
        date=datetime.date.today().isoformat(),
        source=source,
        extra=extra,
    )


def profile_table(
    space: SearchSpace,
    *,
    threads: int = 1,
    warmup: int = 20,
    repeats: int = 100,
    device: str = "this host",
    progress: bool = True,
    max_spread: float | None = None,
    statistic: str = "median",
    target=None,
    affinity: Sequence[int] | None = None,
    clock: str = "wall",
    subtract_overhead: bool = False,
    calibrate: int = 0,
) -> LatencyTable:
    """Profiles every candidate of every searchable layer of ``space``.

    Args:
      space: the search space.
      threads: interpreter threads (``--num_threads`` on a device).
      warmup: untimed invokes per model.
      repeats: timed invokes per model.
      device: the device name recorded in the table.
      progress: show a tqdm progress bar (one step per converted model).
      max_spread: if given, a model whose spread (host: (p90-p10)/median,
        device: std/avg) exceeds it is re-measured (up to ``MAX_RETRIES``
        times), then profiling fails.
      statistic: the table value per model; host: ``median`` (as the
        paper), ``p10`` or ``min`` (robust on a shared, loaded host; see
        :data:`STATISTICS`); device: ``avg`` or ``min``.
      target: None for this host, or an :class:`spnas.latency.adb.AdbTarget`.
      affinity: host CPUs to pin the timing to (see :func:`cpu_affinity`).
      clock: host timing clock, ``wall`` or ``thread`` (see :data:`CLOCKS`).
      subtract_overhead: take the per-invoke overhead off the entries (see
        :func:`table_from_profile`).
      calibrate: time this many whole random networks with the layers and
        scale the table to them (see :func:`table_from_profile`); 0: no.

    Returns:
      A :class:`LatencyTable` in ms; the per-entry spread, layer shapes, the
      constant's parts and the settings are in ``extra``. Nothing is written:
      save it with :func:`spnas.tables.table.save_table` (atomic), so an
      interrupted run leaves no partial table.

    Raises:
      ValueError: bad counts, statistic, clock or CPUs.
      ProfileError: a layer stays noisier than ``max_spread``.
      spnas.latency.adb.AdbError: the device cannot be reached or timed.
    """
    check_statistic(statistic, target is not None)
    profile = profile_space(space, threads=threads, warmup=warmup, repeats=repeats,
                            progress=progress, max_spread=max_spread, target=target,
                            affinity=affinity, clock=clock, calibrate=calibrate)
    return table_from_profile(profile, statistic=statistic, device=device,
                              subtract_overhead=subtract_overhead)
