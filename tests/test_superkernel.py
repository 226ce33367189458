"""Superkernel layer (Eq. 1-4, 11-12): equivalence with plain depthwise convs,
gradients to all thresholds, runtime, dropout, serialization. Backend-neutral:
also run under KERAS_BACKEND=jax by test_jax_backend.py."""

import math
import os
import tempfile

import keras
import numpy as np
import pytest
from keras import ops

from spnas.superkernel import SuperkernelDepthwiseConv, indicator
from spnas.tables.runtime_model import layer_runtime_paper
from tests.backend_utils import gradients

C = 12  # 6 x 2 input channels
BIG = 1e6
RUNTIMES = {"k3_e3": 1.0, "k3_e6": 1.7, "k5_e3": 1.3, "k5_e6": 2.2}


def make_layer(strides=1, allow_skip=True, seed=0):
    layer = SuperkernelDepthwiseConv(strides=strides, allow_skip=allow_skip, runtimes=RUNTIMES)
    layer.build((None, 9, 9, C))
    rng = np.random.default_rng(seed)
    layer.depthwise_kernel.assign(rng.normal(size=(5, 5, C, 1)).astype("float32"))
    return layer


def plain_depthwise(x, kernel, strides):
    k = kernel.shape[0]
    conv = keras.layers.DepthwiseConv2D(k, strides=strides, padding="same", use_bias=False)
    conv.build(x.shape)
    conv.set_weights([kernel])
    return ops.convert_to_numpy(conv(x))


def set_thresholds(layer, t5x5=0.0, t100c=0.0, t50c=0.0):
    layer.t5x5.assign(t5x5)
    layer.t100c.assign(t100c)
    if layer.t50c is not None:
        layer.t50c.assign(t50c)


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("choice", ["k3_e3", "k3_e6", "k5_e3", "k5_e6"])
def test_forced_decisions_equal_plain_depthwise(strides, choice):
    layer = make_layer(strides)
    k, e = int(choice[1]), int(choice[-1])
    set_thresholds(layer, t5x5=0.0 if k == 5 else BIG, t100c=0.0 if e == 6 else BIG)
    x = np.random.default_rng(1).normal(size=(2, 9, 9, C)).astype("float32")
    out = ops.convert_to_numpy(layer(x))
    w = ops.convert_to_numpy(layer.depthwise_kernel)
    kernel = w[1:4, 1:4] if k == 3 else w
    half = C // 2
    channels = C if e == 6 else half
    ref = plain_depthwise(x[..., :channels], kernel[:, :, :channels], strides)
    np.testing.assert_allclose(out[..., :channels], ref, rtol=1e-5, atol=1e-5)
    if e == 3:
        assert np.all(out[..., half:] == 0.0)
    assert layer.choice() == choice


def test_skip_contributes_nothing():
    layer = make_layer()
    set_thresholds(layer, t50c=BIG)
    x = np.random.default_rng(2).normal(size=(2, 9, 9, C)).astype("float32")
    assert np.all(ops.convert_to_numpy(layer(x)) == 0.0)
    assert layer.choice() == "skip"
    assert float(ops.convert_to_numpy(layer.runtime_ms())) == 0.0


def test_no_e3_e6_swap_in_decoding():
    # The release's encoder swapped e3/e6 for 3x3-6 and 5x5-3 (its issue #8).
    layer = make_layer()
    set_thresholds(layer, t5x5=BIG, t100c=0.0)
    assert layer.choice() == "k3_e6"
    set_thresholds(layer, t5x5=0.0, t100c=BIG)
    assert layer.choice() == "k5_e3"


def test_not_skippable_layer_has_two_thresholds():
    layer = make_layer(allow_skip=False)
    assert layer.t50c is None
    assert len(layer.trainable_weights) == 3  # kernel, t5x5, t100c
    set_thresholds(layer, t5x5=BIG, t100c=BIG)
    assert layer.choice() == "k3_e3"
    assert make_layer().trainable_weights.__len__() == 4


@pytest.mark.parametrize("choice", ["k3_e3", "k3_e6", "k5_e3", "k5_e6"])
def test_runtime_matches_eq_11_12(choice):
    layer = make_layer()
    k, e = int(choice[1]), int(choice[-1])
    set_thresholds(layer, t5x5=0.0 if k == 5 else BIG, t100c=0.0 if e == 6 else BIG)
    got = float(ops.convert_to_numpy(layer.runtime_ms()))
    assert got == pytest.approx(layer_runtime_paper(RUNTIMES, choice), rel=1e-6)
    if choice != "k3_e3":  # k3e3 is approximated by the paper's model
        assert got == pytest.approx(RUNTIMES[choice], rel=1e-6)


def test_gradients_reach_all_thresholds_and_kernel():
    layer = make_layer()
    d = layer.decisions()
    # Put each threshold just under its norm so the sigmoid gradient is large.
    set_thresholds(layer, d["norm5x5"] - 0.5, d["norm100c"] - 0.5, d["norm50c"] - 0.5)
    x = np.random.default_rng(3).normal(size=(2, 9, 9, C)).astype("float32")
    target = np.random.default_rng(4).normal(size=(2, 9, 9, C)).astype("float32")
    variables = [layer.t5x5, layer.t100c, layer.t50c, layer.depthwise_kernel]

    def loss_fn():
        return ops.sum(layer(x) * target) + 10.0 * layer.runtime_ms()

    grads = gradients(layer, loss_fn, variables)
    for v, g in zip(variables, grads):
        assert g is not None, v.name
        assert np.all(np.isfinite(g)), v.name
        assert np.any(g != 0.0), v.name


def test_indicator_is_exact_step():
    x = ops.convert_to_tensor(np.array([0.5, 1.5, 3.0], "float32"))
    got = ops.convert_to_numpy(indicator(x, ops.convert_to_tensor(1.0)))
    assert got.tolist() == [0.0, 1.0, 1.0]


def test_indicator_dropout_keep_probability():
    layer = make_layer()
    layer.keep_prob.assign(0.6)
    one = ops.ones(())
    # _keep draws the Bernoulli mask; the kept indicator's 1/keep scale comes after it
    # (test_maths_superkernel checks the scaled kernel of a training pass).
    draws = np.array([float(ops.convert_to_numpy(layer._keep(one, True))) for _ in range(400)])
    assert set(draws) <= {0.0, 1.0}
    assert 0.5 < np.mean(draws > 0) < 0.7
    # Inference never drops; keep_prob 1.0 never drops.
    assert float(ops.convert_to_numpy(layer._keep(one, False))) == 1.0
    layer.keep_prob.assign(1.0)
    assert all(float(ops.convert_to_numpy(layer._keep(one, True))) == 1.0 for _ in range(20))


def test_config_round_trip_and_keras_save_load():
    layer = make_layer(strides=2, allow_skip=False)
    config = layer.get_config()
    clone = SuperkernelDepthwiseConv.from_config(config)
    assert clone.get_config() == config
    inputs = keras.Input((9, 9, C))
    model = keras.Model(inputs, SuperkernelDepthwiseConv(strides=2, runtimes=RUNTIMES)(inputs))
    model.layers[-1].t5x5.assign(3.0)
    x = np.random.default_rng(5).normal(size=(1, 9, 9, C)).astype("float32")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)))
    assert float(ops.convert_to_numpy(loaded.layers[-1].t5x5)) == 3.0


def test_odd_channels_rejected():
    with pytest.raises(ValueError, match="even channel count"):
        SuperkernelDepthwiseConv().build((None, 8, 8, 7))


@pytest.mark.parametrize("mode, channels, want_std", [
    ("fan_in", 48, math.sqrt(2.0 / (25 * 48))),  # Keras fan_in of (5, 5, C, 1) is 25 C
    ("fan_out", 48, math.sqrt(2.0 / 25)),  # the release's MnasNet init: fan_out = 25
])
def test_superkernel_init_modes(mode, channels, want_std):
    from spnas.superkernel.block import superkernel_init

    keras.utils.set_random_seed(0)
    values = ops.convert_to_numpy(superkernel_init(mode)((5, 5, channels, 1)))
    assert np.std(values) == pytest.approx(want_std, rel=0.05)
    with pytest.raises(ValueError, match="superkernel_init must be one of"):
        superkernel_init("he")


def test_supernet_takes_the_superkernel_init():
    from spnas.search.supernet import build_supernet
    from spnas.space import smoke_space

    stds = {}
    for mode in ("fan_in", "fan_out"):
        keras.utils.set_random_seed(0)
        net = build_supernet(smoke_space(), superkernel_init=mode)
        kernel = net.searchable_blocks[0].conv_dw.depthwise_kernel
        stds[mode] = float(np.std(ops.convert_to_numpy(kernel)))
        assert net.get_config()["superkernel_init"] == mode
    channels = net.searchable_blocks[0].conv_dw.depthwise_kernel.shape[2]
    assert stds["fan_out"] / stds["fan_in"] == pytest.approx(math.sqrt(channels), rel=0.1)
