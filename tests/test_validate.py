"""Runtime-model validation (paper Fig. 7): metrics, a tiny run on the smoke space, the CLI."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from spnas.latency import load_table, predict_ms
from spnas.latency.validate import error_metrics, validate, write_report
from spnas.search.random_search import sample_choices
from spnas.space import smoke_space, validate_choices
from spnas.tables import shipped


def test_error_metrics():
    m = error_metrics([105.0, 90.0, 100.0, 130.0], [100.0, 100.0, 100.0, 100.0])
    assert m["rmse_ms"] == pytest.approx(math.sqrt((25 + 100 + 0 + 900) / 4))
    assert m["mape"] == pytest.approx((5 + 10 + 0 + 30) / 4)
    assert m["within5"] == pytest.approx(50.0)  # 105 (exactly 5 %) and 100
    assert m["within10"] == pytest.approx(75.0)
    assert m["bias_pct"] == pytest.approx((5 - 10 + 0 + 30) / 4)
    assert m["max_abs_pct"] == pytest.approx(30.0)
    assert m["rmse_pct_of_mean"] == pytest.approx(m["rmse_ms"])  # mean measured is 100
    with pytest.raises(ValueError, match="equally many"):
        error_metrics([1.0], [1.0, 2.0])


@pytest.fixture(scope="module")
def smoke():
    space = smoke_space()
    return load_table(shipped.path("smoke_cpu"), space=space), space


@pytest.fixture(scope="module")
def report(smoke):
    table, space = smoke
    return validate(table, space, n=3, seed=0, warmup=2, repeats=20, progress=False)


def test_validate_smoke_space(smoke, report, tmp_path):
    table, space = smoke
    for key in ("n", "rmse_ms_paper", "mape_paper", "rmse_ms_exact", "mape_exact",
                "within5_exact", "within10_exact", "within5_paper", "within10_paper"):
        assert isinstance(report[key], (int, float)) and math.isfinite(report[key]), key
    assert report["n"] == 3 and len(report["nets"]) == 3
    # The table's own settings: p10 statistic, 1 thread.
    assert report["settings"]["statistic"] == "p10" and report["settings"]["threads"] == 1
    assert report["settings"]["repeats"] == 20
    measured, exact, paper = [], [], []
    for net in report["nets"]:
        validate_choices(space, net["choices"])
        assert net["predicted_exact_ms"] == pytest.approx(
            predict_ms(table, net["choices"], space, model="exact"))
        assert net["predicted_paper_ms"] == pytest.approx(
            predict_ms(table, net["choices"], space, model="paper"))
        assert net["measured_ms"] > 0
        measured.append(net["measured_ms"])
        exact.append(net["predicted_exact_ms"])
        paper.append(net["predicted_paper_ms"])
    # RMSE / MAPE / within-5 % recomputed by hand from the per-net figures.
    m = np.array(measured)
    for model, pred in (("exact", np.array(exact)), ("paper", np.array(paper))):
        rel = np.abs(pred - m) / m
        assert report[f"rmse_ms_{model}"] == pytest.approx(np.sqrt(np.mean((pred - m) ** 2)))
        assert report[f"mape_{model}"] == pytest.approx(100 * np.mean(rel))
        assert report[f"within5_{model}"] == pytest.approx(100 * np.mean(rel <= 0.05))
        assert report[f"within10_{model}"] == pytest.approx(100 * np.mean(rel <= 0.10))
    # Seeded: the networks are the first draws of the seed's generator.
    rng = np.random.default_rng(0)
    assert [x["choices"] for x in report["nets"]] == [sample_choices(space, rng) for _ in range(3)]
    out = tmp_path / "r" / "val.json"
    plot = write_report(report, str(out))
    assert plot == str(tmp_path / "r" / "val.png")
    assert open(plot, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(out.read_text())
    assert saved["n"] == 3 and saved["plot"] == "val.png" and len(saved["nets"]) == 3
    assert sorted(os.listdir(out.parent)) == ["val.json", "val.png"]  # no temp files left


def test_validate_refuses_a_table_of_another_target(smoke):
    table, space = smoke
    adb_table = dataclasses.replace(table, extra={**table.extra, "target": "adb"})
    with pytest.raises(ValueError, match="profiled on target 'adb'"):
        validate(adb_table, space, n=1, progress=False)
    imported = dataclasses.replace(table, runtime="TFLite", extra={"target": "host"})
    with pytest.raises(ValueError, match="records no statistic"):
        validate(imported, space, n=1, progress=False)
    with pytest.raises(ValueError, match="n must be >= 1"):
        validate(table, space, n=0, progress=False)


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "spnas.latency.main", "validate", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def test_cli_validate_usage_errors(tmp_path):
    r = _cli("--table=smoke_cpu", "--n=2", f"--report={tmp_path / 'v.json'}", "--target=adb")
    assert r.returncode != 0 and "--benchmark_model" in r.stderr
    r = _cli("--table=no_such_table", "--n=2", f"--report={tmp_path / 'v.json'}")
    assert r.returncode == 2 and "No shipped latency table 'no_such_table'" in r.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_cli_validate(tmp_path):
    report = tmp_path / "val.json"
    r = _cli("--table=smoke_cpu", "--n=2", "--warmup=1", "--repeats=10", f"--report={report}",
             "--progress=false", f"--cache_dir={tmp_path / 'nets'}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "exact: RMSE" in r.stdout and f"wrote {report}" in r.stdout
    data = json.loads(report.read_text())
    assert data["n"] == 2 and data["space"] == smoke_space().to_dict()
    assert (tmp_path / "val.png").is_file() and len(os.listdir(tmp_path / "nets")) == 2


# ---------------------------------------------------------------- host timing options
# (spnas.latency.profile additions that make tables validate: min, overhead, pinning)

TINY = dict(blocks=("r1_k3_s11_e1_i32_o16_noskip", "r2_k5_s22_e6_i16_o24"), input_size=16,
            width=0.25, head_channels=64, num_classes=10)


def _stats(ms):
    from spnas.latency.timing import HostStats

    return HostStats.from_samples([ms * 1.2, ms, ms * 1.1], threads=1)


def test_overhead_is_paid_once_per_network():
    from spnas.latency.build import MIN_AFTER_OVERHEAD, Profile, table_from_profile
    from spnas.space import CANDIDATES, SearchSpace

    space = SearchSpace(**TINY)
    o = 0.002
    layers = {i: {c: _stats(0.01 * i + 0.001 * k) for k, c in enumerate(CANDIDATES)}
              for i in (1, 2)}
    layers[2]["k3_e3"] = _stats(0.0019)  # faster than the overhead: floored
    parts = {"stem": _stats(0.004), "layer_0": _stats(0.005), "head": _stats(0.02)}
    profile = Profile(space=space, layers=layers, parts=parts, delegate=True, threads=1,
                      warmup=1, repeats=3, seconds=1.0, overhead=_stats(o))
    raw = table_from_profile(profile, "min")
    net = table_from_profile(profile, "min", subtract_overhead=True)
    assert raw.layers[1]["k5_e6"] == pytest.approx(0.013)  # min of the samples
    assert raw.extra["overhead_subtracted"] is False and net.extra["overhead_subtracted"] is True
    assert net.extra["invoke_overhead_ms"] == pytest.approx(o)
    assert net.layers[1]["k3_e6"] == pytest.approx(raw.layers[1]["k3_e6"] - o)
    assert net.layers[2]["k3_e3"] == pytest.approx(MIN_AFTER_OVERHEAD * 0.0019)
    parts_ms = net.extra["constant_parts_ms"]
    assert parts_ms["stem"] == pytest.approx(0.004)  # the network's one invoke
    assert parts_ms["head"] == pytest.approx(0.02 - o)
    assert net.constant_ms == pytest.approx(sum(parts_ms.values()))
    # A two-layer network: 5 timed models in the raw sum, one invoke in reality.
    choices = ["k3_e1", "k5_e6", "k3_e6"]
    assert predict_ms(net, choices, space, "exact") == pytest.approx(
        predict_ms(raw, choices, space, "exact") - 4 * o)
    # Calibration: whole networks measured 10 % above the (overhead-corrected) sum.
    nets = [["k3_e1", "k5_e6", "k3_e6"], ["k3_e1", "k3_e3", "skip"], ["k3_e1", "k5_e3", "k5_e3"]]
    measured = [predict_ms(net, c, space, "exact") * r for c, r in zip(nets, (1.1, 1.08, 1.12))]
    calibrated = dataclasses.replace(profile, calibration=[(c, _stats(m)) for c, m in
                                                           zip(nets, measured)])
    cal = table_from_profile(calibrated, "min", subtract_overhead=True)
    assert cal.extra["calibration"]["scale"] == pytest.approx(1.1)  # the median ratio
    assert cal.extra["calibration"]["archs"] == nets
    assert cal.layers[1]["k5_e6"] == pytest.approx(net.layers[1]["k5_e6"] * 1.1)
    assert cal.constant_ms == pytest.approx(net.constant_ms * 1.1)
    assert predict_ms(cal, nets[0], space, "paper") == pytest.approx(
        predict_ms(net, nets[0], space, "paper") * 1.1)
    with pytest.raises(ValueError, match="no overhead probe"):
        table_from_profile(dataclasses.replace(profile, overhead=None), "min",
                           subtract_overhead=True)


def test_cpu_lists_affinity_and_clocks():
    from spnas.export.tflite import convert_float
    from spnas.latency.cpus import cpu_affinity, parse_cpus
    from spnas.latency.probe import overhead_probe_model
    from spnas.latency.timing import check_clock, time_interleaved

    assert parse_cpus("0,2-3") == (0, 2, 3) and parse_cpus("") is None
    for bad in ("a", "3-1", "-1"):
        with pytest.raises(ValueError, match="Malformed CPU list"):
            parse_cpus(bad)
    allowed = os.sched_getaffinity(0)
    cpu = max(allowed)
    with cpu_affinity([cpu]):
        assert os.sched_getaffinity(0) == {cpu}
    assert os.sched_getaffinity(0) == allowed
    with pytest.raises(ValueError, match="not available"):
        with cpu_affinity([4096]):
            pass
    with pytest.raises(ValueError, match="needs threads=1"):
        check_clock("thread", 2)
    with pytest.raises(ValueError, match="Unknown clock"):
        check_clock("cpu", 1)
    fb = convert_float(overhead_probe_model(), method="graph")
    with cpu_affinity([cpu]):
        (s,) = time_interleaved([fb], warmup=2, repeats=20, clock="thread")
    assert 0 < s.min_ms <= s.p10_ms <= s.median_ms and s.repeats == 20
