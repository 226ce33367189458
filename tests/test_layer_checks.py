"""The shared layer check (tests/layer_checks.py) on the superkernel layer and the
supernet, and the same serialisation round trips on the schedule and the optimizer:
what a saved model or a checkpointed run restores must behave as the original."""

import copy

import keras
import numpy as np
import pytest

from spnas.search.supernet import Supernet, latency_config
from spnas.space import smoke_space
from spnas.superkernel import SuperkernelDepthwiseConv
from spnas.tables import bind, load_table, shipped
from spnas.train.optim import MnasRMSprop
from spnas.train.schedule import MnasNetSchedule
from tests.layer_checks import run_layer_checks

RUNTIMES = {"k3_e3": 1.0, "k3_e6": 1.7, "k5_e3": 1.3, "k5_e6": 2.2}


# -- the superkernel layer --------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, trainable, output_hw",
    [
        (dict(strides=1, allow_skip=True, runtimes=RUNTIMES), 1 + 3, 8),  # kernel, 3 thresholds
        (dict(strides=2, allow_skip=False), 1 + 2, 4),  # no t50c: the first layer of a block
        (dict(strides=1, threshold_init=0.5, kernel_regularizer="l2"), 1 + 3, 8),
    ],
    ids=["skippable", "strided-not-skippable", "regularised"],
)
def test_superkernel_layer_checks(kwargs, trainable, output_hw):
    layer = run_layer_checks(
        SuperkernelDepthwiseConv, kwargs,
        input_shape=(2, 8, 8, 8),
        expected_output_shape=(2, output_hw, output_hw, 8),
        expected_trainable=trainable,
        expected_non_trainable=1,  # keep_prob (the seed generator's state is not a weight)
        check_clone=True, serialize=True,
    )
    assert layer.choice() in ("skip", "k3_e3", "k3_e6", "k5_e3", "k5_e6")
    if "runtimes" in kwargs:
        assert np.isfinite(float(keras.ops.convert_to_numpy(layer.runtime_ms())))


# -- the supernet ------------------------------------------------------------------------
def smoke_latency():
    space = smoke_space()
    return latency_config(bind(load_table(shipped.path("smoke_cpu")), space))


def threshold_count(model):
    return sum(w.name in ("t5x5", "t100c", "t50c") for w in model.trainable_weights)


@pytest.mark.parametrize("with_table", [False, True], ids=["no-table", "smoke_cpu"])
def test_supernet_layer_checks(with_table):
    space = smoke_space()
    latency = smoke_latency() if with_table else None
    model = run_layer_checks(
        Supernet, dict(space=space, latency=latency, name="supernet"),
        input_shape=(2, space.input_size, space.input_size, 3),
        expected_output_shape=(2, space.num_classes),
        expected_trainable=None,  # counted in test_supernet.py; here: the thresholds below
        check_clone=True, serialize=True,
        fit_loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    specs = [s for s in space.layers() if s.searchable]
    assert threshold_count(model) == sum(2 + bool(s.skippable) for s in specs)
    assert len(model.choices()) == len(space.layers())
    if with_table:
        assert model.get_config()["latency"] == latency
        ms = float(keras.ops.convert_to_numpy(model.runtime_ms()))
        assert ms > latency["constant"]
    else:
        with pytest.raises(ValueError, match="without a latency table"):
            model.runtime_ms()


def test_supernet_runtime_loss_survives_the_round_trip():
    space = smoke_space()
    model = Supernet(space, smoke_latency(), name="supernet")
    clone = Supernet.from_config(model.get_config())
    x = np.random.default_rng(1).normal(size=(2, space.input_size, space.input_size, 3))
    x = x.astype("float32")
    model(x)
    clone(x)
    clone.set_weights(model.get_weights())
    model.set_runtime_lambda(0.02)
    clone.set_runtime_lambda(0.02)
    losses = []
    for m in (model, clone):
        m(x, training=False)
        losses.append([float(keras.ops.convert_to_numpy(v)) for v in m.losses])
    assert losses[0] and np.allclose(losses[0], losses[1])


# -- the learning-rate schedule ----------------------------------------------------------
STEPS = (0, 1, 49, 50, 51, 119, 120, 121, 1000, 12345)


@pytest.mark.parametrize("warmup_epochs", [0.0, 5.0 / 350 * 20])
def test_schedule_round_trip(warmup_epochs):
    schedule = MnasNetSchedule(base_lr=0.064, steps_per_epoch=50, warmup_epochs=warmup_epochs)
    config = schedule.get_config()
    clones = [
        MnasNetSchedule.from_config(config),
        keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule)),
    ]
    for clone in clones:
        assert type(clone) is MnasNetSchedule
        assert clone.get_config() == config
        for step in STEPS:
            assert float(clone(step)) == pytest.approx(float(schedule(step)), rel=1e-7), step
    # The staircase itself: 0.97 per 2.4 epochs (120 steps) once past the warm-up.
    assert float(schedule(1000)) == pytest.approx(0.064 * 0.97 ** (1000 // 120), rel=1e-6)


# -- the optimizer -----------------------------------------------------------------------
def one_step(optimizer, start, grad):
    var = keras.Variable(start, name="w")
    optimizer.apply([keras.ops.convert_to_tensor(grad)], [var])
    return keras.ops.convert_to_numpy(var)


@pytest.mark.parametrize("learning_rate", ["constant", "schedule"])
def test_optimizer_round_trip_and_one_step(learning_rate):
    lr = 0.016 if learning_rate == "constant" else MnasNetSchedule(0.016, steps_per_epoch=10)
    opt = MnasRMSprop(learning_rate=lr)
    config = opt.get_config()
    clones = [
        MnasRMSprop.from_config(copy.deepcopy(config)),  # Keras' from_config edits its argument
        keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(opt)),
    ]
    rng = np.random.default_rng(0)
    start = rng.normal(size=(3, 4)).astype("float32")
    grad = rng.normal(size=(3, 4)).astype("float32")
    want = one_step(opt, start, grad)
    # TF1's RMSProp (accumulator starts at 1): w -= lr g / sqrt(rho + (1 - rho) g^2 + eps).
    expected = start - 0.016 * grad / np.sqrt(0.9 * 1.0 + 0.1 * grad**2 + 1e-3)
    np.testing.assert_allclose(want, expected, rtol=1e-5, atol=1e-7)
    for clone in clones:
        assert type(clone) is MnasRMSprop
        assert clone.get_config() == config
        np.testing.assert_allclose(one_step(clone, start, grad), want, rtol=1e-6, atol=1e-7)
