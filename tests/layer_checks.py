"""A shared layer check (keras-hub style): config round trip, weight counts,
symbolic and eager calls, one fit step.

Used for layers (test_block.py) and for subclassed models (test_layer_checks.py:
the supernet). The checks a caller does not ask for keep their old behaviour:
``expected_trainable=None`` skips the trainable count, ``check_clone=True``
adds the clone-from-config output check, ``serialize=True`` adds the round trip
through Keras' registered serialisation.
"""

from __future__ import annotations

import keras
import numpy as np


def run_layer_checks(layer_cls, init_kwargs, input_shape, expected_output_shape,
                     expected_trainable, expected_non_trainable=None, *,
                     check_clone=False, serialize=False, fit_loss="mse"):
    layer = layer_cls(**init_kwargs)
    # Config round trip.
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config
    if serialize:  # as model saving does it: by the registered name, no custom_objects
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(restored) is layer_cls
        assert restored.get_config() == config
    # Symbolic call.
    symbolic = layer(keras.KerasTensor((None,) + tuple(input_shape[1:])))
    assert tuple(symbolic.shape[1:]) == tuple(expected_output_shape[1:])
    if expected_trainable is not None:
        assert len(layer.trainable_weights) == expected_trainable
    if expected_non_trainable is not None:
        assert len(layer.non_trainable_weights) == expected_non_trainable
    # Eager call.
    x = np.random.default_rng(0).normal(size=input_shape).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x, training=False))
    assert y.shape == tuple(expected_output_shape)
    assert np.all(np.isfinite(y))
    if check_clone:
        # The clone from the config, given the layer's weights, computes the same thing.
        clone(keras.KerasTensor((None,) + tuple(input_shape[1:])))
        assert [w.shape for w in clone.weights] == [w.shape for w in layer.weights]
        clone.set_weights(layer.get_weights())
        y_clone = keras.ops.convert_to_numpy(clone(x, training=False))
        np.testing.assert_allclose(y_clone, y, rtol=1e-5, atol=1e-6)
    # One fit step inside a model.
    fresh = layer_cls(**init_kwargs)
    inputs = keras.Input(tuple(input_shape[1:]))
    model = keras.Model(inputs, fresh(inputs))
    model.compile(optimizer="sgd", loss=fit_loss, jit_compile=False)
    before = [np.array(w) for w in model.get_weights()]
    target = np.zeros(expected_output_shape, "float32")
    history = model.fit(x, target, batch_size=input_shape[0], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    after = model.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(before, after))
    return layer
