"""Plain MBConv building blocks (standard Keras layers only, functional API).

Used by the model builder, the latency profiler and the benchmarks. Layer
names follow timm (``conv_pw``, ``bn1``, ``conv_dw``, ``bn2``, ``conv_pwl``,
``bn3``) under a per-layer prefix.
"""

from __future__ import annotations

import keras
from keras import layers

from spnas.space import BN_EPSILON, BN_MOMENTUM
from spnas.superkernel.block import CONV_INIT


def _reg(weight_decay: float):
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


def mbconv(
    x,
    filters: int,
    kernel: int,
    stride: int,
    expansion: int,
    residual: bool,
    name: str,
    weight_decay: float = 0.0,
):
    """MBConv-k x k-e (expansion 1 = depthwise-separable, no expansion conv)."""
    reg = _reg(weight_decay)
    bn = dict(momentum=BN_MOMENTUM, epsilon=BN_EPSILON)
    in_ch = x.shape[-1]
    shortcut = x
    if expansion != 1:
        x = layers.Conv2D(in_ch * expansion, 1, use_bias=False, kernel_initializer=CONV_INIT,
                          kernel_regularizer=reg, name=f"{name}_conv_pw")(x)
        x = layers.BatchNormalization(name=f"{name}_bn1", **bn)(x)
        x = layers.ReLU(name=f"{name}_relu1")(x)
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                               depthwise_initializer=CONV_INIT, depthwise_regularizer=reg,
                               name=f"{name}_conv_dw")(x)
    x = layers.BatchNormalization(name=f"{name}_bn2", **bn)(x)
    x = layers.ReLU(name=f"{name}_relu2")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, kernel_initializer=CONV_INIT,
                      kernel_regularizer=reg, name=f"{name}_conv_pwl")(x)
    x = layers.BatchNormalization(name=f"{name}_bn3", **bn)(x)
    if residual:
        if stride != 1 or in_ch != filters:
            raise ValueError(f"{name}: residual needs stride 1 and in == out ({in_ch} -> {filters}).")
        x = layers.Add(name=f"{name}_add")([x, shortcut])
    return x


def stem(x, filters: int, stride: int, weight_decay: float = 0.0, name: str = "stem"):
    """Conv 3x3, BN, ReLU."""
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                      kernel_initializer=CONV_INIT, kernel_regularizer=_reg(weight_decay),
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def head(x, filters: int, num_classes: int, dropout: float, weight_decay: float = 0.0,
         name: str = "head"):
    """Conv 1x1, BN, ReLU, global average pool, dropout, FC (logits)."""
    reg = _reg(weight_decay)
    x = layers.Conv2D(filters, 1, use_bias=False, kernel_initializer=CONV_INIT,
                      kernel_regularizer=reg, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    x = layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Dense(num_classes, kernel_regularizer=reg, bias_regularizer=reg,
                        name="classifier")(x)
