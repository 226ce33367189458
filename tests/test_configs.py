"""The shipped configs: composed from configs/common.py, Keras-free, with the paper's numbers."""

import json
import os
import subprocess
import sys

import pytest

from spnas.configs_path import load_config

SHIPPED = ("default.py", "smoke.py", "pixel1_proxy.py", "imagenet_pixel1.py",
           "train_default.py", "imagenet_train.py", "export_default.py", "cifar10.py",
           "cifar10_train.py")
SECTIONS = ("data", "schedule", "execution")


def _in_fresh_python(code: str) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_paper_configs_load_without_keras_and_give_the_papers_numbers():
    code = (
        "import json, sys\n"
        "from spnas.configs_path import load_config\n"
        "s = load_config('imagenet_pixel1.py')\n"
        "t = load_config('imagenet_train.py')\n"
        "heavy = sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules)\n"
        "print(json.dumps({'heavy': heavy, 'search': s.to_dict(), 'train': t.to_dict()}))\n"
    )
    out = _in_fresh_python(code)
    assert out["heavy"] == []
    s, t = out["search"], out["train"]
    # The paper's search (Sec. 4): batch 1024, 8 epochs (5 of warm-up), lambda 0.020, LR 0.064.
    assert s["schedule"]["batch_size"] == 1024 and s["schedule"]["epochs"] == 8.0
    assert s["lambda_"] == pytest.approx(0.020)
    assert s["lambda_warmup_epochs"] == pytest.approx(5.0)
    assert s["schedule"]["lr"] == pytest.approx(0.064)
    assert s["schedule"]["warmup_epochs"] == 0.0  # no learning-rate warm-up in the search
    assert s["data"]["dataset"] == "imagenet2012" and s["data"]["image_size"] == 224
    assert s["execution"]["strategy"] == "tpu"
    # The MnasNet training (Sec. 4.1): 350 epochs at batch 1024, LR 0.064, 5 warm-up epochs.
    assert t["schedule"]["epochs"] == 350.0 and t["schedule"]["batch_size"] == 1024
    assert t["schedule"]["lr"] == pytest.approx(0.064)
    assert t["schedule"]["warmup_epochs"] == pytest.approx(5.0)
    assert t["data"]["image_size"] == 224 and t["fallback_arch"] == "spnas_pixel1"
    for c in (s, t):
        sc = c["schedule"]
        assert (sc["ema_decay"], sc["label_smoothing"], sc["weight_decay"]) == (0.9999, 0.1, 1e-5)
        assert (sc["lr_decay_epochs"], sc["lr_decay_rate"]) == (2.4, 0.97)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_config_has_the_shared_sections(name):
    c = load_config(name)
    expected = ("data",) if name == "export_default.py" else SECTIONS
    for section in expected:
        assert section in c, (name, section)
    assert "seed" in c  # top-level, not in a section
    reference = load_config("default.py")
    for section in expected:  # one name per key: the same keys in every config
        assert sorted(c[section].keys()) == sorted(reference[section].keys()), (name, section)


def test_one_name_per_key():
    search, train = load_config("default.py"), load_config("train_default.py")
    for c in (search, train):
        flat = set(c.to_dict())
        for old in ("precise_bn_batches", "image_size", "dataset", "batch_size", "epochs",
                    "strategy", "lr", "warmup_epochs"):
            assert old not in flat, old
        assert "bn_recalibration_batches" in c.schedule and "image_size" in c.data
    assert "input_size" not in search.space  # the search space takes data.image_size
    assert search.schedule.bn_recalibration_batches == 20
    assert train.schedule.bn_recalibration_batches == 10


def test_derived_values_follow_their_inputs():
    c = load_config("default.py")
    c.schedule.batch_size = 128
    c.schedule.epochs = 16.0
    assert c.schedule.lr == pytest.approx(0.016 * 128 / 256)
    assert c.lambda_warmup_epochs == pytest.approx(10.0)
    t = load_config("train_default.py")
    t.schedule.epochs = 35.0
    assert t.schedule.warmup_epochs == pytest.approx(0.5)
    smoke = load_config("smoke.py")
    assert smoke.schedule.lr == pytest.approx(0.016 * 16 / 256)
    assert smoke.lambda_warmup_epochs == pytest.approx(1.25)


def test_constants_match_the_library():
    from spnas.configs import common, export_default

    from spnas.export import litert, tflite
    from spnas.export.report import DEFAULT_NUM_EVAL
    from spnas.train import optim, schedule

    # Values from reference-facts.md ("Search", "Training"), then the copies agree.
    assert common.LR_PER_256 == schedule.LR_PER_256 == 0.016
    assert (common.DECAY_EPOCHS, common.DECAY_RATE) == (schedule.DECAY_EPOCHS, schedule.DECAY_RATE) == (2.4, 0.97)
    assert common.EMA_DECAY == optim.EMA_DECAY == 0.9999
    assert (optim.RMSPROP_RHO, optim.RMSPROP_MOMENTUM, optim.RMSPROP_EPSILON) == (0.9, 0.9, 1e-3)
    assert export_default.NUM_CALIBRATION == tflite.DEFAULT_NUM_CALIBRATION
    assert export_default.NUM_EVAL == DEFAULT_NUM_EVAL
    assert (export_default.WARMUP, export_default.REPEATS) == (litert.DEFAULT_WARMUP,
                                                                litert.DEFAULT_REPEATS)


def test_cifar10_configs_bind_their_shipped_table_and_aim_inside_it():
    from spnas.search.run import load_search_table, space_from_config
    from spnas.space import cifar_space

    c = load_config("cifar10.py")
    space = space_from_config(c, 10)
    assert space == cifar_space()
    assert [spec.input_hw for spec in space.layers()][1:22:4] == [32, 16, 8, 4, 4, 2]
    table = load_search_table(c, space)  # strict: profiled on this very space
    lo, hi = table.range_ms()
    assert lo < c.target_ms < hi
    assert c.data.augment == "cifar" and c.superkernel_init == "fan_in"
    assert c.schedule.lr_decay_epochs == pytest.approx(2.4)  # the search's own decay
    t = load_config("cifar10_train.py")
    assert t.data.augment == "cifar" and t.fallback_arch == "mobilenetv2_cifar"
    # The training schedule's decay period scales with its epochs: the paper's
    # 350-epoch decay (0.97 ** (350 / 2.4)) whatever the length.
    for epochs in (100.0, 3.0):
        t.schedule.epochs = epochs
        assert epochs / t.schedule.lr_decay_epochs == pytest.approx(350 / 2.4)
    assert load_config("imagenet_pixel1.py").superkernel_init == "fan_out"
