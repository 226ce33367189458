"""The stem and the head of every network of the package (supernet, plain models,
latency profiling), nested or flat like :class:`spnas.superkernel.block.MBConv`.

Stem: conv 3x3 (strided), BN, ReLU. Head: conv 1x1, BN, ReLU, global average
pool, dropout, fully connected classifier (logits).
"""

from __future__ import annotations

import keras
from keras import layers

from spnas.superkernel.block import Composite, training_kwargs

__all__ = ["Head", "Stem"]


@keras.saving.register_keras_serializable(package="spnas")
class Stem(Composite):
    """Conv 3x3 (``conv``), BN (``bn``), ReLU (``relu``).

    Args:
      filters: output channels.
      strides: the conv's stride.
      weight_decay, flat: see :class:`Composite`.
    """

    config_keys = Composite.config_keys + ("filters", "strides")

    def __init__(self, filters: int, strides: int = 2, weight_decay: float = 0.0, **kwargs):
        super().__init__(weight_decay=weight_decay, **kwargs)
        self.filters = int(filters)
        self.strides = int(strides)
        self.conv = self.make_conv(self.filters, 3, "conv", strides=self.strides)
        self.bn = self.make_bn("bn")
        self.act = self.make_relu("relu")

    def chain(self) -> list:
        return [self.conv, self.bn, self.act]

    def call(self, inputs, training=None):
        mode = training_kwargs(training)
        return self.act(self.bn(self.conv(inputs), **mode))


@keras.saving.register_keras_serializable(package="spnas")
class Head(Composite):
    """Conv 1x1 (``conv``), BN (``bn``), ReLU (``relu``), global average pool
    (``pool``), dropout (``dropout``, none at rate 0), FC (``classifier``, so named
    also when flat).

    Args:
      filters: channels of the 1x1 conv.
      num_classes: classifier outputs.
      dropout: dropout rate before the classifier.
      weight_decay, flat: see :class:`Composite` (the classifier's bias decays too).
    """

    config_keys = Composite.config_keys + ("filters", "num_classes", "dropout")

    def __init__(self, filters: int, num_classes: int, dropout: float = 0.0,
                 weight_decay: float = 0.0, **kwargs):
        super().__init__(weight_decay=weight_decay, **kwargs)
        self.filters = int(filters)
        self.num_classes = int(num_classes)
        self.dropout = float(dropout)
        self.conv = self.make_conv(self.filters, 1, "conv")
        self.bn = self.make_bn("bn")
        self.act = self.make_relu("relu")
        self.pool = layers.GlobalAveragePooling2D(name=self.sub_name("pool"))
        self.drop = layers.Dropout(self.dropout, name=self.sub_name("dropout")) if self.dropout else None
        self.classifier = layers.Dense(
            self.num_classes, kernel_regularizer=self._reg, bias_regularizer=self._reg,
            name="classifier",
        )

    def chain(self) -> list:
        parts = [self.conv, self.bn, self.act, self.pool, self.drop, self.classifier]
        return [p for p in parts if p is not None]

    def call(self, inputs, training=None):
        mode = training_kwargs(training)
        x = self.pool(self.act(self.bn(self.conv(inputs), **mode)))
        if self.drop is not None:
            x = self.drop(x, **mode)
        return self.classifier(x)
