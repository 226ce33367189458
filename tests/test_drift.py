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
