"""The one MBConv layer of the package (timm's ``InvertedResidual``) and the base
of the stem and head (:mod:`spnas.superkernel.stem_head`).

MBConv (paper Fig. 2, middle): 1x1 expansion (``conv_pw``, none for expansion 1),
BN, ReLU, the depthwise conv (``conv_dw``), BN, ReLU, 1x1 linear projection
(``conv_pwl``), BN, and a residual connection when asked (stride 1 and in == out
widths). The depthwise conv is made by one method, :meth:`MBConv.make_conv_dw`:
the 5x5 superkernel in a searchable layer, a plain ``DepthwiseConv2D`` in a fixed
one (the paper's first (e1) and last layers, and every layer of a plain model).
A subclass changes only that method, as timm's ``CondConvResidual`` changes only
the convs of ``InvertedResidual``.

Every layer here is made of standard Keras layers and can be used two ways:

* nested (the supernet): called like any layer, its sub-layers named ``conv_pw``,
  ``bn1`` ... inside it;
* flat (``flat=True``, the plain models): :meth:`Composite.apply_to` wires the
  sub-layers themselves into a functional graph, named ``{name}_conv_pw``,
  ``{name}_bn1`` ..., so the model holds standard Keras layers only and exports to
  TFLite like any Keras model.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from spnas.choices import CANDIDATES
from spnas.layer_plan import PROJECTION
from spnas.space import BN_EPSILON, BN_MOMENTUM, SUPERKERNEL_INITS, LayerSpec
from spnas.superkernel.layer import SuperkernelDepthwiseConv

__all__ = [
    "conv_init",
    "superkernel_init",
    "Composite",
    "MBConv",
    "Projection",
    "SearchableMBConv",
    "build_chain",
    "training_kwargs",
    "weight_decay_losses",
]

def conv_init() -> keras.initializers.Initializer:
    """MnasNet's init of convolutions (its TPU code): a fan-out normal.

    A new initializer for every weight, made when the layer is made. A Keras 3
    initializer draws its seed when it is created and then gives the same values
    for the same shape at every call, so one module-level instance would give every
    same-shaped conv identical weights, from a seed drawn at import time, before
    ``keras.utils.set_random_seed`` (another net per process). Made here, after the
    run has set its seed, each weight gets its own seed, and a seed reproduces the
    net.
    """
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal")




def superkernel_init(mode: str = "fan_in") -> keras.initializers.Initializer:
    """The superkernel's init (a new one per weight, see :func:`conv_init`).

    ``"fan_in"``: Keras' fan_in of a (5, 5, C, 1) kernel is 25 C, so every masked
    group starts with an L2 norm near 1 whatever C is. ``"fan_out"`` (the
    release's MnasNet init, std sqrt(2/25)): a group of n weights starts near
    0.28 sqrt(n), i.e. 4-27 in the CIFAR space (more at width 1), against
    thresholds initialised at 0, so the sigmoid gradient that reaches the
    thresholds starts tiny (e^-4..e^-27) and the decisions move only as the norms
    shrink. BN right after
    the depthwise conv makes the kernel's scale irrelevant to the function.
    bench/table1.py measures whether the choice changes what a search picks.
    """
    if mode not in SUPERKERNEL_INITS:
        raise ValueError(f"superkernel_init must be one of {SUPERKERNEL_INITS}, got {mode!r}.")
    if mode == "fan_out":
        return conv_init()
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="untruncated_normal")


def training_kwargs(training) -> dict:
    """``{"training": training}``, or nothing when it is None (Keras then takes the
    mode from the outer call, and a functional graph records no extra argument)."""
    return {} if training is None else {"training": training}


def weight_decay_losses(variables) -> list:
    """The regularization losses of ``variables``, the L2 terms of one coefficient summed
    into one term.

    Keras makes one loss per regularised weight (``l2 * sum(w^2)``) and reduces each
    one again before adding them up: about 27 graph ops per weight in a train step,
    gradients included (3,300 of the embedded default search's 24,000). Summing the
    ``sum(w^2)`` first and multiplying by ``l2`` once gives the same value (to
    rounding) and, weight for weight, the same gradient ``2 l2 w`` computed the same
    way, from half the ops (bench/build_time.py). Other regularizers keep their own terms.
    """
    groups: dict[tuple, list] = {}  # (l2, dtype) -> the weights' sums of squares
    losses = []
    for v in variables:
        reg = getattr(v, "regularizer", None)
        if reg is None:
            continue
        if type(reg) is keras.regularizers.L2:
            groups.setdefault((reg.l2, str(v.dtype)), []).append(ops.sum(ops.square(v)))
        else:
            losses.append(reg(v))
    for (l2, dtype), sums in groups.items():
        losses.append(ops.cast(l2, dtype) * ops.sum(ops.stack(sums)))
    return losses


def build_chain(parts, input_shape) -> tuple:
    """Builds ``parts`` one after the other from ``input_shape``; returns the output shape."""
    shape = tuple(input_shape)
    for part in parts:
        part.build(shape)
        shape = tuple(part.compute_output_shape(shape))
    return shape


class Composite(keras.layers.Layer):
    """A layer made of standard Keras layers, nested or flat (see the module doc).

    Args:
      weight_decay: L2 coefficient on all non-BN weights (loss += wd * 1/2 ||w||^2).
      flat: name the sub-layers ``{name}_{sub}`` for :meth:`apply_to`.

    A subclass creates its sub-layers in ``__init__`` (or, where they depend on the
    input, in :meth:`prepare`), lists them in order in :meth:`chain` and writes
    ``call`` with Keras layers only, so that the same ``call`` also wires a
    functional graph.
    """

    # The constructor arguments get_config() returns (as attributes of the same names).
    config_keys: tuple[str, ...] = ("weight_decay", "flat")

    def __init__(self, weight_decay: float = 0.0, flat: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.weight_decay = float(weight_decay)
        self.flat = bool(flat)
        self._reg = keras.regularizers.L2(self.weight_decay / 2) if self.weight_decay else None

    # -- sub-layer factories ---------------------------------------------------------------
    def sub_name(self, name: str) -> str:
        return f"{self.name}_{name}" if self.flat else name

    def make_conv(self, filters: int, kernel: int, name: str, strides: int = 1) -> layers.Conv2D:
        """Bias-free conv with MnasNet's init (``same`` padding where kernel > 1)."""
        return layers.Conv2D(
            filters, kernel, strides=strides, padding="same" if kernel > 1 else "valid",
            use_bias=False, kernel_initializer=conv_init(), kernel_regularizer=self._reg,
            name=self.sub_name(name),
        )

    def make_bn(self, name: str) -> layers.BatchNormalization:
        return layers.BatchNormalization(
            momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=self.sub_name(name)
        )

    def make_relu(self, name: str) -> layers.ReLU:
        return layers.ReLU(name=self.sub_name(name))

    # -- structure -------------------------------------------------------------------------
    def prepare(self, input_shape) -> None:
        """Checks the input and creates the sub-layers that depend on it (none here)."""

    def chain(self) -> list:
        """The sub-layers in the order they apply (a residual add excluded)."""
        raise NotImplementedError

    def build(self, input_shape):
        self.prepare(input_shape)
        build_chain(self.chain(), input_shape)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for part in self.chain():
            shape = tuple(part.compute_output_shape(shape))
        return shape

    def apply_to(self, x):
        """Wires the sub-layers into the functional graph of ``x``, each as a layer of
        the model (not this layer), and returns the output tensor."""
        if not self.flat:
            raise ValueError(f"{self.name}: apply_to() needs a layer made with flat=True.")
        self.prepare(tuple(x.shape))
        return self.call(x)

    def get_config(self):
        config = super().get_config()
        config.update({key: getattr(self, key) for key in self.config_keys})
        return config


@keras.saving.register_keras_serializable(package="spnas")
class Projection(Composite):
    """A 1x1 conv with a stride (``conv``) and BN (``bn``), no activation: a skipped
    layer that changes the shape (NAS-Bench-Macro's identity at a stage's first layer).

    Args:
      filters: output channels.
      strides: the conv's stride.
      weight_decay, flat: see :class:`Composite`.
    """

    config_keys = Composite.config_keys + ("filters", "strides")

    def __init__(self, filters: int, strides: int = 1, weight_decay: float = 0.0, **kwargs):
        super().__init__(weight_decay=weight_decay, **kwargs)
        self.filters = int(filters)
        self.strides = int(strides)
        self.conv = self.make_conv(self.filters, 1, "conv", strides=self.strides)
        self.bn = self.make_bn("bn")

    def chain(self) -> list:
        return [self.conv, self.bn]

    def call(self, inputs, training=None):
        return self.bn(self.conv(inputs), **training_kwargs(training))


@keras.saving.register_keras_serializable(package="spnas")
class SearchableMBConv(Composite):
    """One MBConv layer: searchable (superkernel) or fixed (plain depthwise conv).

    ``MBConv`` is the same class (the name the plain models use).

    Args:
      filters: output channels.
      expansion: expansion ratio of the 1x1 conv (6 for searchable layers; 1
        means no expansion conv, as in the fixed first layer).
      kernel_size: depthwise kernel of a fixed layer (the superkernel is 5x5).
      strides: depthwise stride.
      searchable: use the superkernel (True) or a plain depthwise conv.
      allow_skip: the superkernel may choose skip (not for the first layer of a block).
      residual: add the input to the output (only valid for stride 1, in == out).
      runtimes: the layer's cost-table entries, see SuperkernelDepthwiseConv.
      weight_decay: L2 coefficient on all non-BN weights (loss += wd * 1/2 ||w||^2).
      flat: see :class:`Composite`.
      candidates: the superkernel's candidate set (:mod:`spnas.choices`).
      projection: skipping the layer is a 1x1 conv + BN (:class:`Projection`) rather
        than the residual's identity; in the supernet that path is added exactly
        when the skip indicator is off.
      exact_cost: see SuperkernelDepthwiseConv.
    """

    config_keys = Composite.config_keys + (
        "filters", "expansion", "kernel_size", "strides", "searchable", "allow_skip", "residual",
        "runtimes", "kernel_init", "candidates", "projection", "exact_cost",
    )

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
        kernel_init: str = "fan_in",
        candidates=CANDIDATES,
        projection: bool = False,
        exact_cost: bool = False,
        **kwargs,
    ):
        super().__init__(weight_decay=weight_decay, **kwargs)
        self.kernel_init = str(kernel_init)
        self.candidates = list(candidates)
        self.projection = bool(projection) and bool(searchable) and bool(allow_skip)
        self.exact_cost = bool(exact_cost)
        self.filters = int(filters)
        self.expansion = int(expansion)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.searchable = bool(searchable)
        self.allow_skip = bool(allow_skip) and self.searchable
        self.residual = bool(residual)
        self.runtimes = runtimes
        # conv_pw's width depends on the input channels: it is created in prepare().
        self.conv_pw = None
        self.bn1 = self.make_bn("bn1") if self.expansion != 1 else None
        self.act1 = self.make_relu("relu1") if self.expansion != 1 else None
        self.conv_dw = self.make_conv_dw()
        self.bn2 = self.make_bn("bn2")
        self.act2 = self.make_relu("relu2")
        self.conv_pwl = self.make_conv(self.filters, 1, "conv_pwl")
        self.bn3 = self.make_bn("bn3")
        self.shortcut = layers.Add(name=self.sub_name("add")) if self.residual else None
        self.proj = Projection(self.filters, self.strides, self.weight_decay,
                               name=self.sub_name("proj")) if self.projection else None

    @classmethod
    def from_spec(cls, spec: LayerSpec, runtimes: dict | None = None, weight_decay: float = 0.0,
                  kernel_init: str = "fan_in", exact_cost: bool = False):
        """The supernet's layer ``spec`` (named ``layerNN``); ``kernel_init`` is the
        superkernel's (:data:`SUPERKERNEL_INITS`)."""
        return cls(
            spec.out_ch, spec.expansion, spec.kernel, spec.stride, searchable=spec.searchable,
            allow_skip=spec.skippable, residual=spec.residual,
            runtimes=runtimes if spec.searchable else None, weight_decay=weight_decay,
            kernel_init=kernel_init, name=f"layer{spec.index:02d}",
            candidates=spec.candidates if spec.searchable else CANDIDATES,
            projection=spec.skip_op == PROJECTION, exact_cost=exact_cost,
        )

    def make_conv_dw(self) -> keras.layers.Layer:
        """The depthwise conv: the 5x5 superkernel if searchable, else a plain k x k one."""
        if self.searchable:
            return SuperkernelDepthwiseConv(
                strides=self.strides, allow_skip=self.allow_skip, runtimes=self.runtimes,
                kernel_initializer=superkernel_init(self.kernel_init), kernel_regularizer=self._reg,
                candidates=self.candidates, exact_cost=self.exact_cost,
                name=self.sub_name("conv_dw"),
            )
        return layers.DepthwiseConv2D(
            self.kernel_size, strides=self.strides, padding="same", use_bias=False,
            depthwise_initializer=conv_init(), depthwise_regularizer=self._reg,
            name=self.sub_name("conv_dw"),
        )

    def prepare(self, input_shape) -> None:
        in_ch = int(input_shape[-1])
        if self.residual and (self.strides != 1 or in_ch != self.filters):
            raise ValueError(
                f"{self.name}: a residual needs stride 1 and in == out channels "
                f"(stride {self.strides}, {in_ch} -> {self.filters})."
            )
        if self.expansion != 1 and self.conv_pw is None:
            self.conv_pw = self.make_conv(in_ch * self.expansion, 1, "conv_pw")

    def chain(self) -> list:
        parts = [self.conv_pw, self.bn1, self.act1] if self.expansion != 1 else []
        return parts + [self.conv_dw, self.bn2, self.act2, self.conv_pwl, self.bn3]

    def build(self, input_shape):
        super().build(input_shape)
        if self.proj is not None:
            self.proj.build(input_shape)

    def call(self, inputs, training=None, return_runtime=False):
        """Forward pass; with ``return_runtime=True`` returns ``(output, runtime_ms)``
        (0 for a fixed layer or a superkernel without table entries)."""
        mode = training_kwargs(training)
        x = inputs
        if self.conv_pw is not None:
            x = self.act1(self.bn1(self.conv_pw(x), **mode))
        runtime = 0.0
        with_runtime = return_runtime and self.searchable and self.runtimes is not None
        gate = None
        if self.proj is not None:
            x, runtime, gate = self.conv_dw(x, return_runtime=with_runtime, return_gate=True,
                                            **mode)
        elif with_runtime:
            x, runtime = self.conv_dw(x, return_runtime=True, **mode)
        else:
            x = self.conv_dw(x, **mode)
        x = self.act2(self.bn2(x, **mode))
        x = self.bn3(self.conv_pwl(x), **mode)
        if gate is not None:
            # The projection path where the skip indicator is off (gate 0), as the
            # decoded net's 1x1 conv + BN; straight-through like the indicator.
            x = x + (1.0 - ops.cast(gate, x.dtype)) * self.proj(inputs, **mode)
        if self.shortcut is not None:
            x = self.shortcut([x, inputs])
        return (x, runtime) if return_runtime else x

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape

        def out(s):
            return None if s is None else -(-s // self.strides)

        return (n, out(h), out(w), self.filters)


# One class, two names: ``MBConv`` for the definition, ``SearchableMBConv`` (its
# registered and saved name, kept so existing .keras files and imports load).
MBConv = SearchableMBConv
