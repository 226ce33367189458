"""spnas-train end to end: few-step training, EMA export, resume after SIGKILL, bad input.

Training runs use ``run_eagerly`` (no graph build, which costs 30 s or more
on 2 busy cores) and tiny step counts: the plumbing is under test, not the
accuracy.
"""

import csv
import json
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from spnas.arch.handoff import make_arch, write_arch
from spnas.arch.plan import plan_model
from spnas.configs_path import load_config
from spnas.space import SKIP, embedded_space, uniform_choices
from spnas.train.run import (
    ARCH_FILE,
    LOG_FILE,
    MODEL_FILE,
    REPORT_FILE,
    TrainConfigError,
    parse_arch,
    resolve_arch,
    schedule_lengths,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_STAGES = "ds_r1_k3_s1_c16,ir_r1_k3_s2_e3_c24"


def _config(arch="", **overrides):
    """The default training config at test sizes; ``overrides`` are dotted keys
    (``schedule__train_steps=1`` sets ``schedule.train_steps``)."""
    c = load_config("train_default.py")
    c.update_from_flattened_dict(
        {
            "schedule.batch_size": 16,
            "schedule.train_steps": 3,
            "execution.checkpoint_every": 2,
            "execution.log_every": 1,
            "execution.run_eagerly": True,
            "schedule.bn_recalibration_batches": 2,
            "schedule.eval_batch_size": 179,  # one eval batch
        }
    )
    c.arch = arch
    c.update_from_flattened_dict({k.replace("__", "."): v for k, v in overrides.items()})
    return c


def _cmd(workdir, *flags):
    return [sys.executable, "-m", "spnas.train.main", f"--workdir={workdir}", *flags]


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _log_steps(workdir):
    with open(os.path.join(workdir, LOG_FILE), newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def _embedded_arch_choices():
    space = embedded_space()
    choices = uniform_choices(space, "k3_e3")
    for layer in space.layers():
        if layer.skippable:  # the smallest net of the space: only the blocks' first layers
            choices[layer.index] = SKIP
    choices[5] = "k5_e6"
    return space, choices


# --- configuration and architecture resolution (no training) -------------------------------


def test_configs_follow_the_paper():
    default = load_config("train_default.py")
    assert default.schedule.lr_per_256 == 0.016  # reference facts: LR 0.016 per 256 images
    assert default.schedule.lr == pytest.approx(0.016 * 64 / 256)
    assert default.schedule.warmup_epochs == pytest.approx(default.schedule.epochs * 5 / 350)
    imagenet = load_config("imagenet_train.py")
    assert imagenet.schedule.lr == pytest.approx(0.064)
    assert imagenet.schedule.warmup_epochs == pytest.approx(5.0)
    assert imagenet.schedule.eval_batch_size == 1000 and imagenet.schedule.batch_size == 1024
    assert (imagenet.data.dataset, imagenet.data.image_size, imagenet.execution.strategy) == (
        "imagenet2012",
        224,
        "tpu",
    )
    assert "manual_dir" in imagenet.data and imagenet.fallback_arch == "spnas_pixel1"
    assert imagenet.schedule.ema_decay == 0.9999 and imagenet.schedule.label_smoothing == 0.1
    assert imagenet.schedule.weight_decay == 1e-5 and imagenet.dropout == 0.2
    # MnasNet: int(350 * 1,281,167 / 1024) steps.
    per_epoch, total = schedule_lengths(imagenet.schedule, 1_281_167)
    assert total == 437_898 and per_epoch == pytest.approx(1251.1396, abs=1e-3)


def test_arch_resolution_order(tmp_path):
    c = load_config("train_default.py")
    assert resolve_arch(c, str(tmp_path))[0] == "spnas_pixel1_050"
    space, choices = _embedded_arch_choices()
    write_arch(str(tmp_path / ARCH_FILE), make_arch(space, choices))
    assert resolve_arch(c, str(tmp_path))[0] == str(tmp_path / ARCH_FILE)
    c.arch = "mobilenetv2_050"
    assert resolve_arch(c, str(tmp_path))[0] == "mobilenetv2_050"
    assert parse_arch(" ds_r1_k3_s1_c16, ir_r2_k3_s2_e6_c24") == [
        "ds_r1_k3_s1_c16",
        "ir_r2_k3_s2_e6_c24",
    ]
    c.arch, c.fallback_arch = "", ""
    os.remove(tmp_path / ARCH_FILE)
    with pytest.raises(TrainConfigError, match="No architecture"):
        resolve_arch(c, str(tmp_path))


# --- in-process training -------------------------------------------------------------------


def test_train_registry_arch(tmp_path, capsys):
    from spnas.train.run import run

    report = run(
        _config(arch="mobilenetv2_035", schedule__train_steps=1, schedule__bn_recalibration_batches=1), str(tmp_path)
    )
    assert "top-1" in capsys.readouterr().out
    saved = json.loads((tmp_path / REPORT_FILE).read_text())
    assert saved["steps"] == report["steps"] == 1
    assert saved["params"] == plan_model("mobilenetv2_035", 10, 32).count_params()
    assert saved["arch"]["name"] == "mobilenetv2_035" and saved["weights"] == "ema"
    for key in ("top1", "top5", "epochs", "seconds"):
        assert key in saved
    assert saved["top1"] <= saved["top5"]
    for key in ("top1", "top5"):  # accuracies are counts over the 179 validation images
        hits = saved[key] * 179
        assert hits == pytest.approx(round(hits), abs=1e-3) and 0 <= round(hits) <= 179, key
    assert saved["bn_recalibration_batches"] == 1 and saved["top1_moving_stats"] is not None
    assert saved["eval_images"] == 179 and saved["num_classes"] == 10
    assert (tmp_path / MODEL_FILE).stat().st_size > 100_000
    assert _log_steps(tmp_path) == [1]
    assert any(f.startswith("events") for _, _, fs in os.walk(tmp_path / "tb") for f in fs)
    assert not [f for f in os.listdir(tmp_path) if "partial" in f or f.endswith(".tmp")]
    # Rerunning a finished run trains nothing and says so, on stderr.
    report = run(
        _config(arch="mobilenetv2_035", schedule__train_steps=1, schedule__bn_recalibration_batches=1), str(tmp_path)
    )
    assert report["steps"] == 1 and "at step 1, already finished" in capsys.readouterr().err


def test_train_searched_arch_json_exports_ema_weights(tmp_path):
    import keras

    from spnas.data import build_dataset
    from spnas.train.optim import ema_weights
    from spnas.train.run import compile_model, run
    from spnas.train.runner import restore_checkpoint
    from spnas.train.schedule import MnasNetSchedule

    space, choices = _embedded_arch_choices()
    write_arch(str(tmp_path / ARCH_FILE), make_arch(space, choices))
    # What spnas-search leaves beside arch.json must not be taken for a training checkpoint.
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ckpt.weights.h5").write_bytes(b"supernet weights")
    (tmp_path / "checkpoints" / "ckpt.json").write_text('{"step": 1000}')
    # arch "": takes <workdir>/arch.json. Without BN recalibration the export is exactly
    # the optimizer's EMA of the trainable weights plus the trained BN statistics.
    config = _config(schedule__bn_recalibration_batches=0)
    report = run(config, str(tmp_path))
    assert report["arch"]["source"].startswith("searched")
    assert report["arch"]["layers"] == choices and report["steps"] == 3
    assert report["resumed_from_step"] == 0
    assert _log_steps(tmp_path) == [1, 2, 3]  # a chunk of 2, then the 1-step tail

    loaded = keras.saving.load_model(str(tmp_path / MODEL_FILE), compile=False)
    ds, _ = build_dataset("embedded", "validation", 179, 32, training=False)
    images, labels = next(iter(ds))
    images, labels = np.asarray(images), np.asarray(labels)
    exported = np.asarray(loaded(images, training=False))

    # The checkpoint holds the raw weights and the optimizer's EMA.
    plan = plan_model(str(tmp_path / ARCH_FILE), num_classes=10, input_size=32)
    model = compile_model(plan, config, MnasNetSchedule(0.004, 25, warmup_epochs=0.2))
    assert restore_checkpoint(model, str(tmp_path / "train_checkpoints")) == 3
    raw = np.asarray(model(images, training=False))
    with ema_weights(model):
        ema = np.asarray(model(images, training=False))
    np.testing.assert_allclose(exported, ema, rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(raw - ema)) > 1e-4, "model.keras should hold the EMA, not the raw weights"
    # The reported top-1 is that of the exported (EMA) model.
    top1 = float(np.mean(np.argmax(exported, 1) == np.argmax(labels, 1)))
    assert report["top1"] == pytest.approx(top1, abs=1e-6)

    # Another architecture in the same work directory: one clear error, nothing overwritten.
    with pytest.raises(TrainConfigError, match="does not fit"):
        run(_config(arch=TINY_STAGES), str(tmp_path))


def test_bn_recalibration_averages_batch_statistics():
    import keras

    from spnas.train.precise_bn import recalibrate_batch_norm

    inputs = keras.Input((4, 4, 2))
    bn = keras.layers.BatchNormalization(momentum=0.99)
    model = keras.Model(inputs, bn(keras.layers.Conv2D(3, 1)(inputs)))
    rng = np.random.default_rng(0)
    batches = [rng.normal(i, 1 + i, (8, 4, 4, 2)).astype("float32") for i in range(3)]
    weights = [w.copy() for w in model.get_weights()[:2]]
    assert recalibrate_batch_norm(model, iter(batches), 5) == 3  # ran out after 3
    conv = keras.Model(inputs, model.layers[1].output)
    feats = [np.asarray(conv(b)) for b in batches]
    np.testing.assert_allclose(
        bn.moving_mean, np.mean([f.mean((0, 1, 2)) for f in feats], 0), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        bn.moving_variance, np.mean([f.var((0, 1, 2)) for f in feats], 0), rtol=1e-4, atol=1e-5
    )
    assert bn.momentum == 0.99
    for before, after in zip(weights, model.get_weights()[:2]):
        np.testing.assert_array_equal(before, after)


def test_unknown_format_in_process(tmp_path):
    from spnas.arch.handoff import ArchError
    from spnas.train.run import run

    path = tmp_path / "other.json"
    path.write_text(json.dumps({"format": "someone-else/3", "layers": [], "stages": []}))
    with pytest.raises(ArchError, match="someone-else/3"):
        run(_config(arch=str(path)), str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()  # refused before anything was written


# --- command line ---------------------------------------------------------------------------


@pytest.fixture()
def unknown_format_json(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "spnas.arch/0", "layers": ["k3_e1"], "stages": []}))
    return str(path)


@pytest.mark.parametrize("case", ["malformed", "unknown_format", "downsampling", "unwritable"])
def test_bad_input_is_one_line_exit_2(tmp_path, case, unknown_format_json):
    workdir = tmp_path / "w"
    flags = {
        "malformed": ["--arch=ds_r1_k3_s1_c16,ir_r2_k3_s2_e6_c24_bogus"],
        "unknown_format": [f"--arch={unknown_format_json}"],
        "downsampling": ["--arch=spnas_pixel1", "--config.data.image_size=8"],
        "unwritable": ["--arch=mobilenetv2_035"],
    }[case]
    if case == "unwritable":
        blocker = tmp_path / "a_file"
        blocker.write_text("")
        workdir = blocker / "w"  # a directory below a regular file cannot be created
    start = time.time()
    r = subprocess.run(
        _cmd(workdir, *flags), capture_output=True, text=True, timeout=120, env=_env()
    )
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("spnas-train: error: "), r.stderr
    expected = {
        "malformed": "Unknown token 'bogus'",
        "unknown_format": "spnas.arch/0",
        "downsampling": "cannot be downsampled",
        "unwritable": "not writable",
    }[case]
    assert expected in lines[0]
    assert time.time() - start < 60  # checked before TensorFlow is imported


def test_resume_after_sigkill(tmp_path):
    # Graph mode: the tiny net's graph builds quickly and its steps are fast, so the
    # 40 steps after the first checkpoint leave a wide window for the kill.
    total = 60
    flags = [
        f"--arch={TINY_STAGES}",
        f"--config.schedule.train_steps={total}",
        "--config.execution.checkpoint_every=20",
        "--config.execution.log_every=1",
        "--config.schedule.batch_size=16",
        "--config.schedule.eval_batch_size=179",
        "--config.schedule.bn_recalibration_batches=1",
    ]
    proc = subprocess.Popen(
        _cmd(tmp_path, *flags), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
    )
    meta = tmp_path / "train_checkpoints" / "ckpt.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not meta.exists():
        time.sleep(0.05)
    assert proc.poll() is None, "training finished (or failed) before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(meta.read_text())["step"]
    assert 0 < killed_at < total and not (tmp_path / REPORT_FILE).exists()

    r = subprocess.run(
        _cmd(tmp_path, *flags), capture_output=True, text=True, timeout=300, env=_env()
    )
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((tmp_path / REPORT_FILE).read_text())
    assert report["steps"] == total and report["resumed_from_step"] >= killed_at
    steps = _log_steps(tmp_path)
    assert steps == list(range(1, total + 1)), "the CSV log must have every step exactly once"
    import keras

    model = keras.saving.load_model(str(tmp_path / MODEL_FILE), compile=False)
    out = np.asarray(model(np.zeros((2, 32, 32, 3), np.float32), training=False))
    assert out.shape == (2, 10) and np.all(np.isfinite(out))


def test_tpu_script_passes_its_arguments(tmp_path):
    fake = tmp_path / "bin" / "spnas-train"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_OUT"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = dict(
        os.environ, PATH=f"{fake.parent}:{os.environ['PATH']}", ARGS_OUT=str(tmp_path / "args")
    )
    script = os.path.join(ROOT, "scripts", "train_tpu.sh")
    r = subprocess.run(
        [
            "bash",
            script,
            "my-tpu",
            "/data/tars",
            "gs://b/tfds",
            str(tmp_path / "run"),
            "--",
            "--arch=mobilenetv2_100",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    args = (tmp_path / "args").read_text().splitlines()
    assert f"--config={os.path.join(ROOT, 'configs', 'imagenet_train.py')}" in args
    for expected in (
        f"--workdir={tmp_path / 'run'}",
        "--config.execution.tpu=my-tpu",
        "--config.data.data_dir=gs://b/tfds",
        "--config.data.manual_dir=/data/tars",
        "--arch=mobilenetv2_100",
    ):
        assert expected in args
    r = subprocess.run(["bash", script], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "Usage" in r.stderr


@pytest.mark.slow
def test_two_replicas_mirrored(tmp_path):
    flags = [
        f"--arch={TINY_STAGES}",
        "--config.schedule.train_steps=4",
        "--config.execution.checkpoint_every=2",
        "--config.schedule.batch_size=16",
        "--config.schedule.bn_recalibration_batches=2",
        "--config.execution.strategy=mirrored",
        "--config.execution.cpu_replicas=2",
    ]
    r = subprocess.run(
        _cmd(tmp_path, *flags), capture_output=True, text=True, timeout=600, env=_env()
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / REPORT_FILE).read_text())
    assert report["replicas"] == 2 and report["steps"] == 4
    r = subprocess.run(
        _cmd(tmp_path / "odd", *flags, "--config.schedule.eval_batch_size=179"),
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(),
    )
    assert r.returncode == 2 and "not divisible by the 2 replicas" in r.stderr


@pytest.mark.slow
def test_divergence_is_one_line_exit_2(tmp_path):
    flags = [
        f"--arch={TINY_STAGES}",
        "--config.schedule.train_steps=20",
        "--config.execution.checkpoint_every=5",
        "--config.schedule.batch_size=16",
        "--config.schedule.lr_per_256=1e30",
        "--config.schedule.warmup_epochs=0",
    ]
    r = subprocess.run(
        _cmd(tmp_path, *flags), capture_output=True, text=True, timeout=600, env=_env()
    )
    assert r.returncode == 2, r.stderr[-3000:]
    assert "spnas-train: error: Training diverged" in r.stderr
    assert not (tmp_path / MODEL_FILE).exists()
