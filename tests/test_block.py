"""The searchable MBConv block. Backend-neutral (also run under JAX)."""

import keras
import numpy as np
import pytest
from layer_checks import run_layer_checks

from spnas.superkernel import SearchableMBConv

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
