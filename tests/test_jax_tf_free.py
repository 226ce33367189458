"""spnas-search and spnas-train on the JAX backend, with TensorFlow impossible to import.

A directory that shadows ``tensorflow`` and ``tensorflow_datasets`` with packages
that raise ImportError goes first on PYTHONPATH, so any TensorFlow import on the
JAX path (a stray module-level import, tf.summary, tf.data) fails the run. The
input then is the Pillow/numpy PyDataset, TensorBoard scalars come from the
``tensorboard`` package's writer, checkpoints from Keras.

Also: data parallelism over two virtual CPU devices matches one device.
These start several JAX processes (about 1 minute each on 2 cores) and run in
the CI step ``pytest --run-multiprocess -m multiprocess``.
"""

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from spnas.arch.handoff import load_arch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKED = ("tensorflow", "tensorflow_datasets")

pytestmark = [
    pytest.mark.multiprocess,
    pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed"),
]


@pytest.fixture(scope="module")
def no_tf_env(tmp_path_factory):
    """The environment of a JAX process in which ``import tensorflow`` fails."""
    shadow = tmp_path_factory.mktemp("no_tensorflow")
    for name in BLOCKED:
        (shadow / name).mkdir()
        (shadow / name / "__init__.py").write_text(
            f"raise ImportError('{name} is blocked: the JAX path must not import it')\n")
    path = os.pathsep.join([str(shadow), ROOT, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=path,
                SPNAS_CACHE_DIR=str(tmp_path_factory.mktemp("cache")))


def _cli(module, config, workdir, *overrides):
    return [sys.executable, "-m", module, f"--config={os.path.join(ROOT, config)}",
            f"--workdir={workdir}", *overrides]


def _run(cmd, env, timeout=900):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "Traceback" not in r.stderr, r.stderr[-4000:]
    return r


def _log(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


SEARCH = ("--config.schedule.steps_per_epoch=6", "--config.execution.checkpoint_every=4")


def test_search_train_resume_without_tensorflow(tmp_path, no_tf_env):
    # The shadow really blocks TensorFlow in that environment.
    r = subprocess.run([sys.executable, "-c", "import tensorflow"], env=no_tf_env,
                       capture_output=True, text=True)
    assert r.returncode != 0 and "blocked" in r.stderr

    # Search, killed after its first checkpoint, then resumed by the same command.
    cmd = _cli("spnas.search.main", "configs/smoke.py", tmp_path, *SEARCH)
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=no_tf_env)
        meta = tmp_path / "checkpoints" / "ckpt.json"
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if meta.exists() and json.loads(meta.read_text())["step"] >= 4:
                break
            time.sleep(0.05)
        running = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert running, "search ended before it could be killed:\n" + (tmp_path / "killed.log").read_text()[-3000:]
    killed_at = json.loads(meta.read_text())["step"]
    assert 4 <= killed_at < 12 and not (tmp_path / "arch.json").exists()
    _run(cmd, no_tf_env)
    arch = load_arch(str(tmp_path / "arch.json"))
    assert arch["search"]["steps"] == 12
    assert arch["reproducibility"]["backend"] == "jax"
    assert arch["reproducibility"]["resumed_from_step"] == killed_at
    steps = [int(row["step"]) for row in _log(tmp_path / "search_log.csv")]
    assert steps == list(range(13)), steps  # each step once, none lost to the kill
    assert (tmp_path / "fig4_ce_runtime.png").stat().st_size > 10_000
    assert any(f.startswith("events.out.tfevents")
               for _, _, files in os.walk(tmp_path / "tb") for f in files)

    # Training of the searched net (the workdir's arch.json).
    r = _run(_cli("spnas.train.main", "configs/train_default.py", tmp_path,
                  "--config.schedule.train_steps=6", "--config.schedule.batch_size=16",
                  "--config.schedule.bn_recalibration_batches=2",
                  "--config.execution.checkpoint_every=3", "--config.execution.log_every=1"),
             no_tf_env)
    report = json.loads((tmp_path / "train_report.json").read_text())
    assert report["steps"] == 6 and report["arch"]["sha256"] == arch_sha(tmp_path)
    assert report["reproducibility"]["backend"] == "jax"
    assert [int(row["step"]) for row in _log(tmp_path / "train_log.csv")] == list(range(1, 7))
    assert (tmp_path / "model.keras").stat().st_size > 10_000
    assert not [f for f in os.listdir(tmp_path) if "partial" in f]
    assert "top-1" in r.stdout


def arch_sha(workdir):
    import hashlib

    return hashlib.sha256((workdir / "arch.json").read_bytes()).hexdigest()


def test_data_parallel_two_devices_matches_one(tmp_path, no_tf_env):
    """keras.distribution.DataParallel over 2 virtual CPU devices against 1 device:
    the same steps, the same decisions and architecture, the same validation accuracy,
    and per-step losses that agree to float32 rounding at first (1e-5 relative over the
    first two steps) and stay within 2e-3 (the gradient all-reduce sums in another
    order; in one run the differences grew from 1e-7 at step 2 to 5e-4 at step 6, when
    lambda switches on)."""
    env = dict(no_tf_env, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    runs = {}
    for strategy in ("auto", "data_parallel"):
        workdir = tmp_path / strategy
        _run(_cli("spnas.search.main", "configs/smoke.py", workdir,
                  f"--config.execution.strategy={strategy}"), env)
        runs[strategy] = (load_arch(str(workdir / "arch.json")), _log(workdir / "search_log.csv"))
    (one, one_log), (two, two_log) = runs["auto"], runs["data_parallel"]
    assert one["search"]["replicas"] == 1 and two["search"]["replicas"] == 2
    assert [r["step"] for r in one_log] == [r["step"] for r in two_log]
    for a, b in zip(one_log, two_log):
        rel = 1e-5 if int(a["step"]) <= 2 else 2e-3
        for key in ("loss", "ce", "runtime_ms", "lambda"):
            if a[key]:
                assert float(b[key]) == pytest.approx(float(a[key]), rel=rel, abs=1e-6), (a, b)
        assert {k: v for k, v in a.items() if k.startswith("L")} == \
               {k: v for k, v in b.items() if k.startswith("L")}
    assert one["layers"] == two["layers"]
    assert two["search"]["supernet_val_images"] == one["search"]["supernet_val_images"] == 179
    # Padded evaluation batches (179 = 11 x 16 + 3) count every image once.
    assert two["search"]["supernet_val_accuracy_ema"] == pytest.approx(
        one["search"]["supernet_val_accuracy_ema"], abs=1.01 / 179)
