"""Backend-neutral helpers for the core tests (TensorFlow or JAX)."""

from __future__ import annotations

import keras
import numpy as np


def gradients(layer_or_model, loss_fn, variables):
    """Gradients of ``loss_fn()`` w.r.t. ``variables`` on the current backend.

    ``loss_fn`` must read the variables through the layer (it is re-run with
    the variables' values substituted under JAX).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        return [np.asarray(g) if g is not None else None for g in tape.gradient(loss, variables)]
    if backend == "jax":
        import jax

        values = [v.value for v in variables]

        def f(vals):
            with keras.StatelessScope(state_mapping=list(zip(variables, vals))):
                return loss_fn()

        return [np.asarray(g) for g in jax.grad(f)(values)]
    raise NotImplementedError(backend)
