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
  ``invoke()`` calls after ``warmup``; the table holds their median, or their
  10th percentile with ``statistic="p10"``);
* the constant is the sum of the same statistic over the fixed parts, each
  timed as its own TFLite model the same way: the stem (conv 3x3 + BN + ReLU),
  every non-searchable MBConv layer (the paper's fixed first and last layers),
  and the head (conv 1x1 + BN + ReLU + pool + FC to ``space.num_classes``).
  Timing them separately, like the searchable layers, keeps the table additive:
  the prediction of a network is one sum of per-model times. (Each model pays
  one ``invoke()`` overhead, about 1.4 us here; on the embedded space the sum
  still matched whole-network p10 times within 2.6 % RMSE.)

All models are converted first and then timed *interleaved*: the repeats are
split into rounds of :data:`CHUNK` invokes and each round visits every model, so
load from other processes during the run is shared by all entries instead of
biasing some of them. The settings, per-entry spread ``(p90-p10)/median``, the
constant's parts, the layer shapes (checked by
:meth:`LatencyTable.validate_for`) and the host's load average are recorded in
the table's ``extra`` fields.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import time
from collections.abc import Sequence

import numpy as np

from spnas.export.litert import (
    LatencyStats,
    delegated,
    litert_version,
    prepare_for_timing,
    time_invokes,
)
from spnas.export.tflite import convert_float
from spnas.latency.table import LatencyTable
from spnas.search.space import CANDIDATES, LayerSpec, SearchSpace, parse_choice

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
# p10. ``p10`` approximates what an idle machine's median would be.
STATISTICS = ("median", "p10")


class ProfileError(RuntimeError):
    """Profiling could not produce a trustworthy table."""


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


def network_model(space: SearchSpace, choices: Sequence[str]):
    """The plain network of ``choices`` built from the same blocks as the table.

    Used to check the table's additive prediction against a whole-network
    measurement (:func:`measure_network`). Skipped layers are left out.
    """
    import keras

    from spnas.models.blocks import head, mbconv, stem
    from spnas.search.space import SKIP, validate_choices

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

    from spnas.search.space import embedded_space

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
) -> list[LatencyStats]:
    """Times several models interleaved; one :class:`LatencyStats` per model.

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
    """
    interps = [prepare_for_timing(fb, threads=threads) for fb in flatbuffers]
    for interp in interps:
        time_invokes(interp, warmup)
    samples: list[list[float]] = [[] for _ in interps]
    for r, count in enumerate(_split_repeats(repeats, chunk)):
        for j in range(len(interps)):
            i = (j + r) % len(interps)
            time_invokes(interps[i], CHUNK_WARMUP)
            samples[i].extend(time_invokes(interps[i], count))
        if progress is not None:
            progress.update(1)
    return [LatencyStats.from_samples(s, threads) for s in samples]


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
      layers: per searchable layer index, per candidate, the timing stats.
      parts: the fixed parts (``stem``, ``layer_<i>``, ``head``) and their stats.
      delegate: whether LiteRT's default delegate (XNNPACK) ran the models.
      threads, warmup, repeats: the measurement settings.
      seconds: wall time of the whole run (conversion included).
      load_average: the host's 1-minute load average before and after.
    """

    space: SearchSpace
    layers: dict[int, dict[str, LatencyStats]]
    parts: dict[str, LatencyStats]
    delegate: bool
    threads: int
    warmup: int
    repeats: int
    seconds: float
    load_average: tuple[float | None, float | None] = (None, None)


def profile_space(
    space: SearchSpace,
    *,
    threads: int = 1,
    warmup: int = 20,
    repeats: int = 100,
    progress: bool = True,
    max_spread: float | None = None,
) -> Profile:
    """Converts and times every candidate of every searchable layer and the fixed parts.

    All models are converted first, then timed together by
    :func:`time_interleaved`, so each entry's samples are spread over the whole
    timing window and a change of load on the host scales all entries alike.
    See :func:`profile_table` for the arguments.
    """
    from tqdm import tqdm

    if threads < 1 or repeats < 1 or warmup < 0:
        raise ValueError(
            f"Need threads >= 1, repeats >= 1 and warmup >= 0; got {threads}, {repeats}, {warmup}."
        )
    if max_spread is not None and max_spread <= 0:
        raise ValueError(f"max_spread must be positive, got {max_spread}.")
    start = time.perf_counter()
    load_before = _load_average()
    searchable = [layer for layer in space.layers() if layer.searchable]
    builders = [(("part", name), model) for name, model in fixed_part_models(space).items()]
    labels = [label for label, _ in builders]
    labels += [(layer.index, c) for layer in searchable for c in CANDIDATES]
    fbs = []
    with tqdm(total=len(labels), disable=not progress, desc="converting", unit="model") as bar:
        for _label, model in builders:
            fbs.append(convert_float(model, method=CONVERSION))
            bar.update(1)
        by_index = {layer.index: layer for layer in searchable}
        for index, choice in labels[len(builders):]:
            fbs.append(convert_float(layer_model(by_index[index], choice), method=CONVERSION))
            bar.update(1)
    rounds = len(_split_repeats(repeats))
    with tqdm(total=rounds, disable=not progress, desc="timing", unit="round") as bar:
        stats = time_interleaved(fbs, threads, warmup, repeats, progress=bar)
    for _ in range(MAX_RETRIES if max_spread is not None else 0):
        noisy = [i for i, s in enumerate(stats) if s.spread > max_spread]
        if not noisy:
            break
        again = time_interleaved([fbs[i] for i in noisy], threads, warmup, repeats)
        for i, s in zip(noisy, again):
            stats[i] = s if s.spread < stats[i].spread else stats[i]
    if max_spread is not None:
        for label, s in zip(labels, stats):
            if s.spread > max_spread:
                where = f"fixed part {label[1]}" if label[0] == "part" else \
                    f"layer {label[0]} {label[1]}"
                raise ProfileError(
                    f"{where}: spread (p90-p10)/median is {s.spread:.2f} after "
                    f"{MAX_RETRIES + 1} measurements, above max_spread={max_spread}. The host is "
                    "too busy for a stable table; profile on an idle machine or raise --repeats."
                )
    layers: dict[int, dict[str, LatencyStats]] = {layer.index: {} for layer in searchable}
    parts: dict[str, LatencyStats] = {}
    for (key, name), s in zip(labels, stats):
        if key == "part":
            parts[name] = s
        else:
            layers[key][name] = s
    return Profile(
        space=space,
        layers=layers,
        parts=parts,
        delegate=delegated(fbs[0], threads),
        threads=threads,
        warmup=warmup,
        repeats=repeats,
        seconds=time.perf_counter() - start,
        load_average=(load_before, _load_average()),
    )


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _value(stats: LatencyStats, statistic: str) -> float:
    return stats.median_ms if statistic == "median" else stats.p10_ms


def table_from_profile(
    profile: Profile, statistic: str = "median", device: str = "this host"
) -> LatencyTable:
    """The latency table of a profiling run.

    Args:
      profile: the raw timings.
      statistic: ``median`` or ``p10`` of the timed invokes (see
        :data:`STATISTICS`).
      device: the device name recorded in the table.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"Unknown statistic {statistic!r}; expected one of {STATISTICS}.")
    space = profile.space
    entries = {i: {c: _value(s, statistic) for c, s in row.items()}
               for i, row in profile.layers.items()}
    spread = {str(i): {c: round(s.spread, 4) for c, s in row.items()}
              for i, row in profile.layers.items()}
    spread["constant"] = {n: round(s.spread, 4) for n, s in profile.parts.items()}
    shapes = {
        str(layer.index): {"in": layer.in_ch, "out": layer.out_ch, "stride": layer.stride,
                           "hw": layer.input_hw}
        for layer in space.layers() if layer.searchable
    }
    constant_parts = {n: _value(s, statistic) for n, s in profile.parts.items()}
    all_spreads = [v for row in spread.values() for v in row.values()]
    return LatencyTable(
        device=device,
        input_size=space.input_size,
        constant_ms=float(sum(constant_parts.values())),
        layers=entries,
        runtime="LiteRT",
        runtime_version=litert_version(),
        date=datetime.date.today().isoformat(),
        source="spnas-latency profile (one-layer float TFLite models timed with LiteRT)",
        extra={
            "threads": profile.threads,
            "warmup": profile.warmup,
            "repeats": profile.repeats,
            "rounds": len(_split_repeats(profile.repeats)),
            "statistic": f"{statistic} of invoke() wall time (time.perf_counter), batch 1",
            "delegate": "XNNPACK (LiteRT default)" if profile.delegate
            else "none (built-in kernels)",
            "converter": f"TensorFlow {_tf_version()} TFLiteConverter, float32",
            "host": host_description(),
            "profile_seconds": round(profile.seconds, 1),
            "load_average": list(profile.load_average),
            "constant_parts_ms": constant_parts,
            "layer_shapes": shapes,
            "spread": spread,
            "max_spread": float(np.max(all_spreads)),
            "space": space.to_dict(),
        },
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
) -> LatencyTable:
    """Profiles every candidate of every searchable layer of ``space``.

    Args:
      space: the search space.
      threads: LiteRT interpreter threads.
      warmup: untimed invokes per model.
      repeats: timed invokes per model.
      device: the device name recorded in the table.
      progress: show a tqdm progress bar (one step per converted model).
      max_spread: if given, a group whose (p90-p10)/median exceeds it is
        re-measured (up to ``MAX_RETRIES`` times), then profiling fails.
      statistic: the table value per model, ``median`` (as the paper) or
        ``p10`` (robust on a shared, loaded host; see :data:`STATISTICS`).

    Returns:
      A :class:`LatencyTable` in ms; the per-entry spread, layer shapes, the
      constant's parts and the settings are in ``extra``. Nothing is written:
      save it with :func:`spnas.latency.table.save_table` (atomic), so an
      interrupted run leaves no partial table.

    Raises:
      ValueError: bad counts or statistic.
      ProfileError: a layer stays noisier than ``max_spread``.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"Unknown statistic {statistic!r}; expected one of {STATISTICS}.")
    profile = profile_space(space, threads=threads, warmup=warmup, repeats=repeats,
                            progress=progress, max_spread=max_spread)
    return table_from_profile(profile, statistic=statistic, device=device)
