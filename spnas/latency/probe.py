"""The Keras models a latency table is profiled and checked with, and their conversion.

Every model is built from the blocks the networks use
(:mod:`spnas.models.blocks`), batch 1:

* :func:`layer_model`: one MBConv layer (a candidate or a fixed layer's own
  choice) at its position in the space (input size, channels, stride, residual);
* :func:`fixed_part_models`: the parts the search never changes (stem, the
  non-searchable layers, head), whose times sum to the table's constant;
* :func:`overhead_probe_model`: next to no work, so its time is the fixed cost
  of one ``invoke()``;
* :func:`network_model`: a whole plain network of given choices (calibration,
  validation, drift), skipped layers left out.

:func:`convert` turns any of them into a float TFLite flatbuffer the way the
profiler does (:data:`CONVERSION`); every latency module converts through it.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from spnas.export.tflite import convert_float
from spnas.layer_plan import PROJECTION
from spnas.models.blocks import head, mbconv, projection, stem
from spnas.space import (
    LayerSpec,
    SearchSpace,
    layer_options,
    sample_choices,
    validate_choices,
)

# The profiler converts ~4 models per layer; the in-process graph path gives the
# same TFLite graph as the SavedModel path about 4x faster (spnas.export.tflite).
CONVERSION = "graph"
# Seed of the calibration networks: not 0, the default seed of spnas-latency
# validate, so a validation draws other networks than the calibration.
CALIBRATION_SEED = 20190402


def convert(model) -> bytes:
    """The float TFLite flatbuffer of a probe model (:data:`CONVERSION` path)."""
    return convert_float(model, method=CONVERSION)


def layer_model(layer: LayerSpec, choice: str):
    """A one-layer Keras model: ``layer`` decoded as ``choice`` at its position.

    Args:
      layer: the supernet layer (input size, channels, stride, residual).
      choice: a candidate, ``skip`` where skipping it is a projection (1x1 conv + BN),
        or a fixed layer's own choice.
    """
    plain = layer.decoded(choice) if layer.searchable else layer
    inp = keras.Input((layer.input_hw, layer.input_hw, layer.in_ch), batch_size=1)
    if plain.op == PROJECTION:
        out = projection(inp, layer.out_ch, layer.stride, name=f"layer{layer.index}")
    else:
        out = mbconv(inp, layer.out_ch, plain.kernel, layer.stride, plain.expansion,
                     layer.residual, name=f"layer{layer.index}")
    return keras.Model(inp, out, name=f"layer{layer.index}_{choice}")


def fixed_part_models(space: SearchSpace) -> dict[str, object]:
    """The parts the search never changes, as one-part Keras models.

    Keys: ``stem``, ``layer_<i>`` for every non-searchable layer, ``head``.
    """
    layers = space.layers()
    parts: dict[str, object] = {}
    inp = keras.Input((space.input_size, space.input_size, 3), batch_size=1)
    parts["stem"] = keras.Model(inp, stem(inp, space.stem_filters, space.stem_stride), name="stem")
    for layer in layers:
        if not layer.searchable:
            parts[f"layer_{layer.index}"] = layer_model(layer, layer.fixed_choice)
    last = layers[-1]
    hw = -(-last.input_hw // last.stride)
    inp = keras.Input((hw, hw, last.out_ch), batch_size=1)
    # Dropout is the identity at inference and vanishes in the TFLite graph.
    parts["head"] = keras.Model(
        inp, head(inp, space.head_filters, space.num_classes, space.dropout), name="head"
    )
    return parts


def overhead_probe_model():
    """A model with next to no work: its time is the fixed cost of one invoke.

    Every separately timed model of a table pays this cost once, a whole
    network only once in all; :func:`spnas.latency.build.table_from_profile`
    can subtract it (``subtract_overhead``). One 1x1 convolution of 8 channels
    on a 1x1 input goes through the same runtime path (one delegated graph) as
    a layer.
    """
    inp = keras.Input((1, 1, 8), batch_size=1)
    return keras.Model(inp, keras.layers.Conv2D(8, 1, name="probe")(inp), name="overhead_probe")


def calibration_choices(space: SearchSpace, n: int, seed: int = CALIBRATION_SEED) -> list[list[str]]:
    """``n`` random architectures of ``space`` (uniform per layer, as validation draws)."""
    rng = np.random.default_rng(seed)
    options = layer_options(space)
    return [sample_choices(space, rng, options) for _ in range(n)]


def network_model(space: SearchSpace, choices: Sequence[str]):
    """The plain network of ``choices`` built from the same blocks as the table.

    Used to check the table's additive prediction against a whole-network
    measurement (:func:`spnas.latency.timing.measure_network`). Skipped layers
    are left out (a projection skip is its 1x1 conv + BN).
    """
    choices = validate_choices(space, choices)
    inp = keras.Input((space.input_size, space.input_size, 3), batch_size=1)
    x = stem(inp, space.stem_filters, space.stem_stride)
    for layer, choice in zip(space.layers(), choices):
        plain = layer.decoded(choice) if layer.searchable else layer
        if plain is None:  # an identity skip
            continue
        name = f"layer{layer.index}"
        if plain.op == PROJECTION:
            x = projection(x, layer.out_ch, layer.stride, name=name)
            continue
        x = mbconv(x, layer.out_ch, plain.kernel, layer.stride, plain.expansion, layer.residual,
                   name=name)
    return keras.Model(inp, head(x, space.head_filters, space.num_classes, space.dropout))
