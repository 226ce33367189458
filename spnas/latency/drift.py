"""How much faster or slower is this host now than when its table was profiled?

A shared machine (a cloud VM, a laptop on battery) changes speed over minutes:
on our 2-core VM the same 32x32 network timed 0.55 ms at one time and 0.70 ms
half an hour later. A prediction from a table profiled at one moment and a
measurement taken at another then differ by that drift, not by any error of
the runtime model.

A table made with ``spnas-latency profile --calibrate=N`` records N whole
random networks and, for each, measured / predicted at profiling time
(``extra["calibration"]``). Timing those same networks again, interleaved with
the model under test, gives the host's speed now relative to then:
``drift = median(measured_now / measured_then)``. ``spnas-pipeline`` reports
it next to its measurement, and the measurement divided by it.
"""

from __future__ import annotations

import numpy as np

from spnas.latency.probe import convert, network_model
from spnas.latency.runtimes import FLOAT_LITERT, Deployment, convert_for
from spnas.latency.timing import statistic_value, time_interleaved
from spnas.space import SearchSpace
from spnas.tables.runtime_model import bind
from spnas.tables.table import LatencyTable


def calibration_nets(table: LatencyTable, space: SearchSpace) -> list[tuple[list[str], float]]:
    """(choices, measured ms at profiling time) of the table's calibration networks.

    Empty when the table was made without ``--calibrate``. The table stores the
    ratios measured / predicted against the unscaled entries and then scaled
    every entry by their median, so measured = ratio / scale * (scaled exact sum).
    """
    calibration = table.extra.get("calibration") or {}
    archs, ratios = calibration.get("archs") or [], calibration.get("ratios") or []
    scale = float(calibration.get("scale") or 0.0)
    if not archs or len(archs) != len(ratios) or scale <= 0:
        return []
    bound = bind(table, space)
    return [(list(c), float(r) / scale * bound.predict_ms(c, model="exact"))
            for c, r in zip(archs, ratios)]


def measure_with_drift(
    flatbuffer: bytes,
    table: LatencyTable,
    space: SearchSpace,
    statistic: str = "min",
    threads: int = 1,
    warmup: int = 200,
    repeats: int = 1000,
) -> dict | None:
    """Times ``flatbuffer`` interleaved with the table's calibration networks.

    The networks are converted and timed as the table's entries were (its
    precision and runtime), so ``flatbuffer`` must be a model of that kind too.

    Returns:
      None when the table has no calibration networks; else ``measured_ms``
      (the model, ``statistic`` of its invokes), ``drift`` (host speed now /
      then, > 1: slower now), ``measured_ms_at_profiling_speed`` (measured /
      drift), ``ratios`` (per network) and ``n``.
    """
    nets = calibration_nets(table, space)
    if not nets:
        return None
    deployment = Deployment(table.precision, table.deployment_runtime).check()
    def converted(choices):
        model = network_model(space, choices)
        return convert(model) if deployment == FLOAT_LITERT else convert_for(model, deployment)

    fbs = [bytes(flatbuffer)] + [converted(c) for c, _ in nets]
    stats = time_interleaved(fbs, threads=threads, warmup=warmup, repeats=repeats,
                             runtime=deployment.runtime)
    measured = statistic_value(stats[0], statistic)
    ratios = [statistic_value(s, statistic) / then for s, (_, then) in zip(stats[1:], nets)]
    drift = float(np.median(ratios))
    return {
        "measured_ms": measured,
        "statistic": statistic,
        "drift": drift,
        "measured_ms_at_profiling_speed": measured / drift,
        "ratios": [round(r, 4) for r in ratios],
        "n": len(nets),
    }

