"""A shared layer check (keras-hub style): config round trip, weight counts,
symbolic and eager calls, one fit step."""

from __future__ import annotations

import keras
import numpy as np


def run_layer_checks(layer_cls, init_kwargs, input_shape, expected_output_shape,
                     expected_trainable, expected_non_trainable=None):
    layer = layer_cls(**init_kwargs)
    # Config round trip.
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config
    # Symbolic call.
    symbolic = layer(keras.KerasTensor((None,) + tuple(input_shape[1:])))
    assert tuple(symbolic.shape[1:]) == tuple(expected_output_shape[1:])
    assert len(layer.trainable_weights) == expected_trainable
    if expected_non_trainable is not None:
        assert len(layer.non_trainable_weights) == expected_non_trainable
    # Eager call.
    x = np.random.default_rng(0).normal(size=input_shape).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x, training=False))
    assert y.shape == tuple(expected_output_shape)
    assert np.all(np.isfinite(y))
    # One fit step inside a model.
    fresh = layer_cls(**init_kwargs)
    inputs = keras.Input(tuple(input_shape[1:]))
    model = keras.Model(inputs, fresh(inputs))
    model.compile(optimizer="sgd", loss="mse", jit_compile=False)
    before = [np.array(w) for w in model.get_weights()]
    target = np.zeros(expected_output_shape, "float32")
    model.fit(x, target, batch_size=input_shape[0], epochs=1, verbose=0)
    after = model.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(before, after))
    return layer
