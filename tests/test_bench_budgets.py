"""bench/many_budgets.py on its tiny preset: the results' structure and a resume that
redoes nothing (about 4 minutes of searches and trainings on 2 cores: slow)."""

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow


def test_many_budgets_tiny_and_resume(tmp_path):
    out, results = tmp_path / "out", tmp_path / "mb.json"
    cmd = [sys.executable, str(REPO / "bench" / "many_budgets.py"), "--preset=tiny",
           f"--out={out}", f"--results={results}"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=REPO)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    result = json.loads(results.read_text())
    assert result["preset"] == "tiny" and len(result["budgets"]) == 2
    lo, hi = result["range_ms"]
    for row in result["budgets"]:
        assert lo <= row["budget_ms"] <= hi
        for kind in ("decoded", "dedicated"):
            assert 0.0 <= row[kind]["top1"] <= 100.0 and row[kind]["steps"] == 3
            assert lo <= row[kind]["predicted_ms"] <= hi
        assert row["delta_top1"] == pytest.approx(row["decoded"]["top1"] - row["dedicated"]["top1"])
    assert "| Budget ms |" in results.with_suffix(".md").read_text()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "] search at" not in again.stdout and "] training " not in again.stdout  # all reused
    assert json.loads(results.read_text())["budgets"] == result["budgets"]
    # more training seeds: only the new trainings run, and top-1 becomes their mean
    more = subprocess.run(cmd + ["--train_seeds=0,1"], capture_output=True, text=True,
                          timeout=1500, cwd=REPO)
    assert more.returncode == 0, more.stdout[-3000:] + more.stderr[-3000:]
    assert "] search at" not in more.stdout and "_trainseed1" in more.stdout
    two = json.loads(results.read_text())
    assert two["train_seeds"] == [0, 1]
    for row, old in zip(two["budgets"], result["budgets"]):
        by_seed = row["decoded"]["top1_by_seed"]
        assert sorted(by_seed) == ["0", "1"] and by_seed["0"] == old["decoded"]["top1"]
        assert row["decoded"]["top1"] == pytest.approx((by_seed["0"] + by_seed["1"]) / 2)
    assert two["summary"]["train_seed_spread_max"] >= two["summary"]["train_seed_spread_mean"] >= 0
    # the searches in OUT were made with seed 0: another search seed is refused
    other = subprocess.run(cmd + ["--seed=1"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert other.returncode != 0 and "give another --out" in other.stderr, other.stderr[-2000:]
