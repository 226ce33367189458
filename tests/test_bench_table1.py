"""bench/table1.py end to end on a tiny setting: 300 real CIFAR-10 images, seconds-scale
search and training (the ``tiny`` preset), then the table's structure and a resume."""

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO
from tests.test_data import _extract_subset

# Several minutes of subprocesses: in CI's multi-process step, not the default suite.
pytestmark = pytest.mark.multiprocess

ROW_KEYS = {"family": str, "name": str, "seed": int, "top1": float, "measured_ms": float,
            "params": int}


@pytest.fixture(scope="module")
def table1_run(shared_dir, tmp_path_factory):
    data = _extract_subset(shared_dir / "data" / "cifar10_train_jpg.tar.gz",
                           tmp_path_factory.mktemp("cifar300"), 30)
    out = tmp_path_factory.mktemp("table1")
    cmd = [sys.executable, str(REPO / "bench" / "table1.py"), "--preset=tiny",
           f"--train=folder:{data}", f"--out={out}"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    return out, first.stdout, again.stdout


def test_table1_json_structure(table1_run):
    out, _, _ = table1_run
    with open(out / "table1.json") as f:
        result = json.load(f)
    assert result["preset"] == "tiny" and len(result["targets"]) == 1
    target = result["targets"][0]
    assert target["target_ms"] > 0
    families = [r["family"] for r in target["rows"]]
    assert sorted(families) == ["mnasnet", "mobilenetv2", "random", "searched"]
    for row in target["rows"]:
        for key, kind in ROW_KEYS.items():
            assert isinstance(row[key], kind), (key, row)
        assert 0.0 <= row["top1"] <= 100.0 and row["measured_ms"] > 0
        if row["family"] in ("searched", "random"):
            assert row["predicted_ms"] > 0
        else:
            assert row["predicted_ms"] is None and row["width"] == 0.35
        assert row["test_images"] == 30  # 10 % of 300 held out; never trained on
    random_row = next(r for r in target["rows"] if r["family"] == "random")
    assert 0.94 * target["target_ms"] <= random_row["predicted_ms"] <= target["target_ms"]
    assert set(target["verdict"]) >= {"searched_top1", "random", "mobilenetv2", "mnasnet"}
    dyn = target["search_dynamics"]
    assert dyn["steps"] == 8 and dyn["indicators"] == 12  # the smoke space: 4 searchable x 3
    ic = result["init_check"]
    assert ic["target_ms"] == target["target_ms"] and 0 <= ic["differing_layers"] <= 4
    assert set(ic["dynamics"]) == {"fan_in", "fan_out"}
    split = json.loads((out / "data" / "split.json").read_text())
    assert (split["fit_images"], split["test_images"]) == (270, 30)


def test_table1_markdown_and_png(table1_run):
    out, _, _ = table1_run
    md = (out / "table1.md").read_text()
    assert "| Model | Family | Top-1 (%) | Predicted ms | Measured ms | Params | MMACs" in md
    assert md.count("## Target") == 1 and "Searched net:" in md
    assert "Search dynamics:" in md and "## Superkernel init" in md
    assert (out / "table1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table1_resume_reuses_finished_work(table1_run):
    _, first, again = table1_run
    assert first.count("spnas-train:") == 4 and "spnas-search:" in first
    assert "spnas-train:" not in again and "spnas-search:" not in again
    assert "wrote" in again
