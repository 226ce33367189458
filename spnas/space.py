"""The vocabulary of the Single-Path NAS search space (Stamoulis et al., 2019, Sec. 3.1-3.4).

The ground floor of spnas: it imports nothing of spnas but the error base
(:mod:`spnas.errors`, which imports nothing at all), and everything else builds
on it. It holds the candidates and constants of the space, the
:class:`SearchSpace` and its layer resolution, the rule from the three
indicators to a layer's choice, the per-layer runtime model of Eq. 11-12 (on
floats and on tensors alike), uniform random sampling of architectures and
the spaces known by name.

A MobileNetV2-style backbone of seven blocks of MBConv layers, written with the
MnasNet block-string grammar of the paper's code release
(``r4_k5_s22_e6_i16_o24``: 4 repeats, kernel 5, stride 2, expansion 6, 16 in,
24 out). Every layer of a searchable block starts as MBConv-5x5-6 (the
superkernel) and the search chooses k3/k5, e3/e6 or skip per layer.

The space is a frozen dataclass so it can be written into ``arch.json`` and
latency tables and compared for equality; ``layers()`` flattens it into the
22 layers of the paper with their resolved channels, strides and input sizes.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any

from spnas.errors import UserError
from spnas.fileio import read_json

# Candidate operations of a searchable layer, in the column order of the paper's
# Pixel 1 table (k3e3, k3e6, k5e3, k5e6); ``skip`` drops the whole layer.
CANDIDATES = ("k3_e3", "k3_e6", "k5_e3", "k5_e6")
SKIP = "skip"

BN_MOMENTUM = 0.99  # MnasNet / Single-Path NAS release
BN_EPSILON = 1e-3  # MnasNet / Single-Path NAS release
CHANNEL_DIVISOR = 8  # MnasNet round_filters
# How the superkernel's weights start (config key ``superkernel_init``):
# "fan_in": a fan-in normal over all its channels (spnas' default);
# "fan_out": MnasNet's conv init (spnas.superkernel.block.conv_init), as the authors' release.
SUPERKERNEL_INITS = ("fan_in", "fan_out")
IMAGENET_MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)  # MnasNet preprocessing
IMAGENET_STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)

# The paper's ImageNet space (reference-facts.md, "Search space").
PAPER_BLOCK_STRINGS = (
    "r1_k3_s11_e1_i32_o16_noskip",
    "r4_k5_s22_e6_i16_o24",
    "r4_k5_s22_e6_i24_o40",
    "r4_k5_s22_e6_i40_o80",
    "r4_k5_s11_e6_i80_o96",
    "r4_k5_s22_e6_i96_o192",
    "r1_k3_s11_e6_i192_o320_noskip",
)



class SpaceError(UserError):
    """A search space, a block string or a layer choice is malformed (names what)."""


_BLOCK_RE = re.compile(r"^[a-z]+\d+$")


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One block of the backbone, as a MnasNet block string describes it.

    Attributes:
      repeats: number of layers in the block.
      kernel: depthwise kernel size of the (super)kernel.
      stride: stride of the first layer; the others use 1.
      expansion: expansion ratio of the (super)kernel.
      in_ch: input channels of the first layer (before width scaling).
      out_ch: output channels of every layer (before width scaling).
      noskip: no residual connection anywhere in the block.
      searchable: whether the search chooses this block's layers. The paper
        fixes the first (e1) and the last (192->320) blocks.
    """

    repeats: int
    kernel: int
    stride: int
    expansion: int
    in_ch: int
    out_ch: int
    noskip: bool = False
    searchable: bool = True

    @classmethod
    def parse(cls, block_string: str, searchable: bool | None = None) -> BlockSpec:
        """Parses a MnasNet block string such as ``r4_k5_s22_e6_i16_o24``.

        Raises:
          ValueError: naming the offending token.
        """
        fields: dict[str, str] = {}
        noskip = False
        for token in block_string.strip().split("_"):
            if token == "noskip":
                noskip = True
                continue
            if not _BLOCK_RE.match(token) or token[0] not in "rksieo":
                raise SpaceError(f"Unknown token {token!r} in block string {block_string!r}.")
            if token[0] in fields:
                raise SpaceError(f"Repeated token {token!r} in block string {block_string!r}.")
            fields[token[0]] = token[1:]
        missing = [k for k in "rksieo" if k not in fields]
        if missing:
            raise SpaceError(f"Block string {block_string!r} lacks fields {missing}.")
        strides = fields["s"]
        if len(strides) == 2:
            if strides[0] != strides[1]:
                raise SpaceError(f"Anisotropic stride {strides!r} is not supported.")
            strides = strides[0]
        spec = cls(
            repeats=int(fields["r"]),
            kernel=int(fields["k"]),
            stride=int(strides),
            expansion=int(fields["e"]),
            in_ch=int(fields["i"]),
            out_ch=int(fields["o"]),
            noskip=noskip,
            searchable=True,
        )
        if searchable is None:
            searchable = spec.expansion == 6 and spec.kernel == 5
        return dataclasses.replace(spec, searchable=searchable)

    def encode(self) -> str:
        """Inverse of :meth:`parse` (two-digit strides as in the release)."""
        s = (
            f"r{self.repeats}_k{self.kernel}_s{self.stride}{self.stride}_e{self.expansion}"
            f"_i{self.in_ch}_o{self.out_ch}"
        )
        return s + ("_noskip" if self.noskip else "")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One resolved MBConv layer of the supernet."""

    index: int
    block: int
    in_ch: int
    out_ch: int
    stride: int
    kernel: int
    expansion: int
    input_hw: int
    searchable: bool
    skippable: bool
    residual: bool

    @property
    def fixed_choice(self) -> str:
        """The choice string of a non-searchable layer (e.g. ``k3_e1``)."""
        return f"k{self.kernel}_e{self.expansion}"


def round_filters(channels: int, width: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """MnasNet's channel rounding: scale, round to a multiple of ``divisor``."""
    if width == 1.0:
        return channels
    scaled = channels * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:  # never round down by more than 10 %
        new += divisor
    return int(new)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A single-path search space: stem, blocks of MBConv layers and head.

    The defaults are the paper's ImageNet / Pixel 1 space. ``block_strides``
    overrides the stride of each block (e.g. ``(1, 1, 2, 2, 1, 2, 1)`` with
    ``stem_stride=1`` for 32x32 images).
    """

    blocks: tuple[str, ...] = PAPER_BLOCK_STRINGS
    input_size: int = 224
    stem_channels: int = 32
    stem_stride: int = 2
    head_channels: int = 1280
    width: float = 1.0
    num_classes: int = 1000
    dropout: float = 0.2
    block_strides: tuple[int, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if self.block_strides is not None:
            object.__setattr__(self, "block_strides", tuple(int(s) for s in self.block_strides))
            if len(self.block_strides) != len(self.blocks):
                raise SpaceError(
                    f"block_strides has {len(self.block_strides)} entries for "
                    f"{len(self.blocks)} blocks."
                )
        if self.input_size < 8:
            raise SpaceError(f"input_size {self.input_size} is too small.")
        if self.num_classes < 2:
            raise SpaceError(f"num_classes must be >= 2, got {self.num_classes}.")
        # Validates the strings and the downsampling up front.
        self.layers()

    def block_specs(self) -> list[BlockSpec]:
        specs = [BlockSpec.parse(b) for b in self.blocks]
        if self.block_strides is not None:
            specs = [dataclasses.replace(b, stride=s) for b, s in zip(specs, self.block_strides)]
        return specs

    @property
    def stem_filters(self) -> int:
        return round_filters(self.stem_channels, self.width)

    @property
    def head_filters(self) -> int:
        # MobileNetV2 / MnasNet keep the 1280 head for width <= 1.
        return round_filters(self.head_channels, self.width) if self.width > 1.0 else self.head_channels

    def layers(self) -> list[LayerSpec]:
        """Flattens the blocks into layers with resolved channels and sizes."""
        hw = self.input_size
        if hw % self.stem_stride:
            raise SpaceError(f"input_size {hw} is not divisible by the stem stride {self.stem_stride}.")
        hw = math.ceil(hw / self.stem_stride)
        out: list[LayerSpec] = []
        prev_out = self.stem_filters
        for b, spec in enumerate(self.block_specs()):
            in_ch = round_filters(spec.in_ch, self.width)
            out_ch = round_filters(spec.out_ch, self.width)
            if b > 0 and in_ch != prev_out:
                raise SpaceError(
                    f"Block {b} ({self.blocks[b]!r}) takes {spec.in_ch} channels but the "
                    f"previous block gives {prev_out}."
                )
            for r in range(spec.repeats):
                stride = spec.stride if r == 0 else 1
                if stride > 1 and hw < 2:
                    raise SpaceError(
                        f"Input size {self.input_size} cannot be downsampled as asked: layer "
                        f"{len(out)} (block {b}) has stride {stride} on a {hw}x{hw} feature map."
                    )
                lin = in_ch if r == 0 else out_ch
                out.append(
                    LayerSpec(
                        index=len(out),
                        block=b,
                        in_ch=lin,
                        out_ch=out_ch,
                        stride=stride,
                        kernel=spec.kernel,
                        expansion=spec.expansion,
                        input_hw=hw,
                        searchable=spec.searchable,
                        skippable=spec.searchable and r > 0,
                        residual=(not spec.noskip) and stride == 1 and lin == out_ch,
                    )
                )
                hw = math.ceil(hw / stride)
            prev_out = out_ch
        return out

    def searchable_indices(self) -> list[int]:
        return [layer.index for layer in self.layers() if layer.searchable]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["blocks"] = list(self.blocks)
        d["block_strides"] = list(self.block_strides) if self.block_strides else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SearchSpace:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SpaceError(f"Unknown search-space fields: {sorted(unknown)}.")
        d = dict(d)
        if "blocks" in d:
            d["blocks"] = tuple(d["blocks"])
        if d.get("block_strides") is not None:
            d["block_strides"] = tuple(d["block_strides"])
        return cls(**d)


def validate_choices(space: SearchSpace, choices: Sequence[str]) -> list[str]:
    """Checks a per-layer choice list against the space; returns it as a list.

    Searchable layers take one of :data:`CANDIDATES` or ``skip`` (only where the
    layer may be skipped); fixed layers take their own ``k{K}_e{E}`` choice.
    """
    layers = space.layers()
    choices = list(choices)
    if len(choices) != len(layers):
        raise SpaceError(f"Expected {len(layers)} layer choices, got {len(choices)}.")
    for layer, choice in zip(layers, choices):
        if not layer.searchable:
            if choice != layer.fixed_choice:
                raise SpaceError(
                    f"Layer {layer.index} is fixed to {layer.fixed_choice!r}, got {choice!r}."
                )
        elif choice == SKIP:
            if not layer.skippable:
                raise SpaceError(
                    f"Layer {layer.index} is the first of its block and cannot be skipped."
                )
        elif choice not in CANDIDATES:
            raise SpaceError(
                f"Layer {layer.index}: unknown choice {choice!r}; expected one of "
                f"{CANDIDATES + (SKIP,)}."
            )
    return choices


def parse_choice(choice: str) -> tuple[int, int]:
    """``'k5_e3'`` -> ``(5, 3)``."""
    m = re.fullmatch(r"k(\d+)_e(\d+)", choice)
    if not m:
        raise SpaceError(f"Malformed layer choice {choice!r}.")
    return int(m.group(1)), int(m.group(2))


def uniform_choices(space: SearchSpace, choice: str) -> list[str]:
    """Every searchable layer set to ``choice`` (fixed layers keep theirs)."""
    return [choice if layer.searchable else layer.fixed_choice for layer in space.layers()]


def embedded_space(num_classes: int = 10) -> SearchSpace:
    """The paper's 22-layer space shrunk for the embedded default (32x32 digits, CPU).

    Same blocks, same choices per layer; width 0.5 and strides so that a 32x32
    input ends at 2x2 (stem s2, then block strides 1,1,2,2,1,2,1).
    """
    return SearchSpace(
        input_size=32,
        width=0.5,
        stem_stride=2,
        block_strides=(1, 1, 2, 2, 1, 2, 1),
        num_classes=num_classes,
    )


# The paper's downsampling with the stem stride removed: on 32x32 images the layers see
# 32, 16, 8, 4, 4, 2, 2 pixels (ImageNet 224: 112 ... 7). Measured on 2 CPU cores
# (batch 64, width 0.5): 160-260 ms per training step, like the embedded layout's
# stride-2 stem (150-250 ms) but keeping the first layer at full resolution; the
# CIFAR-standard stride-1 layout that ends at 4x4 (strides 1,1,2,2,1,2,1) cost
# 465-935 ms, too slow for a CPU Table 1 (bench/README.md, "Table 1").
CIFAR_BLOCK_STRIDES = (1, 2, 2, 2, 1, 2, 1)


def cifar_space(num_classes: int = 10, width: float = 0.5) -> SearchSpace:
    """The paper's 22-layer space for 32x32 images (CIFAR-10): stem stride 1, the
    paper's block strides (:data:`CIFAR_BLOCK_STRIDES`), width 0.5."""
    return SearchSpace(
        input_size=32,
        width=width,
        stem_stride=1,
        block_strides=CIFAR_BLOCK_STRIDES,
        num_classes=num_classes,
    )


SMOKE_BLOCK_STRINGS = (
    "r1_k3_s11_e1_i32_o16_noskip",
    "r2_k5_s22_e6_i16_o24",
    "r2_k5_s22_e6_i24_o40",
    "r1_k3_s11_e6_i40_o80_noskip",
)


def smoke_space(num_classes: int = 10) -> SearchSpace:
    """A 6-layer space (4 searchable, 2 skippable) for smoke tests on a CPU."""
    return SearchSpace(
        blocks=SMOKE_BLOCK_STRINGS,
        input_size=32,
        width=0.5,
        stem_stride=2,
        block_strides=(1, 1, 2, 1),
        num_classes=num_classes,
    )


# --- From indicators to choices, and the runtime of a choice (Sec. 3.2, 3.4) -----------


def choice_from_decisions(d5x5: float, d100c: float, d50c: float) -> str:
    """The MBConv choice three hard indicators encode (reference-facts.md, "Decode").

    ``d50c = 0`` drops the layer (skip); otherwise kernel 5 if ``d5x5`` else 3 and
    expansion 6 if ``d100c`` else 3. The authors' encoder swapped e3 and e6 for
    ``3x3-6`` and ``5x5-3`` (issue #8 of their release); this spells the choice
    straight from the decisions.
    """
    if d50c < 0.5:
        return SKIP
    return f"k{5 if d5x5 > 0.5 else 3}_e{6 if d100c > 0.5 else 3}"


def decisions_from_choice(choice: str) -> tuple[float, float, float]:
    """Inverse of :func:`choice_from_decisions`: ``(d5x5, d100c, d50c)`` as floats."""
    if choice == SKIP:
        return 0.0, 0.0, 0.0
    k, e = parse_choice(choice)
    if (k, e) not in {(3, 3), (3, 6), (5, 3), (5, 6)}:
        raise SpaceError(f"{choice!r} is not a searchable choice; expected one of {CANDIDATES}.")
    return (1.0 if k == 5 else 0.0), (1.0 if e == 6 else 0.0), 1.0


def superkernel_cost(entries: dict[str, float], d5x5, d100c, d50c, *, exact_k3: bool = False):
    """A searchable layer's cost (runtime, parameters) from its three indicators (Eq. 11-12).

    ``C = C_ch * ratio + C_ch * (1 - ratio) * d5x5`` with
    ``C_ch = d50c * (C_k5e3 + d100c * (C_k5e6 - C_k5e3))``. The paper's ratio is
    ``C_k3e6 / C_k5e6`` for both expansions, so the k3e3 entry is approximated by
    ``C_k5e3 * ratio`` and not used. ``exact_k3`` gives one ratio per expansion,
    ``r3 + d100c * (r6 - r3)`` with ``r3 = C_k3e3 / C_k5e3``, ``r6 = C_k3e6 / C_k5e6``, so
    that hard indicators give every candidate's own entry (0 for skip). Only ``+`` and
    ``*`` touch the indicators, so they may be Python floats (a prediction) or tensors
    (the differentiable cost the search minimises).
    """
    ratio = entries["k3_e6"] / entries["k5_e6"]
    if exact_k3:
        r3 = entries["k3_e3"] / entries["k5_e3"]
        ratio = r3 + d100c * (ratio - r3)
    c_ch = d50c * (entries["k5_e3"] + d100c * (entries["k5_e6"] - entries["k5_e3"]))
    return c_ch * ratio + c_ch * (1.0 - ratio) * d5x5


def layer_runtime(entries: dict[str, float], d5x5, d100c, d50c):
    """Eq. 11-12 as the paper writes it: the runtime of one searchable layer from its
    three indicators (:func:`superkernel_cost` with the paper's single k3/k5 ratio)."""
    return superkernel_cost(entries, d5x5, d100c, d50c)


# --- Random architectures (the random-search baseline of Table 1) ----------------------


def layer_options(space: SearchSpace) -> list[tuple[str, ...]]:
    """Per layer, the choices a random net draws from (a fixed layer has one)."""
    out = []
    for layer in space.layers():
        if not layer.searchable:
            out.append((layer.fixed_choice,))
        else:
            out.append(CANDIDATES + ((SKIP,) if layer.skippable else ()))
    return out


def sample_choices(space: SearchSpace, rng: Any, options: list[tuple[str, ...]] | None = None) -> list[str]:
    """One architecture, uniform over each searchable layer's options (skip where allowed).

    Args:
      space: the search space.
      rng: a ``numpy.random.Generator`` (its ``integers`` draws the options).
      options: from :func:`layer_options`; saves recomputing them per sample.
    """
    options = options or layer_options(space)
    return [opts[int(rng.integers(len(opts)))] if len(opts) > 1 else opts[0] for opts in options]


# --- Spaces by name --------------------------------------------------------------------

SPACE_NAMES = ("paper", "embedded", "cifar10", "smoke")


def resolve_space(spec: str) -> SearchSpace:
    """``paper``, ``embedded``, ``cifar10``, ``smoke`` or a JSON file of a space dict (or an arch.json).

    Raises:
      FileNotFoundError: the file does not exist.
      SpaceError: anything else, naming what is wrong.
    """
    if spec == "paper":
        return SearchSpace()
    if spec == "embedded":
        return embedded_space()
    if spec == "cifar10":
        return cifar_space()
    if spec == "smoke":
        return smoke_space()
    if not spec.endswith(".json"):
        raise SpaceError(f"Unknown space {spec!r}; expected one of {SPACE_NAMES} or a .json file.")
    data = read_json(spec, SpaceError, "Search-space file")
    if isinstance(data, dict) and isinstance(data.get("space"), dict):
        data = data["space"]  # an arch.json
    if not isinstance(data, dict):
        raise SpaceError(f"Search-space file {spec!r} must hold a JSON object.")
    try:
        return SearchSpace.from_dict(data)
    except (TypeError, ValueError) as e:
        raise SpaceError(f"Search-space file {spec!r}: {e}") from None
