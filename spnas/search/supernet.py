"""The single-path supernet (paper Sec. 3, Fig. 2) with its runtime loss (Eq. 9-12).

Stem conv 3x3 -> 22 MBConv layers (20 with a superkernel) -> 1x1 conv to 1280
-> global average pool -> dropout -> FC. The loss it adds is
``lambda * 1e3 * ln(R)`` with ``R = constant + sum_l R_l`` in ms (the factor
1e3 is the release's; see reference-facts.md), ``lambda`` a non-trainable
variable the search schedules (0 during warm-up).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from spnas.space import BN_EPSILON, BN_MOMENTUM, SearchSpace
from spnas.superkernel.block import CONV_INIT, SearchableMBConv
from spnas.tables.runtime_model import BoundTable, bind
from spnas.tables.table import LatencyTable

RUNTIME_LOSS_SCALE = 1e3  # lambda * 1e3 * ln(R_ms), as in the authors' release
WEIGHT_DECAY = 1e-5  # MnasNet


def latency_config(table: BoundTable | LatencyTable | None) -> dict | None:
    """The part of a table the supernet needs, as a plain (serialisable) dict."""
    if table is None:
        return None
    if isinstance(table, BoundTable):
        return table.supernet_latency()
    return {
        "constant_ms": table.constant_ms,
        "layers": {str(i): dict(table.layers[i]) for i in table.searchable_indices},
    }


@keras.saving.register_keras_serializable(package="spnas")
class Supernet(keras.Model):
    """Over-parameterised single-path network over a :class:`SearchSpace`.

    Args:
      space: the search space (a SearchSpace or its dict).
      latency: ``{"constant_ms": float, "layers": {"i": {k3_e3..k5_e6}}}`` (see
        :func:`latency_config`), or None for a supernet without runtime loss.
      weight_decay: L2 on every non-BN variable, thresholds included
        (loss += wd * 1/2 ||w||^2).
    """

    def __init__(
        self,
        space: SearchSpace | dict | None = None,
        latency: dict | None = None,
        weight_decay: float = WEIGHT_DECAY,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if space is None:
            space = SearchSpace()
        if isinstance(space, dict):
            space = SearchSpace.from_dict(space)
        self.space = space
        self.latency = latency
        self.weight_decay = float(weight_decay)
        reg = keras.regularizers.L2(self.weight_decay / 2) if self.weight_decay else None
        bn = dict(momentum=BN_MOMENTUM, epsilon=BN_EPSILON)
        layer_runtimes = (latency or {}).get("layers", {})
        if latency is not None:
            expected = {str(i) for i in space.searchable_indices()}
            if set(layer_runtimes) != expected:
                raise ValueError(
                    f"Latency entries cover layers {sorted(layer_runtimes, key=int)}, the "
                    f"supernet's searchable layers are {sorted(expected, key=int)}."
                )

        self.conv_stem = layers.Conv2D(
            space.stem_filters, 3, strides=space.stem_stride, padding="same", use_bias=False,
            kernel_initializer=CONV_INIT, kernel_regularizer=reg, name="conv_stem",
        )
        self.bn_stem = layers.BatchNormalization(name="bn_stem", **bn)
        self.mbconv: list[SearchableMBConv] = []
        for spec in space.layers():
            self.mbconv.append(
                SearchableMBConv(
                    filters=spec.out_ch,
                    expansion=spec.expansion,
                    kernel_size=spec.kernel,
                    strides=spec.stride,
                    searchable=spec.searchable,
                    allow_skip=spec.skippable,
                    residual=spec.residual,
                    runtimes=layer_runtimes.get(str(spec.index)) if spec.searchable else None,
                    weight_decay=self.weight_decay,
                    name=f"layer{spec.index:02d}",
                )
            )
        self.conv_head = layers.Conv2D(
            space.head_filters, 1, use_bias=False, kernel_initializer=CONV_INIT,
            kernel_regularizer=reg, name="conv_head",
        )
        self.bn_head = layers.BatchNormalization(name="bn_head", **bn)
        self.pool = layers.GlobalAveragePooling2D(name="pool")
        self.drop = layers.Dropout(space.dropout, name="dropout")
        self.classifier = layers.Dense(
            space.num_classes, kernel_regularizer=reg, bias_regularizer=reg, name="classifier",
        )
        self.runtime_lambda = self.add_weight(
            name="runtime_lambda", shape=(), initializer="zeros", trainable=False
        )

    # -- forward -------------------------------------------------------------------------
    def call(self, inputs, training=None):
        x = ops.relu(self.bn_stem(self.conv_stem(inputs), training=training))
        with_runtime = self.latency is not None
        runtime = float(self.latency["constant_ms"]) if with_runtime else 0.0
        for block in self.mbconv:
            if with_runtime:
                x, r = block(x, training=training, return_runtime=True)
                runtime = runtime + r
            else:
                x = block(x, training=training)
        x = ops.relu(self.bn_head(self.conv_head(x), training=training))
        x = self.drop(self.pool(x), training=training)
        logits = self.classifier(x)
        if with_runtime:
            # The runtime comes from the indicators of this very pass (one graph).
            self.add_loss(self.runtime_lambda * RUNTIME_LOSS_SCALE * ops.log(runtime))
        return logits

    def build(self, input_shape=None):
        shape = tuple(input_shape or (None, self.space.input_size, self.space.input_size, 3))
        self.conv_stem.build(shape)
        shape = self.conv_stem.compute_output_shape(shape)
        self.bn_stem.build(shape)
        for block in self.mbconv:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        self.conv_head.build(shape)
        shape = self.conv_head.compute_output_shape(shape)
        self.bn_head.build(shape)
        self.classifier.build((shape[0], shape[-1]))
        self.built = True

    # -- search interface ----------------------------------------------------------------
    @property
    def searchable_blocks(self) -> list[SearchableMBConv]:
        return [b for b in self.mbconv if b.searchable]

    def runtime_ms(self):
        """Differentiable predicted runtime R (ms) from the current hard decisions."""
        if self.latency is None:
            raise ValueError("This supernet was built without a latency table.")
        total = ops.convert_to_tensor(float(self.latency["constant_ms"]))
        for block in self.searchable_blocks:
            total = total + block.conv_dw.runtime_ms()
        return total

    def set_runtime_lambda(self, value: float) -> None:
        self.runtime_lambda.assign(float(value))

    def set_indicator_keep_prob(self, value: float) -> None:
        for block in self.searchable_blocks:
            block.conv_dw.keep_prob.assign(float(value))

    def decisions(self) -> list[dict[str, Any]]:
        """Per searchable layer: index, hard decisions, norms and thresholds."""
        out = []
        for block, spec in zip(self.mbconv, self.space.layers()):
            if spec.searchable:
                out.append({"index": spec.index, **block.conv_dw.decisions()})
        return out

    def choices(self) -> list[str]:
        """The decoded architecture: one choice per layer (fixed layers included)."""
        return [
            block.conv_dw.choice() if spec.searchable else spec.fixed_choice
            for block, spec in zip(self.mbconv, self.space.layers())
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            {"space": self.space.to_dict(), "latency": self.latency, "weight_decay": self.weight_decay}
        )
        return config


def build_supernet(
    space: SearchSpace | None = None,
    table: BoundTable | LatencyTable | None = None,
    weight_decay: float = WEIGHT_DECAY,
    strict_table: bool = True,
) -> Supernet:
    """Builds (and shape-builds) a supernet over ``space`` with ``table``'s runtime loss.

    A :class:`BoundTable` bound to ``space`` is used as it is; a plain table is
    bound (validated) here, ``strict_table=False`` accepting a proxy table
    (same layers, other input size).
    """
    space = space or SearchSpace()
    bound = bind(table, space, strict_table) if table is not None else None
    model = Supernet(space, latency_config(bound), weight_decay=weight_decay, name="supernet")
    model.build((None, space.input_size, space.input_size, 3))
    return model
