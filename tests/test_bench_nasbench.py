"""bench/nasbench_macro.py end to end on its tiny preset: 300 real CIFAR-10 images, a few
search and training steps, the benchmark file as ground truth; the table's structure,
every searched row mapped onto a benchmark code, and a resume that redoes nothing."""

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO
from tests.test_data import _extract_subset

# Minutes of subprocesses: in CI's multi-process step, not the default suite.
pytestmark = pytest.mark.multiprocess


@pytest.fixture(scope="module")
def macro_run(shared_dir, tmp_path_factory):
    data = _extract_subset(shared_dir / "data" / "cifar10_train_jpg.tar.gz",
                           tmp_path_factory.mktemp("cifar300"), 30)
    out = tmp_path_factory.mktemp("macro")
    bench = shared_dir / "data" / "nas-bench-macro_cifar10.json"
    cmd = [sys.executable, str(REPO / "bench" / "nasbench_macro.py"), "--preset=tiny",
           f"--train=folder:{data}", f"--bench={bench}", f"--out={out}"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    return out, json.loads(bench.read_text()), first.stdout, again.stdout


def test_every_row_maps_onto_a_benchmark_code(macro_run):
    out, bench, _, _ = macro_run
    result = json.loads((out / "nasbench_macro.json").read_text())
    assert result["format"] == "spnas.nasbench_macro/1" and result["preset"] == "tiny"
    modes = {(r["cost"], r["mode"]) for r in result["rows"]}
    assert modes == {("macs", "dedicated"), ("macs", "many_budgets"), ("latency", "dedicated"),
                     ("macs", "random"), ("latency", "random")}
    for row in result["rows"]:
        assert len(row["layers"]) == 8 and row["code"] in bench
        digits = {"skip": "0", "k3_e3": "1", "k5_e6": "2"}
        assert row["code"] == "".join(digits[c] for c in row["layers"])
        assert row["bench_mean_acc"] == bench[row["code"]]["mean_acc"]
        assert row["regret"] >= 0 and 0 <= row["percentile"] <= 100
        if row["cost"] == "macs":  # the search's MACs are the benchmark's FLOPs
            assert row["predicted_cost"] * 1e6 == pytest.approx(bench[row["code"]]["flops"])
        if row["mode"] == "random":
            assert 0.94 * row["budget"] <= row["predicted_cost"] <= row["budget"] * (1 + 1e-9)
    # Three budgets per cost (25 / 50 / 75 % of the range), each with its baselines.
    for cost in ("macs", "latency"):
        base = [b for b in result["baselines"] if b["cost"] == cost]
        assert len(base) == 3 and [b["budget"] for b in base] == sorted(b["budget"] for b in base)
        for b in base:
            e = b["expected_best"]
            assert set(e) == {"1", "10", "50"} and e["1"] <= e["10"] <= e["50"]
    many = [r for r in result["rows"] if r["mode"] == "many_budgets"]
    assert sorted(r["budget"] for r in many) == [
        b["budget"] for b in result["baselines"] if b["cost"] == "macs"]
    assert {v["cost"] for v in result["verdicts"]} == {"macs", "latency"}
    assert len(result["rank_check"]["rows"]) == 2 and "kendall_tau" in result["rank_check"]
    assert result["search_cost"]["steps"] == 8
    assert (out / "nasbench_macro.png").stat().st_size > 10_000
    md = (out / "nasbench_macro.md").read_text()
    assert "## Budgets on macs (MMAC)" in md and "Kendall" in md


def test_resume_redoes_nothing(macro_run):
    _, _, first, again = macro_run
    assert "search:" in first and "rank check: training" in first
    assert "search:" not in again and "rank check: training" not in again
