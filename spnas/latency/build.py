"""From the raw timings of a profiling run to a latency table.

A :class:`Profile` holds every model's timing statistics;
:func:`table_from_profile` picks one statistic per model, optionally takes the
fixed cost of one ``invoke()`` off every entry (``subtract_overhead``) and
scales the table to whole networks timed with the layers (calibration), and
records the settings, per-entry spread, the constant's parts, the layer shapes
(checked by :meth:`LatencyTable.validate_for`) and the host in the table's
``extra`` fields.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import platform

import numpy as np

from spnas.latency.runtimes import FLOAT_LITERT, Deployment
from spnas.latency.timing import TimingError, check_statistic, split_repeats, statistic_value
from spnas.space import SearchSpace
from spnas.tables.table import LatencyTable

# An entry never drops below this share of its raw value when the invoke
# overhead is taken off (a layer always does some work of its own).
MIN_AFTER_OVERHEAD = 0.05


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
      clock: how host invokes were timed (see :data:`spnas.latency.timing.CLOCKS`).
      affinity: the host CPUs the timing ran on (None: not pinned).
      overhead: stats of the overhead probe model, timed with the rest.
      calibration: ``(choices, stats)`` of whole random networks timed with
        the rest (see :func:`table_from_profile`).
      calibration_seed: the seed they were drawn with.
      deployment: the precision and runtime of the timed models.
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
    deployment: Deployment = FLOAT_LITERT

    @property
    def on_device(self) -> bool:
        return self.target.get("target") == "adb"


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


def statistic_of(table: LatencyTable) -> str | None:
    """The statistic a profiled table holds (``median``, ``p10``, ``avg``, ``min``), if recorded."""
    return table.statistic


def _spread(stats) -> float | None:
    # benchmark_model's summary-only output has no spread; JSON has no NaN.
    return round(float(stats.spread), 4) if math.isfinite(stats.spread) else None


def calibration(profile: Profile, entries, constant_parts, statistic: str) -> dict:
    """The scale measured / predicted over the profile's calibration networks, and its record."""
    ratios = []
    constant = sum(constant_parts.values())
    for choices, stats in profile.calibration:
        # A skip costs its projection's entry where it has one (an identity: nothing).
        predicted = constant + sum(entries[layer.index].get(c, 0.0) for layer, c in
                                   zip(profile.space.layers(), choices)
                                   if layer.searchable)
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


def _values(profile: Profile, statistic: str, subtract_overhead: bool):
    """(entries, constant parts, overhead, calibration record): overhead off, calibrated."""
    overhead = statistic_value(profile.overhead, statistic) if profile.overhead else None
    if subtract_overhead and overhead is None:
        raise TimingError("This profile has no overhead probe to subtract.")

    def net(value: float) -> float:
        if not subtract_overhead:
            return value
        return max(value - overhead, MIN_AFTER_OVERHEAD * value)

    entries = {i: {c: net(statistic_value(s, statistic)) for c, s in row.items()}
               for i, row in profile.layers.items()}
    # The stem keeps the overhead: the whole network pays it once.
    constant_parts = {n: statistic_value(s, statistic) if n == "stem" else
                      net(statistic_value(s, statistic)) for n, s in profile.parts.items()}
    record = None
    if profile.calibration:
        record = calibration(profile, entries, constant_parts, statistic)
        scale = record["scale"]
        entries = {i: {c: v * scale for c, v in row.items()} for i, row in entries.items()}
        constant_parts = {n: v * scale for n, v in constant_parts.items()}
    return entries, constant_parts, overhead, record


def _provenance(profile: Profile, statistic: str) -> dict:
    """What ran the models: runtime, source, statistic text, delegate, host."""
    kind = profile.deployment.model_kind
    if profile.on_device:
        args = profile.target.get("benchmark_args") or []
        return {
            "runtime": "TFLite benchmark_model",
            "version": "unknown (user-supplied binary)",
            "source": f"spnas-latency profile --target=adb (one-layer {kind} models, "
                      "benchmark_model on the device)",
            "statistic": f"{statistic} of benchmark_model timed runs (us, converted to ms), batch 1",
            "delegate": "benchmark_model defaults" + (f" with {' '.join(args)}" if args else ""),
            "host": profile.target,
        }
    clock_text = ("wall time (time.perf_counter)" if profile.clock == "wall"
                  else "thread CPU time (time.thread_time_ns)")
    name = profile.deployment.runtime_name
    if profile.deployment.runtime == "onnxruntime":
        delegate = "CPUExecutionProvider, sequential, all graph optimizations"
    else:
        delegate = "XNNPACK (LiteRT default)" if profile.delegate else "none (built-in kernels)"
    return {
        "runtime": name,
        "version": profile.deployment.runtime_version(),
        "source": f"spnas-latency profile (one-layer {kind} models timed with {name})",
        "statistic": f"{statistic} of {'run_with_iobinding()' if name != 'LiteRT' else 'invoke()'} "
                     f"{clock_text}, batch 1",
        "delegate": delegate,
        "host": host_description(),
    }


def _spreads(profile: Profile) -> dict:
    spread = {str(i): {c: _spread(s) for c, s in row.items()} for i, row in profile.layers.items()}
    spread["constant"] = {n: _spread(s) for n, s in profile.parts.items()}
    return spread


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
        host (see :data:`spnas.latency.timing.STATISTICS`); ``avg`` or ``min``
        of benchmark_model's timed runs on a device.
      device: the device name recorded in the table.
      subtract_overhead: take the fixed cost of one invoke (the overhead
        probe's time, same statistic) off every entry and fixed part but the
        stem, which keeps it for the whole network: a network pays it once,
        the sum of separately timed models once per model. Without it the
        table over-predicts by ~(models - 1) x overhead (about 2.4 us per
        model on the 2-core host: +7 to +13 % on the 0.3 ms embedded
        networks). An entry is kept at no less than :data:`MIN_AFTER_OVERHEAD`
        of its raw value.

    When the profile timed calibration networks (``calibrate`` of
    :func:`spnas.latency.profile.profile_table`), every entry and the constant
    are then multiplied by the median of measured / predicted over those
    networks. A model timed alone in a loop keeps its weights in the caches;
    inside a network they were evicted by the other layers, so at 224x224 on
    the 2-core host whole networks ran ~14 % slower than the sum of their
    layers (the ratio varied by only ~1 % between networks). One scale leaves
    the search unchanged (its loss uses ln R) and makes absolute predictions
    right; the scale, the ratios and the networks are recorded in
    ``extra["calibration"]``.
    """
    check_statistic(statistic, profile.on_device)
    space = profile.space
    entries, constant_parts, overhead, record = _values(profile, statistic, subtract_overhead)
    spread = _spreads(profile)
    all_spreads = [v for row in spread.values() for v in row.values() if v is not None]
    made = _provenance(profile, statistic)
    extra = {
        "target": profile.target.get("target", "host"),
        "threads": profile.threads,
        "warmup": profile.warmup,
        "repeats": profile.repeats,
        "rounds": profile.target.get("rounds") if profile.on_device
        else len(split_repeats(profile.repeats)),
        "statistic": made["statistic"],
        "clock": profile.clock,
        "affinity": list(profile.affinity) if profile.affinity else None,
        "delegate": made["delegate"],
        "converter": profile.deployment.converter(),
        "host": made["host"],
        "profile_seconds": round(profile.seconds, 1),
        "load_average": list(profile.load_average),
        "constant_parts_ms": constant_parts,
        "invoke_overhead_ms": overhead,
        "overhead_subtracted": bool(subtract_overhead),
        "calibration": record,
        "layer_shapes": {
            str(layer.index): {"in": layer.in_ch, "out": layer.out_ch, "stride": layer.stride,
                               "hw": layer.input_hw}
            for layer in space.layers() if layer.searchable
        },
        "spread": spread,
        "max_spread": float(np.max(all_spreads)) if all_spreads else None,
        "space": space.to_dict(),
    }
    return LatencyTable(
        device=device,
        input_size=space.input_size,
        constant_ms=float(sum(constant_parts.values())),
        layers=entries,
        runtime=made["runtime"],
        runtime_version=made["version"],
        date=datetime.date.today().isoformat(),
        source=made["source"],
        extra=extra,
        precision=profile.deployment.precision,
        deployment_runtime=profile.deployment.runtime,
    )
