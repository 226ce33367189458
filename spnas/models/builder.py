"""Plain Keras ConvNets from architectures: the model a search hands to training.

After the search (Single-Path NAS Sec. 3.2 and 4.1) the decoded network is a plain
MBConv ConvNet: no superkernel, no masks, skipped layers gone. This module
builds it (and the baselines of the paper's Table 1 and Fig. 8) as a Keras
functional model of standard layers only (Conv2D, DepthwiseConv2D,
BatchNormalization, ReLU, Add, GlobalAveragePooling2D, Dropout, Dense), so it
trains, saves and converts to TFLite like any Keras model.

The model takes float32 images already normalised (ImageNet mean/std, see
:mod:`spnas.space`; no preprocessing layer) and returns logits.
"""

from __future__ import annotations

import keras

from spnas.arch.plan import ArchLike, ModelPlan, count_params, plan_model
from spnas.layer_plan import PROJECTION
from spnas.models import blocks

__all__ = ["build_from_plan", "build_model", "count_params"]


def build_from_plan(plan: ModelPlan, weight_decay: float = 0.0) -> keras.Model:
    """Builds the Keras model of a resolved :class:`ModelPlan`.

    Args:
      plan: from :func:`spnas.arch.plan.plan_model`.
      weight_decay: L2 coefficient; the loss gains ``weight_decay * 1/2 ||w||^2``
        for every conv, depthwise and dense weight (not BN), as MnasNet.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}.")
    inputs = keras.Input(shape=(plan.input_size, plan.input_size, 3), dtype="float32", name="image")
    x = blocks.stem(inputs, plan.stem_channels, plan.stem_stride, weight_decay=weight_decay)
    for layer in plan.layers:
        if layer.op == PROJECTION:
            x = blocks.projection(x, layer.out_ch, layer.stride, layer.name,
                                  weight_decay=weight_decay)
            continue
        x = blocks.mbconv(
            x,
            filters=layer.out_ch,
            kernel=layer.kernel,
            stride=layer.stride,
            expansion=layer.expansion,
            residual=layer.residual,
            name=layer.name,
            weight_decay=weight_decay,
        )
    logits = blocks.head(
        x, plan.head_channels, plan.num_classes, plan.dropout, weight_decay=weight_decay
    )
    return keras.Model(inputs, logits, name=plan.name)


def build_model(
    arch: ArchLike,
    num_classes: int | None = None,
    input_size: int | None = None,
    width: float | None = None,
    dropout: float | None = None,
    *,
    stem_channels: int | None = None,
    stem_stride: int | None = None,
    head_channels: int | None = None,
    weight_decay: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """Builds a plain ConvNet from a registry name, an arch.json, or stage strings.

    Args:
      arch: a registry name (``"spnas_pixel1"``, see
        :func:`spnas.models.list_archs`), a path to an ``arch.json``
        (:func:`spnas.arch.handoff.write_arch`) or its loaded dict, an
        :class:`ArchEntry`, or a list of stage strings such as
        ``["ds_r1_k3_s1_c16", "ir_r2_k3_s2_e6_c24"]`` (unscaled channels).
      num_classes: classifier outputs.
      input_size: square input resolution.
      width: width multiplier, applied with MnasNet's channel rounding to the
        stem and every stage; the head follows the entry's ``head_scaling``
        (MobileNetV2: only for width > 1).
      dropout: dropout rate before the classifier.
      stem_channels: unscaled stem channels.
      stem_stride: stem stride.
      head_channels: unscaled head channels.
      weight_decay: L2 coefficient (``wd * 1/2 ||w||^2`` on non-BN weights).
      name: Keras model name (default: the architecture's name).

    Every option left as ``None`` takes the architecture's own value (registry
    entry fields; an arch.json's ``space``), else the paper's ImageNet default
    (1000 classes, 224, width 1.0, dropout 0.2, stem 32 / stride 2, head 1280).

    Returns:
      A functional ``keras.Model`` (weights created, untrained) mapping
      ``(batch, input_size, input_size, 3)`` float32 images to logits.

    Raises:
      ArchitectureError: (a ValueError) the input cannot be downsampled as
        asked, naming the layer, or an option is out of range.
      ValueError: a malformed stage string (names the token), an unknown name,
        or a malformed / unknown-format arch.json (``ArchError``).
      FileNotFoundError: an arch.json path that does not exist.
    """
    plan = plan_model(
        arch,
        num_classes,
        input_size,
        width,
        dropout,
        stem_channels=stem_channels,
        stem_stride=stem_stride,
        head_channels=head_channels,
        name=name,
    )
    return build_from_plan(plan, weight_decay=weight_decay)
