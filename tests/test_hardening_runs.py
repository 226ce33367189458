"""Runs that cannot corrupt their work directory (spnas/workdir.py, spnas/train/runner.py).

The lock (a second run is refused naming the first; a stale lock is taken over),
the run record (a rerun continues the same run, returns a finished one untouched
or is refused), logs keyed by step, temporary files of killed runs, divergence
caught before anything reads the model, SIGINT at a step boundary, damaged
checkpoints. Tiny runs: the smoke search and a 4-variable regression net.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from spnas import workdir as wd
from spnas.configs_path import load_config
from tests.helpers import REPO

SMOKE = str(REPO / "configs" / "smoke.py")


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _search_cmd(workdir, *overrides):
    return [sys.executable, "-m", "spnas.search.main", f"--config={SMOKE}",
            f"--workdir={workdir}", *overrides]


def _log_steps(path) -> list[int]:
    with open(path, newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def _error_lines(stderr: str, prog: str = "spnas-search") -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith(f"{prog}: ") and "note:" not in ln]


# --- the lock ------------------------------------------------------------------------------

HOLDER = ("import sys, time\nfrom spnas.workdir import locked\n"
          "with locked(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n")


def test_lock_refuses_a_live_run_and_takes_over_a_dead_one(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(wd.WorkdirBusy, match=rf"in use by pid {holder.pid} on host "):
            with wd.locked(tmp_path):
                pass
        info = json.loads((tmp_path / wd.LOCK_FILE).read_text())
        assert info["pid"] == holder.pid and "-c" in info["command"] and info["started"]
    finally:
        holder.kill()
        holder.wait()
    # Killed: its lock stays behind, and is taken over with one note.
    assert (tmp_path / wd.LOCK_FILE).exists()
    capsys.readouterr()
    with wd.locked(tmp_path):
        assert json.loads((tmp_path / wd.LOCK_FILE).read_text())["pid"] == os.getpid()
        with wd.locked(tmp_path):  # re-entrant: the pipeline's stages take it again
            pass
        assert (tmp_path / wd.LOCK_FILE).exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"pid {holder.pid} is no longer running" in err[0], err
    assert not (tmp_path / wd.LOCK_FILE).exists()  # released
    with pytest.raises(RuntimeError):  # released on exceptions too
        with wd.locked(tmp_path):
            raise RuntimeError("boom")
    assert not (tmp_path / wd.LOCK_FILE).exists()


def test_lock_of_another_host_says_how_to_remove_it(tmp_path):
    lock = tmp_path / wd.LOCK_FILE
    lock.write_text(json.dumps({"pid": 1, "host": socket.gethostname() + "-other",
                                "command": "spnas-search --workdir=x", "started": "then"}))
    with pytest.raises(wd.WorkdirBusy, match=r"cannot be checked from this host; if that run is "
                                             rf"really dead, delete {lock}"):
        with wd.locked(tmp_path):
            pass
    assert lock.exists()
    # An unreadable lock: being written by its owner if young, left by a crash if old.
    lock.write_text("")
    with pytest.raises(wd.WorkdirBusy, match="being locked"):
        with wd.locked(tmp_path):
            pass
    old = time.time() - 60
    os.utime(lock, (old, old))
    with wd.locked(tmp_path):
        pass
    assert not lock.exists()


def test_leftover_temporary_files_are_removed_when_the_lock_is_taken(tmp_path, capsys):
    leftovers = [".model.keras.4242.partial.keras", ".arch.json.k2j_x9ab.tmp",
                 ".write_probeab12cd34", "checkpoints/ckpt-partial.weights.h5",
                 "train_checkpoints/.ckpt.json.zz11yy22.tmp"]
    kept = ["arch.json", "model.keras", "checkpoints/ckpt.weights.h5", "notes.tmp.txt"]
    for name in leftovers + kept:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    with wd.locked(tmp_path):
        pass
    assert [n for n in leftovers if (tmp_path / n).exists()] == []
    assert all((tmp_path / n).exists() for n in kept)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "removed 5 temporary file(s)" in err[0], err


# --- the run record ------------------------------------------------------------------------


def test_run_record_continues_refuses_or_returns_the_finished_result(tmp_path, capsys):
    config = load_config("smoke.py").to_dict()
    first = wd.begin_stage(str(tmp_path), "search", config)
    assert not first.finished
    record = wd.read_record(str(tmp_path))["stages"]["search"]
    assert record["config"] == json.loads(json.dumps(config)) and record["started"]
    assert record["version"] and "git_commit" in record

    other = dict(config, lambda_=0.5)
    # Nothing to continue yet (no checkpoint): another config starts over, with a note.
    wd.begin_stage(str(tmp_path), "search", other, progress=0)
    assert "left nothing to continue" in capsys.readouterr().err
    assert wd.read_record(str(tmp_path))["stages"]["search"]["config"]["lambda_"] == 0.5
    # A checkpoint to continue: another config is refused, naming old -> new.
    with pytest.raises(wd.RunRecordError, match=r"stopped at step 4\) does not fit this config: "
                                                r"lambda_: 0.5 -> 0.02\. Rerun with the same "
                                                r"config to continue, or use a new --workdir"):
        wd.begin_stage(str(tmp_path), "search", config, progress=4)
    # Result-neutral keys may differ (noted, kept in the resume entry).
    neutral = json.loads(json.dumps(other))
    neutral["execution"]["log_every"] = 7
    wd.begin_stage(str(tmp_path), "search", neutral, progress=4).finish({"file": "arch.json"})
    assert "execution.log_every 1 -> 7 accepted" in capsys.readouterr().err
    entry = wd.read_record(str(tmp_path))["stages"]["search"]
    assert entry["resumes"][-1]["step"] == 4 and entry["resumes"][-1]["accepted"]
    assert entry["finished"] and entry["result"] == {"file": "arch.json"}
    again = wd.begin_stage(str(tmp_path), "search", neutral, progress=8)
    assert again.finished and again.result == {"file": "arch.json"}
    with pytest.raises(wd.RunRecordError, match=r"\(finished\) does not fit"):
        wd.begin_stage(str(tmp_path), "search", config, progress=0)
    (tmp_path / wd.RUN_FILE).write_text("{not json")
    with pytest.raises(wd.RunRecordError, match="cannot be read"):
        wd.begin_stage(str(tmp_path), "search", config)


def test_finished_search_is_not_rewritten_and_another_config_is_refused(tmp_path, capsys):
    from spnas.search.run import run

    run(load_config("smoke.py"), str(tmp_path))
    files = {n: (tmp_path / n).read_bytes() for n in ("arch.json", "search_log.csv")}
    stamp = (tmp_path / "arch.json").stat().st_mtime_ns
    capsys.readouterr()

    other = load_config("smoke.py")
    other.lambda_ = 0.5
    with pytest.raises(wd.RunRecordError, match=r"lambda_: 0.02 -> 0.5"):
        run(other, str(tmp_path))
    same = run(load_config("smoke.py"), str(tmp_path))
    out = capsys.readouterr().out
    assert "already finished" in out and same.path == str(tmp_path / "arch.json")
    assert json.loads(files["arch.json"])["search"]["lambda"] == pytest.approx(0.02)
    assert (tmp_path / "arch.json").stat().st_mtime_ns == stamp
    # Another process on the busy directory: one line naming this one; nothing touched.
    with wd.locked(tmp_path):
        r = subprocess.run(_search_cmd(tmp_path), capture_output=True, text=True, timeout=300,
                           env=_env())
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and f"in use by pid {os.getpid()} on host " in lines[0], r.stderr
    assert all((tmp_path / n).read_bytes() == b for n, b in files.items())


# --- kills and signals ---------------------------------------------------------------------


def _wait_rows(path, rows: int, proc, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) > rows:
            return
        time.sleep(0.1)
    raise AssertionError(f"the run ended (rc {proc.poll()}) before {rows} log rows")


def test_sigkill_before_the_first_checkpoint_then_rerun(tmp_path):
    flags = ("--config.schedule.steps_per_epoch=8", "--config.execution.checkpoint_every=100")
    proc = subprocess.Popen(_search_cmd(tmp_path, *flags), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env())
    _wait_rows(tmp_path / "search_log.csv", 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "checkpoints" / "ckpt.json").exists()
    assert (tmp_path / wd.LOCK_FILE).exists()  # stale now
    (tmp_path / ".model.keras.99999.partial.keras").write_text("x")  # an earlier kill's
    r = subprocess.run(_search_cmd(tmp_path, *flags), capture_output=True, text=True,
                       timeout=600, env=_env())
    assert r.returncode == 0, r.stderr[-3000:]
    assert "spnas-search: note: took over the lock" in r.stderr
    assert f"pid {proc.pid} is no longer running" in r.stderr
    assert "spnas-search: note: removed 1 temporary file(s)" in r.stderr  # named by the command
    assert _log_steps(tmp_path / "search_log.csv") == list(range(17))  # step 0 once
    assert not (tmp_path / ".model.keras.99999.partial.keras").exists()
    assert not (tmp_path / wd.LOCK_FILE).exists()


def test_sigint_stops_at_a_step_boundary_and_the_same_command_resumes(tmp_path):
    flags = ("--config.schedule.steps_per_epoch=10", "--config.execution.checkpoint_every=8")
    proc = subprocess.Popen(_search_cmd(tmp_path, *flags), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=_env())
    _wait_rows(tmp_path / "search_log.csv", 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    lines = [ln for ln in err.splitlines() if "Interrupted" in ln]
    assert len(lines) == 1 and lines[0].startswith("spnas-search: Interrupted by SIGINT at step ")
    step = json.loads((tmp_path / "checkpoints" / "ckpt.json").read_text())["step"]
    assert 0 < step < 20 and f"at step {step} of 20" in lines[0]
    assert "the same command resumes" in lines[0] and str(tmp_path / "checkpoints") in lines[0]
    assert err.rstrip().splitlines()[-1] == lines[0]  # the last thing said
    r = subprocess.run(_search_cmd(tmp_path, *flags), capture_output=True, text=True,
                       timeout=600, env=_env())
    assert r.returncode == 0, r.stderr[-3000:]
    arch = json.loads((tmp_path / "arch.json").read_text())
    assert arch["search"]["steps"] == 20
    assert json.loads((tmp_path / "checkpoints" / "ckpt.json").read_text())["step"] == 20
    assert _log_steps(tmp_path / "search_log.csv") == list(range(21))
    record = wd.read_record(str(tmp_path))["stages"]["search"]
    assert record["resumes"][0]["step"] == step and record["finished"]


# --- divergence and damaged checkpoints (a tiny regression net) --------------------------


def _tiny(lr_schedule):
    import keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"),
                          keras.layers.Dense(1)])
    m.compile(optimizer=keras.optimizers.SGD(lr_schedule), loss="mse", jit_compile=False)
    return m


def _data():
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x.sum(-1, keepdims=True) * 10.0).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()


def _jump(at: int, lr: float):
    import keras
    import tensorflow as tf

    class Jump(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return tf.where(step < at, 0.01, lr)

    return Jump()


class _Reader:
    """A logger stand-in: what it saw of the model at each step."""

    def __new__(cls):
        import keras
        import numpy as np

        class Reader(keras.callbacks.Callback):
            seen_non_finite = False

            def on_train_batch_end(self, batch, logs=None):
                for w in self.model.get_weights():
                    if not np.all(np.isfinite(w)):
                        Reader.seen_non_finite = True

        return Reader()


@pytest.mark.parametrize("lr, every, kept", [(1e30, 2, True), (1e30, 100, False),
                                             (1e18, 100, False)])
def test_divergence_is_caught_before_any_reader_and_the_message_is_true(tmp_path, lr, every,
                                                                        kept):
    from spnas.train.runner import TrainingDivergedError, checkpoint_step, run_fit

    reader = _Reader()
    ckpt = str(tmp_path / "ckpt")
    with pytest.raises(TrainingDivergedError) as info:
        run_fit(_tiny(_jump(2, lr)), _data(), total_steps=8, checkpoint_dir=ckpt,
                checkpoint_every=every, callbacks=[reader])
    message = str(info.value)
    assert not type(reader).seen_non_finite  # the guard ran before it, at every step
    assert "\n" not in message and message.startswith("Training diverged: ")
    if kept:
        assert checkpoint_step(ckpt) == 2
        assert "last good checkpoint (step 2) is kept" in message
        assert "diverge again" in message and "new --workdir with a lower learning rate" in message
    else:
        assert checkpoint_step(ckpt) == 0
        assert "nothing is kept" in message and "resumes" not in message
        assert "checkpoint (step" not in message


def test_damaged_checkpoint_is_reported_not_replaced(tmp_path):
    from spnas.train.runner import CheckpointError, restore_checkpoint, run_fit

    ckpt = tmp_path / "ckpt"
    run_fit(_tiny(0.01), _data(), total_steps=2, checkpoint_dir=str(ckpt), checkpoint_every=2)
    weights, meta = ckpt / "ckpt.weights.h5", ckpt / "ckpt.json"
    good = weights.read_bytes()
    for damage, match in (
        (lambda: weights.write_bytes(good[: len(good) // 2]), "truncated or unreadable"),
        (lambda: weights.write_bytes(b"garbage" * 100), "not an HDF5 file"),
        (lambda: (weights.write_bytes(good), meta.write_text('{"step": 2, "se')),
         "not valid JSON"),
    ):
        damage()
        before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
        with pytest.raises(CheckpointError, match=match) as info:
            run_fit(_tiny(0.01), _data(), total_steps=4, checkpoint_dir=str(ckpt),
                    checkpoint_every=2)
        assert str(ckpt) in str(info.value) and f"delete {ckpt}" in str(info.value)
        assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before
    meta.write_text('{"step": 2}')
    os.remove(weights)
    with pytest.raises(CheckpointError, match="missing, while ckpt.json says step 2"):
        restore_checkpoint(_tiny(0.01), str(ckpt))


def test_damaged_checkpoint_stops_a_search_before_training(tmp_path):
    from spnas.search.run import run

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ckpt.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    (tmp_path / "checkpoints" / "ckpt.json").write_text('{"step": 4}')
    with pytest.raises(Exception, match=r"ckpt.weights.h5 is damaged .*delete ") as info:
        run(load_config("smoke.py"), str(tmp_path))
    assert type(info.value).__name__ == "CheckpointError"
    assert not (tmp_path / "search_log.csv").exists()
