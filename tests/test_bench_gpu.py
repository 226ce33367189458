"""bench/gpu_run.py, the prepared GPU benchmark, on its tiny preset on a CPU (JAX backend).

The run goes through every part as it would on the GPU: search_cost.py (the smoke
space, bf16 and fp32), the timm/PyTorch peer (not installed here: a recorded skip),
the CIFAR-10 search and training CLIs on a few of the shared JPEGs. search_cost.py
runs with TensorFlow made unimportable, as on the GPU machine.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = [
    pytest.mark.slow,  # several JAX compiles: ~3-6 minutes on 2 CPU cores
    pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed"),
]

PARTS = ("search_cost_bf16", "timm", "cifar_search", "cifar_train", "search_cost_fp32")
BLOCKED = ("tensorflow", "tensorflow_datasets")


def _jax_env(tmp_path, block_tf: bool) -> dict:
    path = [str(REPO), os.environ.get("PYTHONPATH", "")]
    if block_tf:  # packages that shadow TensorFlow and refuse to import
        shadow = tmp_path / "no_tensorflow"
        for name in BLOCKED:
            (shadow / name).mkdir(parents=True)
            (shadow / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked')\n")
        path.insert(0, str(shadow))
    return dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
                PYTHONPATH=os.pathsep.join(p for p in path if p))


def test_search_cost_tiny_without_tensorflow(tmp_path):
    out = tmp_path / "sc.json"
    r = subprocess.run(
        [sys.executable, str(REPO / "bench" / "search_cost.py"), "--preset=tiny",
         "--variants=single_path,searched_net", "--steps=2", "--warmup=0", "--bf16",
         f"--json={out}"],
        env=_jax_env(tmp_path, block_tf=True), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["backend"] == "jax" and report["complete"] is True
    assert report["errors"] == {}, report["errors"]
    assert report["variants_done"] == ["single_path", "searched_net"]
    assert report["step_ms"]["single_path"] > 0 and report["step_ms"]["searched_net"] > 0
    assert report["config"]["bf16"] is True
    # The smoke space: 4 searchable layers, 2 of them skippable -> 2*3 + 2*2 thresholds.
    assert report["expected_sp_minus_fixed_params"] == 10


def test_gpu_run_tiny(tmp_path, shared_dir):
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_run.py"), "--preset=tiny", f"--out={out}",
         f"--scratch={tmp_path / 'scratch'}",
         f"--tarball={shared_dir / 'data' / 'cifar10_train_jpg.tar.gz'}"],
        env=_jax_env(tmp_path, block_tf=False), capture_output=True, text=True, timeout=1500)
    report = json.loads((out / "gpu_run.json").read_text())
    parts = report["parts"]
    detail = json.dumps({k: {"status": v.get("status"), "reason": v.get("reason")}
                         for k, v in parts.items()}, indent=1)
    assert r.returncode == 0, detail + r.stderr[-3000:]
    assert report["format"] == "spnas.gpu_run/1" and report["complete"] is True
    assert list(parts) == list(PARTS)
    for name, part in parts.items():
        # Every part has figures, or says why not.
        assert part["status"] in ("ok", "skipped"), (name, part)
        if part["status"] == "ok":
            assert part["images_per_s"] and all(v > 0 for v in part["images_per_s"].values())
        else:
            assert part["reason"]
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("timm") is None:
        assert parts["timm"]["status"] == "skipped" and "not installed" in parts["timm"]["reason"]
    assert set(parts["search_cost_bf16"]["images_per_s"]) == {"single_path", "multi_path"}
    assert parts["search_cost_bf16"]["precision"] == "mixed_bfloat16"
    assert parts["search_cost_fp32"]["precision"] == "float32"
    assert parts["cifar_search"]["data"]["images"] == 120  # 12 per class
    assert (out / "cifar_search" / "arch.json").is_file()
    assert (out / "cifar_train" / "train_report.json").is_file()

    s = report["summary"]
    assert s["mp_over_sp_step_time"]["bf16"] > 0
    proj = s["projection_8_epoch_search"]
    assert proj["valid"] is False and "NOT a projection" in proj["note"]  # CPU, smoke space
    assert proj["images"] == 8 * 1_281_167 and proj["paper_tpu_hours"] == 30.0
    assert proj["paper_wall_hours"] == 3.75 and "Sec. 4" in proj["paper_source"]
    assert s["spnas_jax_over_timm_torch_step_time"]["searched_net_fp32"] is None  # no timm
    md = (out / "gpu_run.md").read_text()
    assert "| search_cost_bf16 | ok |" in md and "| timm | skipped |" in md
    assert (out / "logs" / "cifar_search.log").is_file()
