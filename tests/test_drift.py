"""Host speed drift against a calibrated table (spnas/latency/drift.py)."""

import numpy as np
import pytest

from spnas.latency.build import table_from_profile
from spnas.latency.drift import calibration_nets, measure_with_drift
from spnas.latency.probe import CONVERSION, convert_float, network_model
from spnas.latency.profile import profile_space
from spnas.space import SearchSpace, embedded_space
from tests.tiny_spaces import ONE_LAYER


def test_shipped_table_calibration_nets_reproduce_its_scale():
    from spnas.tables import shipped as tables
    from spnas.tables.runtime_model import predict_ms
    from spnas.tables.table import load_table

    table = load_table(tables.path("embedded_cpu"))
    space = embedded_space()
    nets = calibration_nets(table, space)
    assert len(nets) == table.extra["calibration"]["n"] == 10
    # The table was scaled by the median measured/predicted, so against the scaled
    # entries the networks' own measurements sit around 1.
    ratios = [ms / predict_ms(table, c, space, model="exact") for c, ms in nets]
    assert np.median(ratios) == pytest.approx(1.0, abs=1e-4)  # ratios are stored rounded
    # The scale is the median of the 10 recorded ratios, by hand: sorted, they are
    # 0.99473 0.99739 1.0008 1.00268 [1.00417 1.00578] 1.00926 1.01159 1.01205 1.01255,
    # so the median is (1.00417 + 1.00578) / 2 = 1.004975.
    calibration = table.extra["calibration"]
    assert sorted(calibration["ratios"]) == [0.99473, 0.99739, 1.0008, 1.00268, 1.00417,
                                             1.00578, 1.00926, 1.01159, 1.01205, 1.01255]
    assert calibration["scale"] == pytest.approx(1.004975, abs=1e-5)


@pytest.fixture(scope="module")
def calibrated():
    space = SearchSpace(**ONE_LAYER)
    profile = profile_space(space, warmup=2, repeats=20, progress=False, calibrate=2)
    return space, table_from_profile(profile, "min", device="test host")


def test_measure_with_drift(calibrated):
    space, table = calibrated
    nets = calibration_nets(table, space)
    assert len(nets) == 2 and all(ms > 0 for _, ms in nets)
    fb = convert_float(network_model(space, nets[0][0]), method=CONVERSION)
    r = measure_with_drift(fb, table, space, statistic="min", warmup=2, repeats=20)
    assert r["n"] == 2 and len(r["ratios"]) == 2 and r["drift"] > 0
    assert r["measured_ms_at_profiling_speed"] == pytest.approx(r["measured_ms"] / r["drift"])


def test_uncalibrated_table_gives_none():
    from spnas.space import smoke_space
    from spnas.tables import shipped as tables
    from spnas.tables.table import load_table

    table = load_table(tables.path("smoke_cpu"))
    assert calibration_nets(table, smoke_space()) == []
    assert measure_with_drift(b"unused", table, smoke_space()) is None


def test_drift_by_hand_with_fixed_timings(monkeypatch):
    """drift = median(now / then) over the calibration nets (spnas/latency/drift.py's
    documented definition), here with made-up timings: every net runs f_k times its
    profiling-time latency, f = 1.00 1.01 1.02 1.03 1.20 1.25 1.30 1.31 1.32 1.50 -> median
    (1.20 + 1.25) / 2 = 1.225 (the mean would be 1.214);
    the model measures 5.0 ms, i.e. 5.0 / 1.225 = 4.0816... ms at profiling speed.
    The profiling-time latency of net k is, by hand, ratio_k / scale * (constant +
    sum of its layers' table entries, skip = 0), read from the table's JSON."""
    import json
    import types

    import spnas.latency.drift as drift
    from spnas.tables import shipped as tables
    from spnas.tables.table import load_table

    path = tables.path("embedded_cpu")
    raw = json.load(open(path))
    cal = raw.get("extra", raw)["calibration"]
    then = []
    for choices, ratio in zip(cal["archs"], cal["ratios"]):
        exact = raw["constant_ms"] + sum(
            raw["layers"][str(i)][c] for i, c in enumerate(choices)
            if str(i) in raw["layers"] and c != "skip")
        then.append(ratio / cal["scale"] * exact)
    factors = [1.0, 1.01, 1.02, 1.03, 1.2, 1.25, 1.3, 1.31, 1.32, 1.5]
    fake = [types.SimpleNamespace(min_ms=5.0)] + [
        types.SimpleNamespace(min_ms=t * f) for t, f in zip(then, factors)]
    monkeypatch.setattr(drift, "convert", lambda model: b"net")
    monkeypatch.setattr(drift, "time_interleaved", lambda fbs, **kw: fake[: len(fbs)])
    r = drift.measure_with_drift(b"model", load_table(path), embedded_space(), statistic="min")
    assert r["n"] == 10 and r["measured_ms"] == 5.0
    assert r["ratios"] == pytest.approx(factors, abs=1e-4)
    assert r["drift"] == pytest.approx(1.225, rel=1e-9)
    assert r["measured_ms_at_profiling_speed"] == pytest.approx(4.081633, rel=1e-6)
