"""On-host latency-table profiling with TFLite and the LiteRT interpreter (or ONNX Runtime).

The paper's runtime model (Stamoulis et al., 2019, Sec. 3.4, Eq. 10-12) needs,
for every searchable layer, the runtime of the four candidates k3e3, k3e6,
k5e3, k5e6 *at that layer's position* (input size, channels, stride), measured
on the target device, plus a constant for the parts the search never changes.
The authors profiled these on a Pixel 1 with TFLite; we do the same on the host
CPU:

* each candidate of each searchable layer becomes a one-layer Keras model
  (:func:`spnas.latency.probe.layer_model`), converted to a float TFLite model
  (``precision="int8"``: full-integer TFLite; ``runtime="onnxruntime"``: a
  float ONNX model timed with ONNX Runtime; :mod:`spnas.latency.runtimes`)
  and timed with the LiteRT interpreter (``repeats`` timed ``invoke()`` calls
  after ``warmup``; the table holds their median, their 10th percentile
  (``statistic="p10"``) or their minimum (``"min"``));
* the constant is the sum of the same statistic over the fixed parts, each
  timed as its own TFLite model the same way: the stem, every non-searchable
  MBConv layer (the paper's fixed first and last layers), and the head.
  Timing them separately, like the searchable layers, keeps the table additive:
  the prediction of a network is one sum of per-model times. Each model pays
  the fixed cost of one ``invoke()``, a network pays it once:
  ``subtract_overhead`` times a probe model that does next to no work and
  takes its time off every entry but the stem, and ``calibrate`` times whole
  random networks with the layers and scales the table to them (see
  :func:`spnas.latency.build.table_from_profile`).

All models are converted first and then timed interleaved
(:func:`spnas.latency.timing.time_interleaved`), so load from other processes
during the run is shared by all entries. With ``target`` (an
:class:`spnas.latency.adb.AdbTarget`) the same models are timed on an Android
device by ``benchmark_model`` instead.

The modules of the stage: :mod:`~spnas.latency.probe` (the models),
:mod:`~spnas.latency.timing` (host timing), :mod:`~spnas.latency.build` (the
table from the timings) and this one (the profiling run).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from tqdm import tqdm

from spnas.errors import UserError
from spnas.export.litert import delegated
from spnas.latency.build import Profile, host_description, statistic_of, table_from_profile
from spnas.latency.probe import (
    CALIBRATION_SEED,
    calibration_choices,
    fixed_part_models,
    layer_model,
    network_model,
    overhead_probe_model,
)
from spnas.latency.runtimes import FLOAT_LITERT, Deployment, convert_for
from spnas.latency.timing import (
    TimingError,
    check_clock,
    check_statistic,
    load_average,
    measure,
    rounds_of,
)
from spnas.space import SearchSpace
from spnas.tables.cost import needed_keys
from spnas.tables.table import LatencyTable, save_table

# Names the earlier single module held, for its callers.
__all__ = ["MAX_RETRIES", "Profile", "ProfileError", "profile_space", "profile_table",
           "profile_to_file", "statistic_of", "table_from_profile"]

MAX_RETRIES = 2  # extra measurements of models whose spread exceeds max_spread


class ProfileError(UserError, RuntimeError):
    """Profiling could not produce a trustworthy table."""


def _check_settings(threads, warmup, repeats, max_spread, calibrate, target, clock) -> None:
    if threads < 1 or repeats < 1 or warmup < 0:
        raise TimingError(
            f"Need threads >= 1, repeats >= 1 and warmup >= 0; got {threads}, {repeats}, {warmup}."
        )
    if max_spread is not None and max_spread <= 0:
        raise TimingError(f"max_spread must be positive, got {max_spread}.")
    if calibrate < 0:
        raise TimingError(f"calibrate must be >= 0, got {calibrate}.")
    if target is None:
        check_clock(clock, threads)


def _convert_all(space: SearchSpace, archs: list[list[str]], progress: bool,
                 deployment: Deployment = FLOAT_LITERT):
    """Labels and models: fixed parts, every candidate, the probe, then the networks.

    A label is ``("part", name)``, ``(layer index, candidate)`` or ``("probe", "overhead")``.
    int8 models keep int8 tensors where a network does: only the stem's input
    and the head's output are float32 (:mod:`spnas.latency.runtimes`).
    """

    def convert(model, float_input=False, float_output=False):
        return convert_for(model, deployment, float_input, float_output)

    searchable = {layer.index: layer for layer in space.layers() if layer.searchable}
    builders = [(("part", name), model) for name, model in fixed_part_models(space).items()]
    labels = [label for label, _ in builders]
    labels += [(index, c) for index, layer in searchable.items() for c in needed_keys(layer)]
    labels.append(("probe", "overhead"))
    fbs = []
    with tqdm(total=len(labels), disable=not progress, desc="converting", unit="model") as bar:
        for (_, name), model in builders:
            fbs.append(convert(model, float_input=name == "stem", float_output=name == "head"))
            bar.update(1)
        for index, choice in labels[len(builders):-1]:
            fbs.append(convert(layer_model(searchable[index], choice)))
            bar.update(1)
        fbs.append(convert(overhead_probe_model()))
        bar.update(1)
    with tqdm(total=len(archs), disable=not progress or not archs, desc="converting nets",
              unit="net") as bar:
        for choices in archs:
            fbs.append(convert(network_model(space, choices), True, True))
            bar.update(1)
    return labels, fbs


def _remeasure_noisy(stats, fbs, checked: int, max_spread: float | None, timing) -> None:
    """Measures again (up to MAX_RETRIES times) the models above ``max_spread``; keeps the best."""
    for _ in range(MAX_RETRIES if max_spread is not None else 0):
        noisy = [i for i, s in enumerate(stats[:checked]) if s.spread > max_spread]
        if not noisy:
            break
        again = timing([fbs[i] for i in noisy])
        for i, s in zip(noisy, again):
            stats[i] = s if s.spread < stats[i].spread else stats[i]


def _check_spread(labels, stats, max_spread: float | None, on_device: bool) -> None:
    if max_spread is None:
        return
    spread_name = "std/avg" if on_device else "(p90-p10)/median"
    for label, s in zip(labels, stats):
        if s.spread > max_spread:
            where = f"fixed part {label[1]}" if label[0] == "part" else \
                f"layer {label[0]} {label[1]}"
            raise ProfileError(
                f"{where}: spread {spread_name} is {s.spread:.2f} after "
                f"{MAX_RETRIES + 1} measurements, above max_spread={max_spread}. The "
                f"{'device' if on_device else 'host'} is too busy for a stable "
                "table; profile on an idle machine or raise --repeats."
            )


def _by_layer(space: SearchSpace, labels, stats):
    """(per searchable layer, per candidate, stats) and (per fixed part, stats)."""
    layers: dict[int, dict[str, object]] = {
        layer.index: {} for layer in space.layers() if layer.searchable}
    parts: dict[str, object] = {}
    for (key, name), s in zip(labels, stats):
        if key == "part":
            parts[name] = s
        else:
            layers[key][name] = s
    return layers, parts


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
    precision: str = "float32",
    runtime: str = "litert",
) -> Profile:
    """Converts and times every candidate of every searchable layer and the fixed parts.

    All models are converted first, then timed together by
    :func:`spnas.latency.timing.time_interleaved` (or by ``target.measure`` on
    a device), so each entry's samples are spread over the whole timing window
    and a change of load scales all entries alike. See :func:`profile_table`
    for the arguments.
    """
    _check_settings(threads, warmup, repeats, max_spread, calibrate, target, clock)
    deployment = Deployment(precision, runtime).check(on_device=target is not None)
    affinity = tuple(affinity) if affinity else None
    start = time.perf_counter()
    load_before = load_average()
    if target is not None:
        target.connect()  # a missing device fails now, not after converting
    archs = calibration_choices(space, calibrate, calibration_seed)
    labels, fbs = _convert_all(space, archs, progress, deployment)

    def timing(models, bar=None):
        return measure(models, target=target, threads=threads, warmup=warmup, repeats=repeats,
                       affinity=affinity, clock=clock, progress=bar, runtime=runtime)

    with tqdm(total=rounds_of(target, repeats), disable=not progress, desc="timing",
              unit="round") as bar:
        stats = timing(fbs, bar)
    # The probe's spread is no reason to fail: its few microseconds are all noise.
    checked = len(labels) - 1  # neither the probe nor the calibration networks
    _remeasure_noisy(stats, fbs, checked, max_spread, timing)
    _check_spread(labels[:checked], stats[:checked], max_spread, target is not None)
    layers, parts = _by_layer(space, labels[:checked], stats[:checked])
    return Profile(
        space=space, layers=layers, parts=parts,
        delegate=delegated(fbs[0], threads) if target is None and runtime == "litert" else None,
        threads=threads, warmup=warmup, repeats=repeats,
        seconds=time.perf_counter() - start,
        load_average=(load_before, load_average()),
        target=target.describe() if target is not None else {"target": "host"},
        clock=clock if target is None else "device",
        affinity=affinity,
        overhead=stats[checked],
        calibration=list(zip(archs, stats[checked + 1:])),
        calibration_seed=calibration_seed,
        deployment=deployment,
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
    precision: str = "float32",
    runtime: str = "litert",
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
        :data:`spnas.latency.timing.STATISTICS`); device: ``avg`` or ``min``.
      target: None for this host, or an :class:`spnas.latency.adb.AdbTarget`.
      affinity: host CPUs to pin the timing to (see
        :func:`spnas.latency.cpus.cpu_affinity`).
      clock: host timing clock, ``wall`` or ``thread``.
      subtract_overhead: take the per-invoke overhead off the entries (see
        :func:`spnas.latency.build.table_from_profile`).
      calibrate: time this many whole random networks with the layers and
        scale the table to them (see ``table_from_profile``); 0: no.
      precision: ``float32`` or ``int8`` (full-integer TFLite; each model
        calibrated on a few seeded random inputs, see
        :mod:`spnas.latency.runtimes`).
      runtime: ``litert`` or ``onnxruntime`` (host only, float32 only).

    Returns:
      A :class:`LatencyTable` in ms; the per-entry spread, layer shapes, the
      constant's parts and the settings are in ``extra``. Nothing is written:
      save it with :func:`spnas.tables.table.save_table` (atomic), so an
      interrupted run leaves no partial table.

    Raises:
      TimingError, CpuError: bad counts, statistic, clock or CPUs (ValueErrors).
      ProfileError: a layer stays noisier than ``max_spread``.
      DeploymentError: an unsupported precision/runtime, or the ONNX packages missing.
      spnas.latency.adb.AdbError: the device cannot be reached or timed.
    """
    check_statistic(statistic, target is not None)
    profile = profile_space(space, threads=threads, warmup=warmup, repeats=repeats,
                            progress=progress, max_spread=max_spread, target=target,
                            affinity=affinity, clock=clock, calibrate=calibrate,
                            precision=precision, runtime=runtime)
    return table_from_profile(profile, statistic=statistic, device=device,
                              subtract_overhead=subtract_overhead)


def profile_to_file(space: SearchSpace, out: str, device: str | None = None, target=None,
                    **kwargs) -> LatencyTable:
    """Profiles ``space`` on this host (or ``target``) and writes the table to ``out`` atomically.

    ``device`` None names this host's CPU, or the device adb reaches; the other
    arguments are those of :func:`profile_table`. Returns the table written.
    """
    # An unsupported precision/runtime fails before a device is reached.
    Deployment(kwargs.get("precision", "float32"), kwargs.get("runtime", "litert")).check(
        on_device=target is not None)
    if target is not None:
        target.connect()
        if device is None:
            info = target.describe()
            device = f"{info.get('model', 'unknown')} ({info.get('abi', 'unknown')}, " \
                     f"adb {target.serial})"
        kwargs["affinity"] = None  # pinned on the device by the target's taskset
    table = profile_table(space, device=device or host_description(), target=target, **kwargs)
    save_table(table, out)
    return table
