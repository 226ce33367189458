"""MultiWorkerMirroredStrategy for real: two local worker processes under ``TF_CONFIG``.

``--config.execution.strategy=multiworker`` on a cluster of two workers on
loopback ports (worker 0 is the chief: there is no separate chief task). The
smoke search checks that both processes finish and that only the chief writes
(the other worker's own work directory stays empty). The training shares one
``--workdir`` between the workers, as a filesystem all hosts see: killed with
SIGKILL after its first checkpoint, the same command resumes both workers from
the chief's checkpoint to the same final step, and every CSV row is there once.
Each worker's stdout and stderr go to files, shown in the assertion messages.

Opt-in (each TensorFlow start costs 5-10 s on 2 busy cores; about 2.5 minutes):
  python -m pytest -q --run-multiprocess -m multiprocess tests/test_multiworker.py
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO

pytestmark = [
    pytest.mark.multiprocess,
    pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                       reason="tf.distribute needs TensorFlow"),
]

WORKERS = 2
TINY_STAGES = "ds_r1_k3_s1_c16,ir_r1_k3_s2_e3_c24"  # as tests/test_train.py
TRAIN_FLAGS = (  # graph mode: its steps are fast once the tiny net's graph is built
    "--config.schedule.batch_size=16",  # 8 per worker
    "--config.schedule.bn_recalibration_batches=1",
    "--config.execution.log_every=1",
)


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all bound at once, so they differ)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Cluster:
    """``WORKERS`` processes of one command, each with its task in ``TF_CONFIG``."""

    def __init__(self, logdir, name: str, argv):
        """``argv``: the command, or a function of the worker index returning it."""
        hosts = [f"127.0.0.1:{p}" for p in _free_ports(WORKERS)]
        self.logs = []
        self.procs = []
        os.makedirs(logdir, exist_ok=True)
        for index in range(WORKERS):
            tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
            env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TF_CPP_MIN_LOG_LEVEL="2",
                       KERAS_BACKEND="tensorflow")
            out = os.path.join(logdir, f"{name}-worker{index}.out")
            err = os.path.join(logdir, f"{name}-worker{index}.err")
            self.logs.append((out, err))
            with open(out, "w") as fo, open(err, "w") as fe:
                command = argv(index) if callable(argv) else argv
                self.procs.append(subprocess.Popen(command, stdout=fo, stderr=fe, env=env,
                                                   cwd=REPO))

    def running(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def wait(self, timeout: float) -> list[int | None]:
        """Return codes (None: killed at the timeout). A worker that fails leaves the
        other waiting in a collective for ever, so the rest get 20 s, then a kill."""
        deadline = time.time() + timeout
        while time.time() < deadline and any(p.poll() is None for p in self.procs):
            if any(p.poll() not in (None, 0) for p in self.procs):
                deadline = min(deadline, time.time() + 20)
            time.sleep(0.2)
        codes = [p.poll() for p in self.procs]
        self.kill()
        return codes

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()

    def report(self, tail: int = 6000) -> str:
        """Every worker's return code, stdout and the end of its stderr."""
        parts = []
        for index, (p, (out, err)) in enumerate(zip(self.procs, self.logs)):
            parts.append(f"--- worker {index}: rc={p.poll()} ({out}) stdout:\n{_read(out)[-tail:]}")
            parts.append(f"--- worker {index} stderr ({err}):\n{_read(err)[-tail:]}")
        return "\n".join(parts)

    def finish(self, timeout: float = 300) -> None:
        codes = self.wait(timeout)
        assert codes == [0] * WORKERS, f"return codes {codes}\n{self.report()}"


def _read(path) -> str:
    with open(path, errors="replace") as f:
        return f.read()


def _csv_steps(path) -> list[int]:
    with open(path, newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def _search(workdir, *flags) -> list[str]:
    return [sys.executable, "-m", "spnas.search.main", f"--config={REPO / 'configs' / 'smoke.py'}",
            f"--workdir={workdir}", "--config.execution.strategy=multiworker", *flags]


def _train(workdir, *flags) -> list[str]:
    return [sys.executable, "-m", "spnas.train.main",
            f"--config={REPO / 'configs' / 'train_default.py'}", f"--workdir={workdir}",
            "--config.execution.strategy=multiworker", *TRAIN_FLAGS, *flags]


def _stray_files(workdir) -> list[str]:
    """Temporary files of the atomic writers left behind (spnas/fileio.py, the
    checkpoint's and model.keras' partial files, figures' .tmp.png)."""
    return [os.path.join(d, f) for d, _, files in os.walk(workdir) for f in files
            if "partial" in f or ".tmp" in f or f.startswith(".write_probe")]


def test_search_on_two_workers(tmp_path):
    from spnas.arch.handoff import load_arch

    # Each worker gets its own work directory here, so that "the other worker writes
    # nothing" is a fact to check (its directory stays empty) rather than a race that
    # may or may not show in a shared one. A fresh search restores nothing, so the
    # worker does not need to see the chief's files (the resume test below shares them).
    workdirs = [tmp_path / "run", tmp_path / "worker1"]
    cluster = Cluster(tmp_path / "logs", "search", lambda index: _search(workdirs[index]))
    cluster.finish()
    why = cluster.report()
    workdir = workdirs[0]
    arch = load_arch(str(workdir / "arch.json"))
    assert arch["search"]["steps"] == 8, why  # smoke: 2 epochs of 4 steps
    assert arch["search"]["replicas"] == WORKERS, why
    assert _csv_steps(workdir / "search_log.csv") == list(range(9)), why  # step 0: the start
    assert json.loads((workdir / "checkpoints" / "ckpt.json").read_text())["step"] == 8, why
    for name in ("checkpoints/ckpt.weights.h5", "kernel_std.json", "fig4_ce_runtime.png",
                 "fig6_kernel_std.png"):
        assert (workdir / name).exists(), f"{name} missing\n{why}"
    assert not _stray_files(workdir), why
    assert list(workdirs[1].iterdir()) == [], f"worker 1 wrote files\n{why}"


def test_train_on_two_workers_resumes_after_sigkill(tmp_path):
    import keras
    import numpy as np

    total = 60
    workdir = tmp_path / "run"
    flags = (f"--arch={TINY_STAGES}", f"--config.schedule.train_steps={total}",
             "--config.execution.checkpoint_every=20")
    first = Cluster(tmp_path / "logs", "train-killed", _train(workdir, *flags))
    meta = workdir / "train_checkpoints" / "ckpt.json"
    deadline = time.time() + 300
    while time.time() < deadline and first.running() and not meta.exists():
        time.sleep(0.05)
    alive = first.running()
    first.kill()  # both workers, SIGKILL
    assert alive, f"training ended (or failed) before it could be killed\n{first.report()}"
    killed_at = json.loads(meta.read_text())["step"]
    assert 0 < killed_at < total and not (workdir / "train_report.json").exists(), first.report()

    resumed = Cluster(tmp_path / "logs", "train-resumed", _train(workdir, *flags))
    resumed.finish()
    why = resumed.report()
    report = json.loads((workdir / "train_report.json").read_text())
    assert report["steps"] == total, why
    assert report["resumed_from_step"] >= killed_at, why
    assert report["replicas"] == WORKERS, why
    # top-1 is a count over all the evaluation images (both workers' halves summed).
    hits = report["top1"] * report["eval_images"]
    assert hits == pytest.approx(round(hits), abs=1e-3), why
    assert _csv_steps(workdir / "train_log.csv") == list(range(1, total + 1)), why
    assert json.loads(meta.read_text())["step"] == total, why
    assert not _stray_files(workdir), why
    model = keras.saving.load_model(str(workdir / "model.keras"), compile=False)
    out = np.asarray(model(np.zeros((2, 32, 32, 3), np.float32), training=False))
    assert out.shape == (2, 10) and np.all(np.isfinite(out)), why
