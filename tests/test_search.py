"""spnas-search end to end: smoke search, resume after SIGKILL, 2 replicas, bad input."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from spnas.arch.handoff import load_arch
from spnas.configs_path import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cmd(workdir, *overrides, config="configs/smoke.py"):
    return [sys.executable, "-m", "spnas.search.main", f"--config={os.path.join(ROOT, config)}",
            f"--workdir={workdir}", *overrides]


def _run(workdir, *overrides, timeout=600, **kw):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(_cmd(workdir, *overrides, **kw), capture_output=True, text=True,
                          timeout=timeout, env=env)


def _log_steps(workdir):
    with open(os.path.join(workdir, "search_log.csv"), newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def test_embedded_default_smoke(tmp_path):
    """The embedded default's full 22-layer space, a few steps, decodes a valid arch.json."""
    r = _run(tmp_path, "--config.schedule.batch_size=16", "--config.schedule.steps_per_epoch=2",
             "--config.schedule.epochs=2", config="configs/default.py")
    assert r.returncode == 0, r.stderr[-3000:]
    arch = load_arch(str(tmp_path / "arch.json"))
    assert len(arch["layers"]) == 22 and arch["latency_table"]["device"]
    assert arch["search"]["steps"] == 4


def test_smoke_search_in_process(tmp_path, capsys):
    from spnas.search.run import run

    config = load_config("smoke.py")
    arch = run(config, str(tmp_path))
    out = capsys.readouterr().out
    loaded = load_arch(str(tmp_path / "arch.json"))
    assert loaded["layers"] == arch["layers"] and len(loaded["layers"]) == 6
    assert loaded["predicted_ms"] > 0 and loaded["latency_table"]["sha256"]
    assert loaded["search"]["steps"] == 8
    steps = _log_steps(tmp_path)
    assert steps == list(range(0, 9))
    with open(tmp_path / "search_log.csv") as f:
        header = f.readline().strip().split(",")
    for col in ("ce", "runtime_ms", "lambda", "lr", "L1_d5x5", "L4_d50c"):
        assert col in header
    # lambda is 0 during the warm-up and set afterwards; keep_prob 0.6 then 1.
    rows = list(csv.DictReader(open(tmp_path / "search_log.csv")))
    warm = loaded["search"]["warmup_steps"]
    assert all(float(r["lambda"]) == 0.0 for r in rows if int(r["step"]) < warm)
    assert float(rows[-1]["lambda"]) == pytest.approx(config.lambda_)
    assert float(rows[0]["keep_prob"]) == pytest.approx(0.6) and float(rows[-1]["keep_prob"]) == 1.0
    for fig in ("fig4_ce_runtime.png", "fig6_kernel_std.png"):
        assert (tmp_path / fig).stat().st_size > 10_000
    assert "arch.json: " in out and "predicted latency" in out
    # spnas-report redraws the figures from the files.
    os.remove(tmp_path / "fig4_ce_runtime.png")
    r = subprocess.run([sys.executable, "-m", "spnas.search.report_main", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / "fig4_ce_runtime.png").exists()


def test_resume_after_sigkill(tmp_path):
    overrides = ("--config.schedule.steps_per_epoch=12", "--config.execution.checkpoint_every=4")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(_cmd(tmp_path, *overrides), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    meta = tmp_path / "checkpoints" / "ckpt.json"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if meta.exists() and json.loads(meta.read_text())["step"] >= 4:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "search finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(meta.read_text())["step"]
    assert killed_at < 24 and not (tmp_path / "arch.json").exists()
    r = _run(tmp_path, *overrides)
    assert r.returncode == 0, r.stderr[-3000:]
    arch = load_arch(str(tmp_path / "arch.json"))
    assert arch["search"]["steps"] == 24
    steps = _log_steps(tmp_path)
    assert len(steps) == len(set(steps)) and max(steps) == 24


def test_two_replicas_mirrored(tmp_path):
    r = _run(tmp_path, "--config.execution.strategy=mirrored",
             "--config.execution.cpu_replicas=2")
    assert r.returncode == 0, r.stderr[-3000:]
    arch = load_arch(str(tmp_path / "arch.json"))
    assert arch["search"]["replicas"] == 2


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        ({"data.dataset": "no_such_dataset"}, "DatasetError", "no_such_dataset"),
        ({"data.dataset": "imagenet2012", "data.manual_dir": "/nonexistent/imagenet"},
         "DatasetError",
         "/nonexistent/imagenet"),
        ({"latency_table": "/nonexistent/table.json"}, "FileNotFoundError",
         "No shipped latency table"),
        ({"target_ms": 1e6}, "SearchConfigError", "outside the reachable range"),
        ({"latency_table": "embedded_cpu"}, "LatencyTableError",
         "20 searchable layers but the supernet has 4"),
    ],
)
def test_bad_input_named_before_training(tmp_path, overrides, error, message):
    from spnas.search.run import run

    config = load_config("smoke.py")
    config.update_from_flattened_dict(overrides)
    with pytest.raises(Exception, match=message) as info:
        run(config, str(tmp_path / "w"))
    assert type(info.value).__name__ == error


def test_pixel1_table_rejected_for_32px_space(tmp_path, pixel1_table_path):
    """Also checks the CLI path: one line on stderr, exit code 2, no traceback."""
    r = _run(tmp_path, f"--config.latency_table={pixel1_table_path}", timeout=300)
    assert r.returncode == 2
    assert "spnas-search: error: " in r.stderr and "Traceback" not in r.stderr
    assert "20 searchable layers but the supernet has 4" in r.stderr


def test_unwritable_workdir(tmp_path):
    from spnas.search.run import run

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(PermissionError, match="not writable"):
        run(load_config("smoke.py"), str(blocker / "sub"))


def test_nan_loss_stops_with_clear_error(tmp_path):
    from spnas.search.run import run
    from spnas.train.runner import TrainingDivergedError

    config = load_config("smoke.py")
    config.update_from_flattened_dict({"schedule.lr_per_256": 1e30,
                                       "execution.checkpoint_every": 1})
    with pytest.raises(TrainingDivergedError, match="diverged.*(kept|no checkpoint)"):
        run(config, str(tmp_path))
    assert not (tmp_path / "arch.json").exists()


def test_window_means_recover_per_window_values_from_running_means():
    """Fig. 4's CE: the logged value is the mean of its window, never a running mean
    that resets at each fit chunk."""
    import numpy as np

    from spnas.search.callbacks import WindowMeans

    rng = np.random.default_rng(0)
    values = rng.normal(2.0, 0.5, size=40)
    w = WindowMeans(("ce",))
    got = []
    for epoch_start in (0, 20):  # two fit chunks: Keras restarts its running means
        w.reset()
        for b in range(4, 20, 5):  # the logger reads every 5th step
            running = values[epoch_start:epoch_start + b + 1].mean()
            out = w.update(b, {"ce": running, "other": 1.0})
            got.append(out["ce"])
            assert set(out) == {"ce"}
    want = values.reshape(8, 5).mean(axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-9)
