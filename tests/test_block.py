"""The searchable MBConv block. Backend-neutral (also run under JAX)."""

import keras
import numpy as np
import pytest

from spnas.superkernel import Head, MBConv, SearchableMBConv, Stem, SuperkernelDepthwiseConv
from tests.layer_checks import run_layer_checks

RUNTIMES = {"k3_e3": 1.0, "k3_e6": 1.7, "k5_e3": 1.3, "k5_e6": 2.2}


def test_searchable_block_checks():
    # conv_pw, bn1 (2), conv_dw kernel + 3 thresholds, bn2 (2), conv_pwl, bn3 (2).
    run_layer_checks(
        SearchableMBConv,
        dict(filters=8, strides=1, residual=True, runtimes=RUNTIMES),
        input_shape=(2, 8, 8, 8),
        expected_output_shape=(2, 8, 8, 8),
        expected_trainable=1 + 2 + 4 + 2 + 1 + 2,
        expected_non_trainable=2 + 1 + 2 + 2,  # BN statistics and keep_prob
    )


def test_first_of_block_is_not_skippable_and_strided():
    run_layer_checks(
        SearchableMBConv,
        dict(filters=16, strides=2, allow_skip=False, residual=False),
        input_shape=(2, 8, 8, 8),
        expected_output_shape=(2, 4, 4, 16),
        expected_trainable=1 + 2 + 3 + 2 + 1 + 2,
    )


def test_fixed_e1_block_has_no_expansion_conv():
    layer = run_layer_checks(
        SearchableMBConv,
        dict(filters=16, expansion=1, kernel_size=3, searchable=False, residual=False),
        input_shape=(2, 8, 8, 32),
        expected_output_shape=(2, 8, 8, 16),
        expected_trainable=1 + 2 + 1 + 2,
    )
    assert layer.conv_pw is None


def test_param_count_equals_plain_mbconv_plus_thresholds():
    x = keras.KerasTensor((None, 8, 8, 16))
    searchable = SearchableMBConv(filters=16, strides=1, residual=True)
    plain = SearchableMBConv(filters=16, kernel_size=5, searchable=False, residual=True)
    searchable(x)
    plain(x)

    def count(layer):
        return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)

    assert count(searchable) == count(plain) + 3


def test_skip_decision_makes_block_identity():
    block = SearchableMBConv(filters=8, strides=1, residual=True)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 8)).astype("float32")
    block(x)
    block.conv_dw.t50c.assign(1e6)
    # BN beta after the depthwise still leaks into the output inside the supernet
    # (reference-facts "Skip nuance"); with zero betas the block is exactly identity.
    for bn in (block.bn2, block.bn3):
        bn.beta.assign(np.zeros(bn.beta.shape, "float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(block(x)), x, atol=1e-6)


def test_bad_residual_rejected():
    with pytest.raises(ValueError, match="residual"):
        SearchableMBConv(filters=16, strides=2, residual=True)(keras.KerasTensor((None, 8, 8, 8)))


def test_one_class_for_searchable_and_plain_layers():
    assert MBConv is SearchableMBConv
    assert SearchableMBConv.__name__ == "SearchableMBConv"  # the registered, saved name
    fixed = MBConv(filters=8, expansion=1, kernel_size=3, searchable=False, residual=False)
    searchable = MBConv(filters=8)
    assert type(fixed.conv_dw) is keras.layers.DepthwiseConv2D
    assert type(searchable.conv_dw) is SuperkernelDepthwiseConv


def test_flat_block_is_the_nested_block_unrolled():
    """``flat=True`` wires the same sub-layers into a functional model (standard
    layers only, named ``{name}_{sub}``) and computes the same function."""
    kwargs = dict(filters=16, expansion=3, kernel_size=3, strides=1, searchable=False,
                  residual=True, weight_decay=1e-4)
    inputs = keras.Input((6, 6, 16))
    flat = MBConv(**kwargs, flat=True, name="b1")
    plain = keras.Model(inputs, flat.apply_to(inputs))
    assert [layer.name for layer in plain.layers[1:]] == [
        "b1_conv_pw", "b1_bn1", "b1_relu1", "b1_conv_dw", "b1_bn2", "b1_relu2",
        "b1_conv_pwl", "b1_bn3", "b1_add",
    ]
    assert not [layer for layer in plain.layers if "spnas" in type(layer).__module__]
    nested = MBConv(**kwargs, name="b1")
    nested.build((None, 6, 6, 16))
    assert [type(p) for p in nested.chain()] == [type(p) for p in flat.chain()]
    assert len(nested.weights) == len(plain.weights)
    for target, source in zip(nested.chain(), flat.chain()):
        target.set_weights(source.get_weights())
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 16)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(nested(x)),
                               keras.ops.convert_to_numpy(plain(x)), rtol=1e-5, atol=1e-5)
    # The same regularised weights: 3 convs at wd / 2 each.
    assert len(plain.losses) == len(nested.losses) == 3


def test_apply_to_needs_flat():
    with pytest.raises(ValueError, match="flat=True"):
        MBConv(filters=8).apply_to(keras.Input((4, 4, 8)))


def test_stem_and_head_checks():
    run_layer_checks(
        Stem, dict(filters=8, strides=2, weight_decay=1e-5),
        input_shape=(2, 8, 8, 3), expected_output_shape=(2, 4, 4, 8),
        expected_trainable=1 + 2, expected_non_trainable=2,
    )
    run_layer_checks(
        Head, dict(filters=16, num_classes=5, dropout=0.2),
        input_shape=(2, 4, 4, 8), expected_output_shape=(2, 5),
        expected_trainable=1 + 2 + 2, expected_non_trainable=2,
    )
    assert Head(filters=16, num_classes=5, dropout=0.0).drop is None


def test_block_keras_save_load(tmp_path):
    inputs = keras.Input((6, 6, 8))
    model = keras.Model(inputs, SearchableMBConv(filters=8, runtimes=RUNTIMES)(inputs))
    model.layers[-1].conv_dw.t5x5.assign(2.5)
    x = np.random.default_rng(2).normal(size=(1, 6, 6, 8)).astype("float32")
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.layers[-1]) is SearchableMBConv
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(model(x)), rtol=1e-6, atol=1e-6)
    assert float(keras.ops.convert_to_numpy(loaded.layers[-1].conv_dw.t5x5)) == 2.5
