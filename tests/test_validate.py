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
from spnas.latency import tables as shipped
from spnas.latency.validate import error_metrics, validate, write_report
from spnas.search.random_search import sample_choices
from spnas.search.space import smoke_space, validate_choices


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
    measured, exact = [], []
    for net in report["nets"]:
        validate_choices(space, net["choices"])
        assert net["predicted_exact_ms"] == pytest.approx(
            predict_ms(table, net["choices"], space, model="exact"))
        assert net["predicted_paper_ms"] == pytest.approx(
            predict_ms(table, net["choices"], space, model="paper"))
        assert net["measured_ms"] > 0
        measured.append(net["measured_ms"])
        exact.append(net["predicted_exact_ms"])
    assert report["mape_exact"] == pytest.approx(error_metrics(exact, measured)["mape"])
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
