"""Resolve an architecture into a concrete layer plan (no Keras needed).

An architecture (a registry name, an ``arch.json``, or a list of stage strings)
plus the build options (classes, input size, width multiplier, ...) resolve
into a :class:`ModelPlan`: stem, one :class:`LayerPlan` per MBConv layer with
its resolved channels, stride, residual and feature-map size, and head. The
Keras builder (:mod:`spnas.models.builder`) turns a plan into a model;
:meth:`ModelPlan.count_params` counts its parameters without building one.

Conventions (Single-Path NAS Sec. 3.1 and its MnasNet/MobileNetV2 backbone):
stage strings carry unscaled channels; the width multiplier rounds the stem
and every stage's channels with MnasNet's ``round_filters`` (divisor 8, never
more than 10 % down); the head is scaled according to the entry's
``head_scaling`` (MobileNetV2: only for width > 1). A layer is residual when
its stride is 1, its input and output channels agree and its stage is not
``noskip``. Downsampling follows :meth:`SearchSpace.layers` so a decoded net
accepts exactly the inputs its supernet accepted: the stem stride must divide
the input size, and a strided layer needs a feature map at least as large as
its stride ('same' padding, output ``ceil(hw / stride)``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence
from typing import Any

from spnas.arch.handoff import Arch, load_arch, stage_strings, validate_arch
from spnas.arch.registry import (
    HEAD_SCALING,
    ArchEntry,
    UnknownArchError,
    get_arch,
    list_archs,
    scaled_head,
)
from spnas.arch.stages import ArchError, decode_all
from spnas.layer_plan import (
    MBCONV,
    PROJECTION,
    LayerPlan,
    Run,
    head_macs,
    head_params,
    stem_macs,
    stem_params,
    walk,
)
from spnas.space import SearchSpace, round_filters

# Defaults where neither the caller nor the architecture says otherwise
# (the paper's ImageNet setting, reference-facts.md).
DEFAULT_NUM_CLASSES = 1000
DEFAULT_INPUT_SIZE = 224
DEFAULT_WIDTH = 1.0
DEFAULT_DROPOUT = 0.2
DEFAULT_STEM_CHANNELS = 32
DEFAULT_STEM_STRIDE = 2
DEFAULT_HEAD_CHANNELS = 1280

ArchLike = str | os.PathLike | Sequence[str] | ArchEntry | Arch | dict


# The name an earlier layout gave to ArchError raised while planning a net.
ArchitectureError = ArchError


@dataclasses.dataclass(frozen=True)
class ModelPlan:
    """Everything the builder needs, fully resolved (channels already scaled)."""

    name: str
    stages: tuple[str, ...]  # unscaled stage strings
    input_size: int
    num_classes: int
    dropout: float
    width: float
    stem_channels: int  # scaled
    stem_stride: int
    head_channels: int  # scaled
    layers: tuple[LayerPlan, ...]

    def count_params(self) -> int:
        """Trainable parameters, as timm/torchvision report them.

        Keras' ``model.count_params()`` is larger by the BN moving mean and
        variance (2 per BN channel), which are not trained.
        """
        last = self.layers[-1].out_ch if self.layers else self.stem_channels
        return (stem_params(self.stem_channels) + sum(layer.count_params() for layer in self.layers)
                + head_params(last, self.head_channels, self.num_classes))

    def count_macs(self) -> int:
        """Multiply-accumulates of one image, as MobileNet papers count them (convs and
        the classifier; BN, ReLU, additions and pooling not counted)."""
        last = self.layers[-1] if self.layers else None
        last_ch = last.out_ch if last else self.stem_channels
        last_hw = last.output_hw if last else self.input_size // self.stem_stride
        return (stem_macs(self.input_size, self.stem_stride, self.stem_channels)
                + sum(layer.count_macs() for layer in self.layers)
                + head_macs(last_hw, last_ch, self.head_channels, self.num_classes))


@dataclasses.dataclass(frozen=True)
class _Source:
    """What an architecture says about itself before the caller's overrides."""

    name: str
    stages: tuple[str, ...]
    options: dict[str, Any]


def _from_entry(entry: ArchEntry) -> _Source:
    return _Source(
        name=entry.name,
        stages=tuple(entry.stages),
        options=dict(
            stem_channels=entry.stem_channels,
            stem_stride=entry.stem_stride,
            head_channels=entry.head_channels,
            head_scaling=entry.head_scaling,
            width=entry.width,
            dropout=entry.dropout,
            input_size=entry.input_size,
        ),
    )


def _from_arch_json(data: dict, where: str) -> _Source:
    """An arch.json dictionary (already validated by ``validate_arch``)."""
    name = "arch"
    if where != "(in memory)":
        name = os.path.splitext(os.path.basename(where))[0] or name
    if "space" not in data:
        # No space: the stages are all there is; they are taken as unscaled.
        return _Source(name=name, stages=tuple(data["stages"]), options={})
    try:
        space = SearchSpace.from_dict(data["space"])
        # The stage strings an arch.json stores are spelt at the space's width;
        # the builder wants unscaled channels, so respell them at width 1 from
        # the per-layer choices (this also cross-checks the file).
        base = dataclasses.replace(space, width=1.0)
        unscaled = stage_strings(base, data["layers"])
        scaled = stage_strings(space, data["layers"])
    except (TypeError, ValueError) as e:
        raise ArchError(f"arch {where!r}: {e}") from None
    stored = data["stages"]
    if not isinstance(stored, list) or stored not in (scaled, unscaled):
        raise ArchError(
            f"arch {where!r}: its 'stages' {stored!r} disagree with its 'layers' "
            f"(which give {scaled})."
        )
    return _Source(
        name=name,
        stages=tuple(unscaled),
        options=dict(
            stem_channels=space.stem_channels,
            stem_stride=space.stem_stride,
            head_channels=space.head_channels,
            head_scaling="above_1",  # SearchSpace.head_filters
            width=space.width,
            dropout=space.dropout,
            input_size=space.input_size,
            num_classes=space.num_classes,
        ),
    )


def _resolve_source(arch: ArchLike) -> _Source:
    if isinstance(arch, ArchEntry):
        return _from_entry(arch)
    if isinstance(arch, Arch):
        return _from_arch_json(arch.data, arch.where)
    if isinstance(arch, dict):
        return _from_arch_json(validate_arch(arch), "(in memory)")
    if isinstance(arch, (str, os.PathLike)):
        path = os.fspath(arch)
        looks_like_path = (
            isinstance(arch, os.PathLike)
            or path.endswith(".json")
            or os.sep in path
            or (os.altsep is not None and os.altsep in path)
        )
        if not looks_like_path:
            try:
                return _from_entry(get_arch(path))
            except UnknownArchError:
                if not os.path.isfile(path):
                    raise UnknownArchError(
                        f"Unknown architecture {path!r}: not a registry name (known: "
                        f"{', '.join(list_archs())}) nor an arch.json file."
                    ) from None
        return _from_arch_json(load_arch(path), path)
    if isinstance(arch, Sequence):
        return _Source(name="convnet", stages=tuple(arch), options={})
    raise TypeError(
        f"arch must be a registry name, an arch.json path or dict, an ArchEntry or a list of "
        f"stage strings; got {type(arch).__name__}."
    )


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ArchitectureError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def plan_model(
    arch: ArchLike,
    num_classes: int | None = None,
    input_size: int | None = None,
    width: float | None = None,
    dropout: float | None = None,
    *,
    stem_channels: int | None = None,
    stem_stride: int | None = None,
    head_channels: int | None = None,
    name: str | None = None,
) -> ModelPlan:
    """Resolves an architecture and build options into a :class:`ModelPlan`.

    Each option left as ``None`` takes the architecture's own value (a
    registry entry's fields, an arch.json's ``space``), else the paper's
    ImageNet default (1000 classes, 224x224, width 1.0, dropout 0.2, stem 32
    channels stride 2, head 1280). ``stem_channels`` and ``head_channels`` are
    unscaled: the width multiplier applies to them as to the stages.

    Raises:
      ArchitectureError: the input cannot be downsampled as asked (names the
        layer) or an option is out of range.
      ValueError: a malformed stage string (names the token), an unknown
        architecture name, or a bad arch.json (``ArchError``).
    """
    source = _resolve_source(arch)
    specs = decode_all(list(source.stages))
    opts = source.options

    def pick(key: str, given: Any, default: Any) -> Any:
        return given if given is not None else opts.get(key, default)

    num_classes = _check_int(
        "num_classes", pick("num_classes", num_classes, DEFAULT_NUM_CLASSES), 2
    )
    input_size = _check_int("input_size", pick("input_size", input_size, DEFAULT_INPUT_SIZE), 1)
    stem_stride = _check_int(
        "stem_stride", pick("stem_stride", stem_stride, DEFAULT_STEM_STRIDE), 1
    )
    stem_base = _check_int(
        "stem_channels", pick("stem_channels", stem_channels, DEFAULT_STEM_CHANNELS), 1
    )
    head_base = _check_int(
        "head_channels", pick("head_channels", head_channels, DEFAULT_HEAD_CHANNELS), 1
    )
    width = float(pick("width", width, DEFAULT_WIDTH))
    if not math.isfinite(width) or width <= 0:
        raise ArchitectureError(f"width must be a positive number, got {width!r}.")
    dropout = float(pick("dropout", dropout, DEFAULT_DROPOUT))
    if not 0.0 <= dropout < 1.0:
        raise ArchitectureError(f"dropout must be in [0, 1), got {dropout!r}.")
    head_scaling = opts.get("head_scaling", "above_1")
    if head_scaling not in HEAD_SCALING:
        raise ArchitectureError(
            f"head_scaling must be one of {HEAD_SCALING}, got {head_scaling!r}."
        )

    layers = _plan_layers(source.stages, specs, input_size, stem_stride,
                          round_filters(stem_base, width), width)
    model_name = name if name is not None else source.name
    model_name = re.sub(r"[^A-Za-z0-9_.-]", "_", model_name) or "convnet"
    return ModelPlan(
        name=model_name,
        stages=tuple(source.stages),
        input_size=input_size,
        num_classes=num_classes,
        dropout=dropout,
        width=width,
        stem_channels=round_filters(stem_base, width),
        stem_stride=stem_stride,
        head_channels=scaled_head(head_base, width, head_scaling),
        layers=tuple(layers),
    )


def _plan_layers(
    stages: Sequence[str], specs: Sequence, input_size: int, stem_stride: int, stem_ch: int,
    width: float,
) -> list[LayerPlan]:
    """One LayerPlan per layer, from the walk the search space takes too."""
    runs = [Run(spec.repeats, spec.stride, round_filters(spec.channels, width), spec.noskip,
                text) for text, spec in zip(stages, specs)]
    return [
        LayerPlan(
            index=i, block=pos.run, name=f"blocks_{pos.run}_{pos.repeat}", in_ch=pos.in_ch,
            out_ch=pos.out_ch, kernel=specs[pos.run].kernel, stride=pos.stride,
            expansion=specs[pos.run].expansion, residual=pos.residual, input_hw=pos.input_hw,
            output_hw=pos.output_hw,
            op=PROJECTION if specs[pos.run].block_type == "pj" else MBCONV)
        for i, pos in enumerate(walk(runs, input_size, stem_stride, stem_ch, ArchitectureError,
                                     lambda b, r, _: f"blocks_{b}_{r}", "stage"))
    ]


def count_params(
    arch: ArchLike,
    num_classes: int | None = None,
    input_size: int | None = None,
    width: float | None = None,
    **options: Any,
) -> int:
    """Trainable parameters of ``build_model``'s network, without building it.

    Counts what timm and torchvision report (BN moving statistics excluded).
    Takes the same arguments as :func:`spnas.models.build_model`
    (``weight_decay`` and ``name`` do not change the count).
    """
    options.pop("weight_decay", None)
    return plan_model(arch, num_classes, input_size, width, **options).count_params()
