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
  TFLite model and timed with the LiteRT interpreter (median of ``repeats``
  ``invoke()`` calls after ``warmup``);
* the constant is the sum of the medians of the fixed parts, each timed as its
  own TFLite model the same way: the stem (conv 3x3 + BN + ReLU), every
  non-searchable MBConv layer (the paper's fixed first and last layers), and
  the head (conv 1x1 + BN + ReLU + pool + FC to ``space.num_classes``). Timing
  them separately, like the searchable layers, keeps the table additive: the
  prediction of a network is one sum of per-model medians.

The four candidates of a layer (and the fixed parts among themselves) are timed
interleaved: the repeats are split into rounds and every round visits every
model once, so a burst of load from another process hits all candidates of a
layer alike instead of biasing one of them.
"""

from __future__ import annotations

import datetime
import platform
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

ROUNDS = 5  # interleaved rounds the repeats are split into
MAX_RETRIES = 2  # extra measurements of a group whose spread exceeds max_spread


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


# ----------------------------------------------------------------------------- timing


def _split_repeats(repeats: int, rounds: int) -> list[int]:
    rounds = max(1, min(rounds, repeats))
    base, extra = divmod(repeats, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def time_group(
    flatbuffers: Sequence[bytes],
    threads: int = 1,
    warmup: int = 20,
    repeats: int = 100,
    rounds: int = ROUNDS,
) -> list[LatencyStats]:
    """Times several models interleaved; one :class:`LatencyStats` per model.

    Every model is warmed up, then ``repeats`` invokes per model are split into
    ``rounds`` rounds; each round times every model in turn (the order rotates
    between rounds).
    """
    interps = [prepare_for_timing(fb, threads=threads) for fb in flatbuffers]
    for interp in interps:
        time_invokes(interp, warmup)
    samples: list[list[float]] = [[] for _ in interps]
    for r, count in enumerate(_split_repeats(repeats, rounds)):
        for j in range(len(interps)):
            i = (j + r) % len(interps)
            samples[i].extend(time_invokes(interps[i], count))
    return [LatencyStats.from_samples(s, threads) for s in samples]


def _time_checked(flatbuffers, names, where, threads, warmup, repeats, max_spread):
    """:func:`time_group`, re-measured while a member is noisier than ``max_spread``."""
    best = time_group(flatbuffers, threads, warmup, repeats)
    if max_spread is None:
        return best
    for _ in range(MAX_RETRIES):
        if all(s.spread <= max_spread for s in best):
            return best
        again = time_group(flatbuffers, threads, warmup, repeats)
        best = [a if a.spread < b.spread else b for a, b in zip(again, best)]
    noisy = [(n, s.spread) for n, s in zip(names, best) if s.spread > max_spread]
    if noisy:
        name, spread = noisy[0]
        raise ProfileError(
            f"{where}, {name}: spread (p90-p10)/median is {spread:.2f} after "
            f"{MAX_RETRIES + 1} measurements, above max_spread={max_spread}. The host is "
            "too busy for a stable table; profile on an idle machine or raise --repeats."
        )
    return best


def measure_network(
    space: SearchSpace,
    choices: Sequence[str],
    threads: int = 1,
    warmup: int = 20,
    repeats: int = 100,
) -> LatencyStats:
    """Whole-network TFLite latency of an architecture (to check a table)."""
    from spnas.export.litert import measure_latency

    return measure_latency(convert_float(network_model(space, choices)), threads=threads,
                           warmup=warmup, repeats=repeats)


# ----------------------------------------------------------------------------- table


def _host_description() -> str:
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


def profile_table(
    space: SearchSpace,
    *,
    threads: int = 1,
    warmup: int = 20,
    repeats: int = 100,
    device: str = "this host",
    progress: bool = True,
    max_spread: float | None = None,
) -> LatencyTable:
    """Profiles every candidate of every searchable layer of ``space``.

    Args:
      space: the search space.
      threads: LiteRT interpreter threads.
      warmup: untimed invokes per model.
      repeats: timed invokes per model (the table holds their median).
      device: the device name recorded in the table.
      progress: show a tqdm progress bar (one step per timed model).
      max_spread: if given, a layer whose candidates' (p90-p10)/median exceeds
        it is re-measured (up to ``MAX_RETRIES`` times), then profiling fails.

    Returns:
      A :class:`LatencyTable` in ms. Nothing is written: save it with
      :func:`spnas.latency.table.save_table` (atomic), so an interrupted run
      leaves no partial table.

    Raises:
      ValueError: bad counts.
      ProfileError: a layer stays noisier than ``max_spread``.
    """
    from tqdm import tqdm

    if threads < 1 or repeats < 1 or warmup < 0:
        raise ValueError(
            f"Need threads >= 1, repeats >= 1 and warmup >= 0; got {threads}, {repeats}, {warmup}."
        )
    if max_spread is not None and max_spread <= 0:
        raise ValueError(f"max_spread must be positive, got {max_spread}.")
    searchable = [layer for layer in space.layers() if layer.searchable]
    parts = fixed_part_models(space)
    entries: dict[int, dict[str, float]] = {}
    spread: dict[str, dict[str, float]] = {}
    shapes: dict[str, dict[str, int]] = {}
    uses_delegate = False
    with tqdm(total=len(searchable) * len(CANDIDATES) + len(parts), disable=not progress,
              desc="profiling", unit="model") as bar:
        part_names = list(parts)
        part_fbs = []
        for name in part_names:
            part_fbs.append(convert_float(parts[name]))
            bar.update(1)
        uses_delegate = delegated(part_fbs[0], threads)
        part_stats = _time_checked(part_fbs, part_names, "fixed parts", threads, warmup,
                                   repeats, max_spread)
        for layer in searchable:
            fbs = []
            for choice in CANDIDATES:
                fbs.append(convert_float(layer_model(layer, choice)))
                bar.update(1)
            stats = _time_checked(fbs, CANDIDATES, f"layer {layer.index}", threads, warmup,
                                  repeats, max_spread)
            entries[layer.index] = {c: s.median_ms for c, s in zip(CANDIDATES, stats)}
            spread[str(layer.index)] = {c: round(s.spread, 4) for c, s in zip(CANDIDATES, stats)}
            shapes[str(layer.index)] = {"in": layer.in_ch, "out": layer.out_ch,
                                        "stride": layer.stride, "hw": layer.input_hw}
            bar.set_postfix(layer=layer.index)
    constant_parts = {n: s.median_ms for n, s in zip(part_names, part_stats)}
    spread["constant"] = {n: round(s.spread, 4) for n, s in zip(part_names, part_stats)}
    all_spreads = [v for row in spread.values() for v in row.values()]
    return LatencyTable(
        device=device,
        input_size=space.input_size,
        constant_ms=float(sum(constant_parts.values())),
        layers=entries,
        runtime="LiteRT",
        runtime_version=litert_version(),
        date=datetime.date.today().isoformat(),
        source="spnas-latency profile (one-layer float TFLite models, median invoke time)",
        extra={
            "threads": threads,
            "warmup": warmup,
            "repeats": repeats,
            "rounds": min(ROUNDS, repeats),
            "statistic": "median of invoke() wall time (time.perf_counter)",
            "delegate": "XNNPACK (LiteRT default)" if uses_delegate else "none (built-in kernels)",
            "converter": f"TensorFlow {_tf_version()} TFLiteConverter.from_keras_model, float32",
            "host": _host_description(),
            "constant_parts_ms": constant_parts,
            "layer_shapes": shapes,
            "spread": spread,
            "max_spread_seen": float(np.max(all_spreads)),
            "space": space.to_dict(),
        },
    )

