"""A small registry of named architectures (timm's ``@register_model`` pattern).

The networks of the paper's Table 1 and Fig. 8 (Stamoulis et al. 2019): the
searched Single-Path NAS Pixel 1 net, MobileNetV2, MnasNet (the B1 variant,
without squeeze-excitation), ProxylessNAS-Mobile and FBNet-B, plus width
variants for the channel-scaling comparison of Fig. 8. Entries of the paper's
search space carry their per-layer ``choices`` so their latency can be
predicted from a table; every entry carries (unscaled) stage strings.

Each entry's ``params_1000`` is a golden count of trainable parameters at
1000 classes for the network our builder makes (convs without bias, BN gamma
and beta, FC with bias; the convention of timm and torchvision); its comment
says where the figure comes from and how it compares to the published one.
Activations are ReLU everywhere (the paper's space); MobileNetV2's ReLU6 does
not change its parameter count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from spnas.arch.handoff import stage_strings
from spnas.arch.stages import ArchError
from spnas.space import SKIP, SearchSpace, round_filters

# How the head (the 1x1 conv before pooling) follows the width multiplier:
# "above_1": only for width > 1 (MobileNetV2 paper; timm mobilenetv2; Keras
#   applications; our SearchSpace.head_filters, so the spnas_pixel1 width
#   variants: 1664 channels at 1.3); "always": like every other layer
#   (``round_filters(1280)`` in the later TPU MnasNet/EfficientNet code);
# "never": fixed (torchvision and timm MnasNet). The Single-Path NAS release keeps
#   1280 at every width, so at width > 1 our spnas_pixel1 variants have a wider
#   head than the release's would (README, "Deviations").
HEAD_SCALING = ("above_1", "always", "never")


def scaled_head(channels: int, width: float, head_scaling: str = "above_1") -> int:
    """Head channels at a width multiplier under a ``head_scaling`` policy."""
    if head_scaling not in HEAD_SCALING:
        raise ArchError(f"head_scaling must be one of {HEAD_SCALING}, got {head_scaling!r}.")
    if head_scaling == "always" or (head_scaling == "above_1" and width > 1.0):
        return round_filters(channels, width)
    return channels


class UnknownArchError(ArchError, KeyError):
    """No architecture of that name: an :class:`ArchError`, and a KeyError for callers
    of a dictionary-like lookup."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclasses.dataclass(frozen=True)
class ArchEntry:
    """A registered architecture.

    Attributes:
      name: registry name.
      stages: stage strings (timm grammar), unscaled channels.
      choices: per supernet layer, when the net is in the paper's space.
      space: that search space (at the entry's width), when in it.
      stem_channels: unscaled stem channels (3x3 conv).
      head_channels: unscaled head channels (1x1 conv before pooling).
      params_1000: golden trainable-parameter count at 1000 classes.
      source: where the architecture and its count come from.
      stem_stride: stride of the stem conv.
      width: width multiplier the entry is built with by default.
      head_scaling: one of :data:`HEAD_SCALING`.
      dropout: dropout before the classifier.
      input_size: default input resolution.
    """

    name: str
    stages: tuple[str, ...]
    choices: tuple[str, ...] | None = None  # per supernet layer, when in the paper's space
    space: SearchSpace | None = None
    stem_channels: int = 32
    head_channels: int = 1280
    params_1000: int | None = None  # golden parameter count at 1000 classes
    source: str = ""
    stem_stride: int = 2
    width: float = 1.0
    head_scaling: str = "above_1"
    dropout: float = 0.2
    input_size: int = 224

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(self.stages))
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        if self.head_scaling not in HEAD_SCALING:
            raise ArchError(
                f"{self.name}: head_scaling must be one of {HEAD_SCALING}, got "
                f"{self.head_scaling!r}."
            )


_REGISTRY: dict[str, Callable[[], ArchEntry]] = {}


def register(fn: Callable[[], ArchEntry]) -> Callable[[], ArchEntry]:
    """Decorator: registers an entry under its function's name."""
    if fn.__name__ in _REGISTRY:
        raise ArchError(f"Architecture {fn.__name__!r} is registered twice.")
    _REGISTRY[fn.__name__] = fn
    return fn


def list_archs() -> list[str]:
    """Names of all registered architectures, sorted."""
    return sorted(_REGISTRY)


def get_arch(name: str) -> ArchEntry:
    """The entry registered under ``name``.

    Raises:
      UnknownArchError: (a KeyError and a ValueError) listing the known names.
    """
    if name not in _REGISTRY:
        raise UnknownArchError(f"Unknown architecture {name!r}; known: {', '.join(list_archs())}.")
    return _REGISTRY[name]()


# --- Single-Path NAS ---------------------------------------------------------------------

# The Single-Path NAS Pixel 1 network (paper Fig. 5; timm ``spnasnet_100``).
SPNAS_PIXEL1_CHOICES = (
    ("k3_e1",)
    + ("k3_e3", "k3_e3", "k3_e3", SKIP)  # block 24
    + ("k5_e6", "k3_e3", "k3_e3", "k3_e3")  # block 40
    + ("k5_e6", "k3_e3", "k3_e3", "k3_e3")  # block 80
    + ("k5_e6", "k5_e3", "k5_e3", "k5_e3")  # block 96
    + ("k5_e6", "k5_e6", "k5_e6", "k5_e6")  # block 192
    + ("k3_e6",)
)


def _pixel1(name: str, width: float, params: int, source: str) -> ArchEntry:
    # Stage strings are spelt at width 1 (unscaled); the space carries the width
    # so latency tables for a scaled space are matched against the right one.
    return ArchEntry(
        name=name,
        stages=tuple(stage_strings(SearchSpace(), SPNAS_PIXEL1_CHOICES)),
        choices=SPNAS_PIXEL1_CHOICES,
        space=SearchSpace(width=width),
        width=width,
        params_1000=params,
        source=source,
    )


@register
def spnas_pixel1() -> ArchEntry:
    # 4,421,616: timm spnasnet_100 (paper Fig. 5, searched on Pixel 1); our build
    # matches it exactly.
    return _pixel1(
        "spnas_pixel1",
        1.0,
        4_421_616,
        "Stamoulis et al. 2019, Fig. 5; timm spnasnet_100 (4,421,616)",
    )


# Width variants for Fig. 8 (channel scaling). No published counts: the goldens
# are our builder's counts, pinned against regressions (round_filters, divisor 8;
# the head is 1280 for width <= 1 and scaled above, as MobileNetV2's, where the
# release keeps 1280: see HEAD_SCALING).
@register
def spnas_pixel1_035() -> ArchEntry:
    return _pixel1("spnas_pixel1_035", 0.35, 1_791_888, "spnas_pixel1 at width 0.35 (our count)")


@register
def spnas_pixel1_050() -> ArchEntry:
    return _pixel1("spnas_pixel1_050", 0.5, 2_231_840, "spnas_pixel1 at width 0.5 (our count)")


@register
def spnas_pixel1_075() -> ArchEntry:
    return _pixel1("spnas_pixel1_075", 0.75, 3_192_192, "spnas_pixel1 at width 0.75 (our count)")


@register
def spnas_pixel1_130() -> ArchEntry:
    return _pixel1("spnas_pixel1_130", 1.3, 6_897_248, "spnas_pixel1 at width 1.3 (our count)")


@register
def spnas_pixel1_140() -> ArchEntry:
    return _pixel1("spnas_pixel1_140", 1.4, 7_931_344, "spnas_pixel1 at width 1.4 (our count)")


# --- MobileNetV2 (Sandler et al. 2018) ---------------------------------------------------

MOBILENETV2_STAGES = (
    "ds_r1_k3_s1_c16",
    "ir_r2_k3_s2_e6_c24",
    "ir_r3_k3_s2_e6_c32",
    "ir_r4_k3_s2_e6_c64",
    "ir_r3_k3_s1_e6_c96",
    "ir_r3_k3_s2_e6_c160",
    "ir_r1_k3_s1_e6_c320",
)


def _mobilenetv2(name: str, width: float, params: int, source: str) -> ArchEntry:
    # Stem 32 and head 1280 (head scaled only for width > 1), as timm
    # mobilenetv2_* and keras.applications.MobileNetV2.
    return ArchEntry(
        name=name, stages=MOBILENETV2_STAGES, width=width, params_1000=params, source=source
    )


@register
def mobilenetv2_100() -> ArchEntry:
    # 3,504,872: torchvision mobilenet_v2, timm mobilenetv2_100 (3.50M), and the
    # trainable count of keras.applications.MobileNetV2(alpha=1.0); ours matches.
    return _mobilenetv2(
        "mobilenetv2_100",
        1.0,
        3_504_872,
        "Sandler et al. 2018; torchvision mobilenet_v2 (3,504,872)",
    )


@register
def mobilenetv2_035() -> ArchEntry:
    # 1,677,128: keras.applications.MobileNetV2(alpha=0.35) trainable; timm 1.68M.
    return _mobilenetv2(
        "mobilenetv2_035",
        0.35,
        1_677_128,
        "keras.applications MobileNetV2 alpha 0.35; timm mobilenetv2_035 (1.68M)",
    )


@register
def mobilenetv2_050() -> ArchEntry:
    # 1,968,680: keras.applications.MobileNetV2(alpha=0.5) trainable; timm 1.97M.
    return _mobilenetv2(
        "mobilenetv2_050",
        0.5,
        1_968_680,
        "keras.applications MobileNetV2 alpha 0.5; timm mobilenetv2_050 (1.97M)",
    )


@register
def mobilenetv2_075() -> ArchEntry:
    # 2,636,424: keras.applications.MobileNetV2(alpha=0.75) trainable.
    return _mobilenetv2(
        "mobilenetv2_075", 0.75, 2_636_424, "keras.applications MobileNetV2 alpha 0.75 (2,636,424)"
    )


@register
def mobilenetv2_130() -> ArchEntry:
    # 5,386,792: keras.applications.MobileNetV2(alpha=1.3) trainable (head 1664).
    return _mobilenetv2(
        "mobilenetv2_130", 1.3, 5_386_792, "keras.applications MobileNetV2 alpha 1.3 (5,386,792)"
    )


@register
def mobilenetv2_140() -> ArchEntry:
    # 6,108,776: keras.applications.MobileNetV2(alpha=1.4) trainable; timm 6.11M.
    return _mobilenetv2(
        "mobilenetv2_140",
        1.4,
        6_108_776,
        "keras.applications MobileNetV2 alpha 1.4; timm mobilenetv2_140 (6.11M)",
    )


# --- MnasNet-B1 (Tan et al. 2019), no squeeze-excitation ---------------------------------

MNASNET_B1_STAGES = (
    "ds_r1_k3_s1_c16_noskip",
    "ir_r3_k3_s2_e3_c24",
    "ir_r3_k5_s2_e3_c40",
    "ir_r3_k5_s2_e6_c80",
    "ir_r2_k3_s1_e6_c96",
    "ir_r4_k5_s2_e6_c192",
    "ir_r1_k3_s1_e6_c320_noskip",
)


def _mnasnet_b1(name: str, width: float, params: int, source: str) -> ArchEntry:
    # timm mnasnet_b1 / torchvision mnasnet: stem scaled, head fixed at 1280.
    return ArchEntry(
        name=name,
        stages=MNASNET_B1_STAGES,
        width=width,
        head_scaling="never",
        params_1000=params,
        source=source,
    )


@register
def mnasnet_b1() -> ArchEntry:
    # 4,383,312: torchvision mnasnet1_0 (= MnasNet-B1), timm mnasnet_100 (4.38M).
    return _mnasnet_b1(
        "mnasnet_b1",
        1.0,
        4_383_312,
        "Tan et al. 2019 (B1, no SE); torchvision mnasnet1_0 (4,383,312)",
    )


@register
def mnasnet_b1_050() -> ArchEntry:
    # 2,218,512: torchvision mnasnet0_5; timm mnasnet_050 (2.22M).
    return _mnasnet_b1("mnasnet_b1_050", 0.5, 2_218_512, "torchvision mnasnet0_5 (2,218,512)")


@register
def mnasnet_b1_075() -> ArchEntry:
    # 3,170,208: torchvision mnasnet0_75; timm mnasnet_075 (3.17M).
    return _mnasnet_b1("mnasnet_b1_075", 0.75, 3_170_208, "torchvision mnasnet0_75 (3,170,208)")


@register
def mnasnet_b1_130() -> ArchEntry:
    # 6,282,256: torchvision mnasnet1_3.
    return _mnasnet_b1("mnasnet_b1_130", 1.3, 6_282_256, "torchvision mnasnet1_3 (6,282,256)")


@register
def mnasnet_b1_140() -> ArchEntry:
    # 7,115,728: our count; timm mnasnet_140 publishes 7.12M.
    return _mnasnet_b1("mnasnet_b1_140", 1.4, 7_115_728, "timm mnasnet_140 (7.12M)")


# --- 32x32 baselines (Table 1 on CIFAR-10) ----------------------------------------------
# MobileNetV2 and MnasNet-B1 with the downsampling of the CIFAR space
# (spnas.space.cifar_space): their seven stages already have the paper's block
# strides 1,2,2,2,1,2,1, so only the stem stride changes (1 instead of 2) and a
# 32x32 input ends at 2x2 as the space's nets do. Scale them with
# ``--config.width``; the counts are those of the 224x224 nets (strides change
# no weights).


def _cifar(entry: ArchEntry, name: str) -> ArchEntry:
    return dataclasses.replace(
        entry,
        name=name,
        stem_stride=1,
        input_size=32,
        source=f"{entry.source}; stem stride 1 for 32x32 inputs",
    )


@register
def mobilenetv2_cifar() -> ArchEntry:
    # 3,504,872 at width 1 and 1000 classes, as mobilenetv2_100.
    return _cifar(mobilenetv2_100(), "mobilenetv2_cifar")


@register
def mnasnet_b1_cifar() -> ArchEntry:
    # 4,383,312 at width 1 and 1000 classes, as mnasnet_b1.
    return _cifar(mnasnet_b1(), "mnasnet_b1_cifar")


# --- ProxylessNAS-Mobile (Cai et al. 2019) -----------------------------------------------


@register
def proxylessnas_mobile() -> ArchEntry:
    # Per-layer (kernel, expansion), skips and channels of the released
    # ``proxyless_mobile`` net (mit-han-lab/ProxylessNAS; transcribed in osmr's
    # imgclsmob ``proxylessnas_mobile``): stem 32, head 1280; a zero-layer
    # "skip" just vanishes. 4,080,512: imgclsmob's pinned count for it; the
    # paper's Table 2 says 4.1M. Our build matches exactly (320M MACs).
    stages = (
        "ds_r1_k3_s1_c16",
        "ir_r1_k5_s2_e3_c32",
        "ir_r1_k3_s1_e3_c32",  # two of four layers skipped
        "ir_r1_k7_s2_e3_c40",
        "ir_r1_k3_s1_e3_c40",
        "ir_r2_k5_s1_e3_c40",
        "ir_r1_k7_s2_e6_c80",
        "ir_r3_k5_s1_e3_c80",
        "ir_r1_k5_s1_e6_c96",
        "ir_r3_k5_s1_e3_c96",
        "ir_r2_k7_s2_e6_c192",
        "ir_r2_k7_s1_e3_c192",
        "ir_r1_k7_s1_e6_c320",
    )
    return ArchEntry(
        name="proxylessnas_mobile",
        stages=stages,
        params_1000=4_080_512,
        source="Cai et al. 2019 (Table 2: 4.1M); imgclsmob proxylessnas_mobile (4,080,512)",
    )


# --- FBNet-B (Wu et al. 2019) ------------------------------------------------------------


@register
def fbnet_b() -> ArchEntry:
    # Layers of ``fbnet_b`` in facebookresearch/mobile-vision
    # (mobile_cv/arch/fbnet_v2/fbnet_modeldef_cls.py): stem 16, head 1984, no
    # grouped convs in B. Its e1 layers have no 1x1 expansion conv (IRFBlock
    # skips ``pw`` when in == mid channels), i.e. our ``ds``. 4,801,368: our
    # count; mobile-vision's README lists FBNet-B at 4.8M params / 295.6M
    # FLOPs (ours: 291M MACs), the FBNet paper's Table 2 at 4.5M (a 0.30M gap
    # we cannot attribute; the released model is what we follow).
    stages = (
        "ds_r1_k3_s1_c16",
        "ir_r1_k3_s2_e6_c24",
        "ds_r1_k5_s1_c24",
        "ds_r2_k3_s1_c24",
        "ir_r1_k5_s2_e6_c32",
        "ir_r1_k5_s1_e3_c32",
        "ir_r1_k3_s1_e6_c32",
        "ir_r1_k5_s1_e6_c32",
        "ir_r2_k5_s2_e6_c64",
        "ir_r1_k5_s1_e3_c64",  # one layer skipped
        "ir_r1_k5_s1_e6_c112",
        "ds_r1_k3_s1_c112",
        "ds_r1_k5_s1_c112",
        "ir_r1_k5_s1_e3_c112",
        "ir_r1_k5_s2_e6_c184",
        "ds_r1_k5_s1_c184",
        "ir_r2_k5_s1_e6_c184",
        "ir_r1_k3_s1_e6_c352",
    )
    return ArchEntry(
        name="fbnet_b",
        stages=stages,
        stem_channels=16,
        head_channels=1984,
        params_1000=4_801_368,
        source=(
            "Wu et al. 2019 (Table 2: 4.5M); facebookresearch/mobile-vision fbnet_b "
            "(README: 4.8M); our build 4,801,368"
        ),
    )
