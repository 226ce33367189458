"""Weight decay by hand (reference-facts.md, "Search"; MnasNet's TF1 code):
``loss_wd = 1e-5 * sum over trainable non-BN variables of 1/2 ||w||^2`` (MnasNet's
``tf.nn.l2_loss`` over every trainable variable whose name lacks
``batch_normalization``), thresholds included, BN gamma/beta excluded.

The expected value is computed in NumPy from the model's variables; which
variables are BN is read from the layer types (keras BatchNormalization), not
from the module under test.
"""

import keras
import numpy as np

from spnas.models import build_model
from spnas.search.supernet import build_supernet
from spnas.space import smoke_space

WD = 1e-5  # reference facts


def bn_variable_ids(model):
    ids = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            ids.update(id(v) for v in layer.weights)
    return ids


def hand_decay(model):
    bn = bn_variable_ids(model)
    kept = [v for v in model.trainable_variables if id(v) not in bn]
    total = sum(0.5 * np.sum(np.square(keras.ops.convert_to_numpy(v).astype("float64"))) for v in kept)
    return WD * total, kept


def model_decay(model):
    return float(sum(float(keras.ops.convert_to_numpy(x)) for x in model.losses))


def test_supernet_weight_decay_is_half_l2_over_non_bn_variables():
    model = build_supernet(smoke_space(), weight_decay=WD)  # no table: no runtime loss
    rng = np.random.default_rng(0)
    for v in model.trainable_variables:  # thresholds away from 0 so they count
        v.assign(rng.normal(0.0, 0.5, v.shape).astype("float32"))
    want, kept = hand_decay(model)
    names = [v.path for v in kept]
    assert any(n.endswith("t5x5") for n in names) and any(n.endswith("t50c") for n in names)
    assert not any("gamma" in n or "beta" in n for n in names)
    np.testing.assert_allclose(model_decay(model), want, rtol=1e-5)


def test_plain_model_weight_decay_is_half_l2_over_non_bn_variables():
    model = build_model(["ds_r1_k3_s1_c16", "ir_r2_k5_s2_e6_c24", "ir_r1_k3_s1_e3_c24"],
                        num_classes=10, input_size=32, weight_decay=WD)
    rng = np.random.default_rng(1)
    for v in model.trainable_variables:
        v.assign(rng.normal(0.0, 0.5, v.shape).astype("float32"))
    want, kept = hand_decay(model)
    assert len(kept) < len(model.trainable_variables)  # some BN variables were left out
    np.testing.assert_allclose(model_decay(model), want, rtol=1e-5)
