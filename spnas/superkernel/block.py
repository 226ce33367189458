"""The searchable MBConv layer of Single-Path NAS (paper Fig. 2, middle).

1x1 expansion at the largest ratio (e=6), BN, ReLU, the depthwise superkernel,
BN, ReLU, 1x1 linear projection, BN, and a residual connection when the stride
is 1 and the input and output widths match. The same class, with
``searchable=False``, builds the paper's fixed first (e1, no expansion conv) and
last layers with a plain depthwise kernel.
"""

from __future__ import annotations

import keras
from keras import layers

from spnas.space import BN_EPSILON, BN_MOMENTUM
from spnas.superkernel.layer import SuperkernelDepthwiseConv

# MnasNet's TPU code initialises convolutions with a fan-out normal.
CONV_INIT = keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal")
# The superkernel instead uses a fan-in normal over all its channels (Keras' fan_in
# of a (5, 5, C, 1) kernel is 25 C), so every masked group starts with an L2 norm
# near 1 whatever C is. With MnasNet's fan-out init (std sqrt(2/25)) the norms
# start near 0.3 sqrt(16 C), i.e. 10-30, and the sigmoid gradient that reaches the
# thresholds (initialised at 0) is ~e^-10: the decisions would freeze. BN right
# after the depthwise conv makes the kernel's scale irrelevant to the function.
SUPERKERNEL_INIT = keras.initializers.VarianceScaling(
    scale=2.0, mode="fan_in", distribution="untruncated_normal"
)


@keras.saving.register_keras_serializable(package="spnas")
class SearchableMBConv(keras.layers.Layer):
    """One MBConv layer of the supernet.

    Args:
      filters: output channels.
      expansion: expansion ratio of the 1x1 conv (6 for searchable layers; 1
        means no expansion conv, as in the fixed first layer).
      kernel_size: depthwise kernel of a fixed layer (the superkernel is 5x5).
      strides: depthwise stride.
      searchable: use the superkernel (True) or a plain depthwise conv.
      allow_skip: the superkernel may choose skip (not for the first layer of a block).
      residual: add the input to the output (only valid for stride 1, in == out).
      runtimes: the layer's latency-table entries, see SuperkernelDepthwiseConv.
      weight_decay: L2 coefficient on all non-BN weights (loss += wd * 1/2 ||w||^2).
    """

    def __init__(
        self,
        filters: int,
        expansion: int = 6,
        kernel_size: int = 5,
        strides: int = 1,
        searchable: bool = True,
        allow_skip: bool = True,
        residual: bool = True,
        runtimes: dict | None = None,
        weight_decay: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.expansion = int(expansion)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.searchable = bool(searchable)
        self.allow_skip = bool(allow_skip) and self.searchable
        self.residual = bool(residual)
        self.runtimes = runtimes
        self.weight_decay = float(weight_decay)
        reg = keras.regularizers.L2(self.weight_decay / 2) if self.weight_decay else None
        bn = dict(momentum=BN_MOMENTUM, epsilon=BN_EPSILON)
        self._reg = reg
        # conv_pw's width depends on the input channels: it is created in build().
        self.conv_pw = None
        if self.expansion != 1:
            self.bn1 = layers.BatchNormalization(name="bn1", **bn)
        if self.searchable:
            self.conv_dw = SuperkernelDepthwiseConv(
                strides=self.strides, allow_skip=self.allow_skip, runtimes=runtimes,
                kernel_initializer=SUPERKERNEL_INIT, kernel_regularizer=reg, name="conv_dw",
            )
        else:
            self.conv_dw = layers.DepthwiseConv2D(
                self.kernel_size, strides=self.strides, padding="same", use_bias=False,
                depthwise_initializer=CONV_INIT, depthwise_regularizer=reg, name="conv_dw",
            )
        self.bn2 = layers.BatchNormalization(name="bn2", **bn)
        self.conv_pwl = layers.Conv2D(
            self.filters, 1, use_bias=False, kernel_initializer=CONV_INIT,
            kernel_regularizer=reg, name="conv_pwl",
        )
        self.bn3 = layers.BatchNormalization(name="bn3", **bn)

    def build(self, input_shape):
        in_ch = int(input_shape[-1])
        if self.residual and (self.strides != 1 or in_ch != self.filters):
            raise ValueError(
                f"{self.name}: a residual needs stride 1 and in == out channels "
                f"(stride {self.strides}, {in_ch} -> {self.filters})."
            )
        shape = tuple(input_shape)
        if self.expansion != 1:
            self.conv_pw = layers.Conv2D(
                in_ch * self.expansion, 1, use_bias=False, kernel_initializer=CONV_INIT,
                kernel_regularizer=self._reg, name="conv_pw",
            )
            self.conv_pw.build(shape)
            shape = self.conv_pw.compute_output_shape(shape)
            self.bn1.build(shape)
        self.conv_dw.build(shape)
        shape = self.conv_dw.compute_output_shape(shape)
        self.bn2.build(shape)
        self.conv_pwl.build(shape)
        shape = self.conv_pwl.compute_output_shape(shape)
        self.bn3.build(shape)

    def call(self, inputs, training=None, return_runtime=False):
        """Forward pass; with ``return_runtime=True`` returns ``(output, runtime_ms)``
        (0 for a fixed layer or a superkernel without table entries)."""
        x = inputs
        if self.conv_pw is not None:
            x = keras.ops.relu(self.bn1(self.conv_pw(x), training=training))
        runtime = 0.0
        if return_runtime and self.searchable and self.runtimes is not None:
            x, runtime = self.conv_dw(x, training=training, return_runtime=True)
        else:
            x = self.conv_dw(x, training=training)
        x = keras.ops.relu(self.bn2(x, training=training))
        x = self.bn3(self.conv_pwl(x), training=training)
        if self.residual:
            x = x + inputs
        return (x, runtime) if return_runtime else x

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape

        def out(s):
            return None if s is None else -(-s // self.strides)

        return (n, out(h), out(w), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "expansion": self.expansion,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "searchable": self.searchable,
                "allow_skip": self.allow_skip,
                "residual": self.residual,
                "runtimes": self.runtimes,
                "weight_decay": self.weight_decay,
            }
        )
        return config
