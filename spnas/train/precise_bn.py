"""Recompute BatchNorm statistics for the weights that are evaluated ("precise BN").

Why: the model is evaluated and exported with the EMA of its weights, but its
BatchNorm moving statistics were accumulated (momentum 0.99, MnasNet) under the
raw weights as they changed. Over the paper's 437,898 steps the difference is
negligible (MnasNet additionally averages the moving statistics in its EMA);
over a few hundred steps it is not: on the embedded digits the moving
statistics trail the weights so far that a net at 95 % with batch statistics
scores 15-50 % with its moving ones. Recomputing the statistics over some
training batches with the final weights fixes that (Wu & Johnson, "Rethinking
'Batch' in BatchNorm", 2021, call it PreciseBN). Off (0 batches) for the
paper's ImageNet recipe.
"""

from __future__ import annotations

from collections.abc import Iterable

import keras


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of ``model``, nested ones included (also those
    inside custom layers such as the supernet's searchable MBConv blocks)."""
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def recalibrate_batch_norm(model: keras.Model, batches: Iterable, num_batches: int) -> int:
    """Sets every BN layer's moving mean/variance to its average over ``num_batches``.

    Runs the model forward in training mode (eagerly) on the images of
    ``batches`` (``(images, labels)`` pairs or images) with each BN layer's
    momentum set to ``i / (i + 1)`` for the i-th batch, which makes the moving
    statistics the plain mean of the per-batch statistics. Trainable weights are
    not changed; the momenta are restored afterwards.

    Returns:
      The number of batches used (fewer if ``batches`` ran out).

    Raises:
      ValueError: ``num_batches`` < 1.
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}.")
    layers = batch_norm_layers(model)
    momenta = [layer.momentum for layer in layers]
    used = 0
    try:
        for batch in batches:
            if used == num_batches:
                break
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            for layer in layers:
                layer.momentum = used / (used + 1.0)
            model(images, training=True)
            used += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return used
