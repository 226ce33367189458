"""Same seed, same result: searches and trainings are reproducible, also under CPU load
and across a resume.

Each run is a fresh process (as a user runs it): the smoke search (6 layers, 8 steps)
and a 4-step training of a two-stage net. "Under load" runs two busy processes beside
the run, so TensorFlow's threads are scheduled differently from the quiet run.
"""

import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from spnas.configs_path import default_config_path

SMOKE = default_config_path("smoke.py")
TINY_STAGES = "ds_r1_k3_s1_c16,ir_r1_k3_s2_e3_c24"
TRAIN_FLAGS = (
    f"--arch={TINY_STAGES}",
    "--config.schedule.batch_size=16",
    "--config.schedule.train_steps=4",
    "--config.execution.checkpoint_every=2",
    "--config.execution.log_every=1",
    "--config.schedule.bn_recalibration_batches=2",
    "--config.schedule.eval_batch_size=179",
)


def _busy(seconds: float) -> None:
    end = time.time() + seconds
    x = 0
    while time.time() < end:
        x += 1


@contextlib.contextmanager
def _cpu_load(processes: int = 2, seconds: float = 240):
    procs = [multiprocessing.Process(target=_busy, args=(seconds,), daemon=True)
             for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
            p.join()


def _run(module: str, workdir, *flags, load: bool = False):
    cmd = [sys.executable, "-m", module, f"--workdir={workdir}", *flags]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    with _cpu_load() if load else contextlib.nullcontext():
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _search(workdir, *flags, load: bool = False) -> dict:
    _run("spnas.search.main", workdir, f"--config={SMOKE}", *flags, load=load)
    with open(workdir / "arch.json") as f:
        return json.load(f)


def _h5_arrays(path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def _assert_same_arrays(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    different = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not different, f"{len(different)} arrays differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def quiet_search(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("quiet")
    return workdir, _search(workdir)


def test_search_same_seed_under_load_is_identical(quiet_search, tmp_path):
    workdir, quiet = quiet_search
    loaded = _search(tmp_path, load=True)
    assert loaded["layers"] == quiet["layers"]
    assert loaded["predicted_ms"] == quiet["predicted_ms"]
    # Not only the decoded layers: every norm and threshold, to the last bit.
    assert json.dumps(loaded["decisions"]) == json.dumps(quiet["decisions"])
    _assert_same_arrays(_h5_arrays(tmp_path / "checkpoints" / "ckpt.weights.h5"),
                        _h5_arrays(workdir / "checkpoints" / "ckpt.weights.h5"))
    rep = loaded["reproducibility"]
    assert rep["seed"] == 0 and rep["deterministic"] is True and rep["replicas"] == 1
    assert rep["backend"] == "tensorflow" and rep["versions"]["tensorflow"]
    assert {"margin5x5", "margin100c", "margin50c"} <= set(loaded["decisions"][0])


def _forget_run(workdir) -> None:
    """The short run stands in for a run killed at its last checkpoint: forgetting its
    run record (which would refuse the longer config) lets the full config continue it."""
    os.remove(os.path.join(workdir, "run.json"))


def test_resumed_search_equals_uninterrupted(quiet_search, tmp_path):
    workdir, quiet = quiet_search
    # Stop after the first checkpoint (step 4 of 8: inside the lambda warm-up, so the
    # indicator-dropout draws must continue where they were), then resume.
    _search(tmp_path, "--config.schedule.train_steps=4")
    _forget_run(tmp_path)
    resumed = _search(tmp_path)
    assert resumed["reproducibility"]["resumed_from_step"] == 4
    assert resumed["layers"] == quiet["layers"]
    assert (resumed["search"]["supernet_val_accuracy_ema"]
            == quiet["search"]["supernet_val_accuracy_ema"])
    assert resumed["predicted_ms"] == quiet["predicted_ms"]
    assert json.dumps(resumed["decisions"]) == json.dumps(quiet["decisions"])
    _assert_same_arrays(_h5_arrays(tmp_path / "checkpoints" / "ckpt.weights.h5"),
                        _h5_arrays(workdir / "checkpoints" / "ckpt.weights.h5"))


def test_other_seed_gives_other_weights(quiet_search, tmp_path):
    """The equality above is not vacuous: the seed does reach the weights."""
    workdir, quiet = quiet_search
    other = _search(tmp_path, "--config.seed=1")
    assert json.dumps(other["decisions"]) != json.dumps(quiet["decisions"])


def test_training_same_seed_under_load_and_resumed_is_identical(tmp_path):
    quiet, loaded, resumed = tmp_path / "quiet", tmp_path / "loaded", tmp_path / "resumed"
    _run("spnas.train.main", quiet, *TRAIN_FLAGS)
    _run("spnas.train.main", loaded, *TRAIN_FLAGS, load=True)
    _run("spnas.train.main", resumed, *TRAIN_FLAGS[:2], "--config.schedule.train_steps=2",
         *TRAIN_FLAGS[3:])
    _forget_run(resumed)
    _run("spnas.train.main", resumed, *TRAIN_FLAGS)
    ckpt = os.path.join("train_checkpoints", "ckpt.weights.h5")
    reference = _h5_arrays(quiet / ckpt)
    for other in (loaded, resumed):
        _assert_same_arrays(_h5_arrays(other / ckpt), reference)
    with open(quiet / "train_report.json") as f:
        a = json.load(f)
    with open(resumed / "train_report.json") as f:
        b = json.load(f)
    assert a["top1"] == b["top1"] and a["eval_loss"] == b["eval_loss"]
    assert b["reproducibility"]["resumed_from_step"] == 2


def test_data_order_does_not_depend_on_decode_threads():
    """Shuffle, crops and flips come from the seed and the position in the stream,
    not from which of the parallel decode workers ran first."""
    import tensorflow as tf

    from spnas.data import build_dataset

    def first_batches(threads: int, skip: int = 0):
        ds, _ = build_dataset("embedded", "train", 16, 32, training=True, augment="flip",
                              seed=3, skip_batches=skip)
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        return [x.numpy() for x, _ in ds.with_options(options).take(4)]

    one, four = first_batches(1), first_batches(4)
    assert all(np.array_equal(a, b) for a, b in zip(one, four))
    # A stream started at batch 2 (a resume) continues the same sequence.
    later = first_batches(4, skip=2)
    assert all(np.array_equal(a, b) for a, b in zip(one[2:], later[:2]))


def test_resumed_target_search_equals_uninterrupted(tmp_path):
    """Latency-target mode: the PI controller's last error is checkpointed too, so a
    run resumed after the warm-up sets the same lambdas as an uninterrupted one."""
    flags = ("--config.target_ms=0.2", "--config.schedule.steps_per_epoch=8",
             "--config.execution.checkpoint_every=4")  # 16 steps, warm-up 10
    whole = _search(tmp_path / "whole", *flags)
    _search(tmp_path / "cut", *flags, "--config.schedule.train_steps=12")
    _forget_run(tmp_path / "cut")
    resumed = _search(tmp_path / "cut", *flags)
    assert resumed["reproducibility"]["resumed_from_step"] == 12
    assert resumed["search"]["lambda"] == whole["search"]["lambda"] != 0.0
    assert json.dumps(resumed["decisions"]) == json.dumps(whole["decisions"])
    assert resumed["layers"] == whole["layers"] and resumed["target"] == whole["target"]
