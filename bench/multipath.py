"""A multi-path supernet over the Single-Path NAS space: the baseline of the
search-cost benchmark (bench-only code, not part of the ``spnas`` package).

Prior differentiable NAS (DARTS, FBNet, ProxylessNAS) keeps every candidate
operation of a layer as a separate path with its own weights and mixes the
paths' outputs with softmax weights over trainable architecture logits
(Stamoulis et al., 2019, Sec. 3.3, Eq. 5)::

    o_multi-path(x) = sum_j alpha_j * o_j(x),   alpha = softmax(logits)

Here each searchable layer holds the four MBConv candidates k3e3, k3e6, k5e3,
k5e6 (each with its own 1x1 expansion, depthwise, 1x1 projection and three BNs)
and, where the layer may be skipped, a parameter-free skip (identity) path.
The fixed first and last layers, the stem and the head are the same layers as in
:class:`spnas.search.supernet.Supernet`, so the only difference between the
two supernets is how the searchable layers encode the choices.

Weights and logits are trained jointly by one optimizer in one step (first-order,
no alternating bi-level updates, no Gumbel sampling): a lower bound on what a
DARTS/FBNet search costs per step. With a latency table the model adds FBNet's
expected-latency loss ``lambda * 1e3 * ln(constant + sum_l sum_j alpha_j R_j)``
(skip costs 0), the counterpart of the single-path runtime loss.
"""

from __future__ import annotations

import keras
from keras import ops

from spnas.choices import parse_choice
from spnas.search.supernet import (
    RUNTIME_LOSS_SCALE,
    WEIGHT_DECAY,
    cost_constant,
    latency_config,
    layer_runtimes,
)
from spnas.space import CANDIDATES, SKIP, SearchSpace
from spnas.superkernel import Head, MBConv, Stem
from spnas.superkernel.block import build_chain
from spnas.tables.table import LatencyTable

PATH_LAYERS = ("conv_pw", "bn1", "conv_dw", "bn2", "conv_pwl", "bn3")


class MultiPathMBConv(keras.layers.Layer):
    """One searchable layer as a softmax-weighted sum of separate MBConv paths.

    Each path is a plain (fixed) :class:`spnas.superkernel.MBConv` with its own
    weights, the package's one MBConv definition; this layer only mixes them.

    Args:
      in_channels: input channels (the expansion convs' widths depend on them).
      filters: output channels.
      strides: depthwise stride of every path.
      allow_skip: add the skip (identity) path; needs stride 1 and in == out.
      residual: add the input to each MBConv path's output.
      candidates: the MBConv candidates, ``k{K}_e{E}`` strings.
      runtimes: optional ``{candidate: ms}``; enables :meth:`expected_runtime_ms`.
      weight_decay: L2 on every non-BN weight of the paths (not on the logits).
    """

    def __init__(
        self,
        in_channels: int,
        filters: int,
        strides: int = 1,
        allow_skip: bool = True,
        residual: bool = True,
        candidates: tuple[str, ...] = CANDIDATES,
        runtimes: dict | None = None,
        weight_decay: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.in_channels = int(in_channels)
        self.filters = int(filters)
        self.strides = int(strides)
        self.allow_skip = bool(allow_skip)
        self.residual = bool(residual)
        self.candidates = tuple(candidates)
        self.runtimes = runtimes
        self.weight_decay = float(weight_decay)
        if self.allow_skip and (self.strides != 1 or self.in_channels != self.filters):
            raise ValueError(
                f"{self.name}: a skip path needs stride 1 and in == out channels "
                f"(stride {self.strides}, {self.in_channels} -> {self.filters})."
            )
        if runtimes is not None:
            missing = [c for c in self.candidates if c not in runtimes]
            if missing:
                raise ValueError(f"{self.name}: runtimes lack {missing}.")
        self.path_blocks: list[MBConv] = []
        for choice in self.candidates:
            kernel, expansion = parse_choice(choice)
            self.path_blocks.append(
                MBConv(
                    self.filters, expansion=expansion, kernel_size=kernel, strides=self.strides,
                    searchable=False, residual=self.residual, weight_decay=self.weight_decay,
                    name=choice.replace("_", ""),
                )
            )

    @property
    def paths(self) -> list[dict[str, keras.layers.Layer]]:
        """Per MBConv path: its sub-layers by timm name (``conv_pw`` ... ``bn3``)."""
        return [{key: getattr(block, key) for key in PATH_LAYERS} for block in self.path_blocks]

    @property
    def num_paths(self) -> int:
        """MBConv paths plus the skip path where the layer may be skipped."""
        return len(self.candidates) + int(self.allow_skip)

    @property
    def path_names(self) -> list[str]:
        return list(self.candidates) + ([SKIP] if self.allow_skip else [])

    def build(self, input_shape):
        if int(input_shape[-1]) != self.in_channels:
            raise ValueError(
                f"{self.name}: built for {self.in_channels} input channels, got {input_shape[-1]}."
            )
        for block in self.path_blocks:
            block.build(tuple(input_shape))
        # Uniform initial path weights, as in DARTS and FBNet. Kept in float32 under
        # mixed precision (the softmax and the latency); call() casts the weights.
        self.arch_logits = self.add_weight(
            name="arch_logits", shape=(self.num_paths,), initializer="zeros", autocast=False
        )

    def path_weights(self):
        """``softmax(arch_logits)``, one weight per path (skip last)."""
        return ops.softmax(self.arch_logits)

    def call(self, inputs, training=None):
        alpha = ops.cast(self.path_weights(), inputs.dtype)
        out = None
        for j, block in enumerate(self.path_blocks):
            term = alpha[j] * block(inputs, training=training)
            out = term if out is None else out + term
        if self.allow_skip:
            out = out + alpha[-1] * inputs
        return out

    def expected_runtime_ms(self):
        """FBNet's differentiable latency: ``sum_j alpha_j R_j`` (skip costs 0)."""
        if self.runtimes is None:
            raise ValueError(f"{self.name} has no latency-table entries.")
        alpha = self.path_weights()
        total = 0.0
        for j, choice in enumerate(self.candidates):
            total = total + alpha[j] * float(self.runtimes[choice])
        return total

    def compute_output_shape(self, input_shape):
        return self.path_blocks[0].compute_output_shape(input_shape)


class MultiPathSupernet(keras.Model):
    """The Single-Path NAS space as a multi-path supernet (Eq. 5).

    Args:
      space: the search space.
      latency: as :func:`spnas.search.supernet.latency_config`, or None.
      weight_decay: L2 on every non-BN weight (not on the architecture logits).
    """

    def __init__(
        self,
        space: SearchSpace | None = None,
        latency: dict | None = None,
        weight_decay: float = WEIGHT_DECAY,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.space = space or SearchSpace()
        self.latency = latency
        self.weight_decay = float(weight_decay)
        runtimes = layer_runtimes(self.space, latency)
        wd = self.weight_decay
        # The stem, the head and the fixed layers are the single-path supernet's.
        self.stem = Stem(self.space.stem_filters, self.space.stem_stride, wd, name="stem")
        self.mbconv: list[keras.layers.Layer] = []
        for spec in self.space.layers():
            if spec.searchable:
                block = MultiPathMBConv(
                    in_channels=spec.in_ch, filters=spec.out_ch, strides=spec.stride,
                    allow_skip=spec.skippable, residual=spec.residual,
                    runtimes=runtimes.get(str(spec.index)), weight_decay=wd,
                    name=f"layer{spec.index:02d}",
                )
            else:
                block = MBConv.from_spec(spec, weight_decay=wd)
            self.mbconv.append(block)
        self.head = Head(self.space.head_filters, self.space.num_classes, self.space.dropout, wd,
                         name="head")
        self.runtime_lambda = self.add_weight(
            name="runtime_lambda", shape=(), initializer="zeros", trainable=False, autocast=False
        )

    @property
    def searchable_blocks(self) -> list[MultiPathMBConv]:
        return [b for b in self.mbconv if isinstance(b, MultiPathMBConv)]

    def call(self, inputs, training=None):
        x = self.stem(inputs, training=training)
        for block in self.mbconv:
            x = block(x, training=training)
        logits = self.head(x, training=training)
        if self.latency is not None:
            self.add_loss(
                self.runtime_lambda * RUNTIME_LOSS_SCALE * ops.log(self.expected_runtime_ms())
            )
        return logits

    def expected_runtime_ms(self):
        """``constant + sum_l sum_j alpha_lj R_lj`` in ms."""
        if self.latency is None:
            raise ValueError("This supernet was built without a latency table.")
        total = ops.convert_to_tensor(cost_constant(self.latency))
        for block in self.searchable_blocks:
            total = total + block.expected_runtime_ms()
        return total

    def build(self, input_shape=None):
        size = self.space.input_size
        build_chain([self.stem, *self.mbconv, self.head], input_shape or (None, size, size, 3))
        self.built = True

    def path_weights(self) -> list[dict[str, float]]:
        """Per searchable layer: ``{path: softmax weight}`` as floats."""
        out = []
        for block in self.searchable_blocks:
            w = ops.convert_to_numpy(block.path_weights())
            out.append({name: float(v) for name, v in zip(block.path_names, w)})
        return out


def build_multipath_supernet(
    space: SearchSpace | None = None,
    table: LatencyTable | None = None,
    weight_decay: float = WEIGHT_DECAY,
) -> MultiPathSupernet:
    """Builds (and shape-builds) a multi-path supernet, validating the table."""
    space = space or SearchSpace()
    if table is not None:
        table.validate_for(space)
    model = MultiPathSupernet(space, latency_config(table), weight_decay=weight_decay,
                              name="multipath_supernet")
    model.build((None, space.input_size, space.input_size, 3))
    return model


def mbconv_path_params(in_ch: int, out_ch: int, kernel: int, expansion: int) -> int:
    """Trainable parameters of one MBConv path (bias-free convs, BN gamma/beta).

    ``e*i*i`` (expansion) + ``k*k*e*i`` (depthwise) + ``e*i*o`` (projection) +
    ``2*(e*i + e*i + o)`` (the three BNs).
    """
    hidden = expansion * in_ch
    return hidden * in_ch + kernel * kernel * hidden + hidden * out_ch + 2 * (2 * hidden + out_ch)


def expected_multipath_params(space: SearchSpace, single_path_params: int) -> int:
    """Trainable parameters of the multi-path supernet, derived from the single-path one.

    Per searchable layer the single-path supernet holds one k5e6 path plus its
    thresholds (3 if skippable, else 2); the multi-path one holds the four
    candidate paths plus one logit per path (5 if skippable, else 4).
    """
    total = single_path_params
    for spec in space.layers():
        if not spec.searchable:
            continue
        total -= mbconv_path_params(spec.in_ch, spec.out_ch, 5, 6) + (3 if spec.skippable else 2)
        total += sum(mbconv_path_params(spec.in_ch, spec.out_ch, *parse_choice(c))
                     for c in CANDIDATES)
        total += len(CANDIDATES) + (1 if spec.skippable else 0)
    return total
