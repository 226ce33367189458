"""The one walk over a network's stages and the one layer type it gives.

A supernet (:class:`spnas.space.SearchSpace`) and a plain network
(:func:`spnas.arch.plan.plan_model`) are both a stem, runs of MBConv layers
whose first layer may be strided, and a head. :func:`walk` resolves the runs
into per-layer positions (channels, stride, feature-map sizes, whether a
residual fits) with one downsampling rule, and both build their
:class:`LayerPlan` from it. A layer plan counts its own parameters and
multiply-accumulates; :meth:`LayerPlan.decoded` turns a supernet layer into the
plain layer of one of its choices, so every cost table is counted from the same
plans the builder makes models from.

Conventions (Single-Path NAS Sec. 3.1, MnasNet/MobileNetV2): "same" padding, so a
layer of stride s maps an h x h map to ceil(h / s); the stem stride must divide
the input size; a strided layer needs a feature map at least as large as its
stride. A layer is residual when its stride is 1, its input and output channels
agree and its block is not ``noskip``. Parameters are what timm and torchvision
report (convs without bias, BN gamma and beta, the classifier's weight and
bias); MACs count the convolutions and the classifier (BN, ReLU, additions and
pooling not counted), as MobileNet papers and NAS-Bench-Macro do.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence

from spnas.choices import SKIP, SpaceError, parse_choice

MBCONV = "mbconv"
PROJECTION = "projection"  # a skip that changes the shape: 1x1 conv (strided) + BN
IDENTITY = "identity"  # a skip that keeps the shape: the residual alone


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
class Run:
    """A run of layers as the walk needs it: only the first may be strided."""

    repeats: int
    stride: int
    out_ch: int
    noskip: bool = False
    label: str = ""  # the block or stage string, for messages


@dataclasses.dataclass(frozen=True)
class Position:
    """Where one layer sits: what :func:`walk` resolves."""

    run: int
    repeat: int
    in_ch: int
    out_ch: int
    stride: int
    input_hw: int
    output_hw: int
    residual: bool


def walk(runs: Sequence[Run], input_size: int, stem_stride: int, stem_ch: int,
         error=SpaceError, layer_name: Callable[[int, int, int], str] | None = None,
         run_word: str = "block") -> list[Position]:
    """Every layer's position, downsampling checked once for supernets and plain nets.

    ``layer_name(run, repeat, index)`` names a layer in messages (default: its index).

    Raises:
      error: naming the layer whose stride the feature map cannot take, or the stem.
    """
    if input_size % stem_stride:
        raise error(f"Input size {input_size} cannot be downsampled as asked: the stem has "
                    f"stride {stem_stride}, which does not divide it.")
    hw = input_size // stem_stride
    in_ch = stem_ch
    out: list[Position] = []
    for b, run in enumerate(runs):
        for r in range(run.repeats):
            stride = run.stride if r == 0 else 1
            if hw < stride:
                name = layer_name(b, r, len(out)) if layer_name else str(len(out))
                raise error(
                    f"Input size {input_size} cannot be downsampled as asked: layer {name} "
                    f"({run_word} {b}, {run.label!r}) has stride {stride} on a {hw}x{hw} "
                    "feature map.")
            out_hw = math.ceil(hw / stride)
            residual = (not run.noskip) and stride == 1 and in_ch == run.out_ch
            out.append(Position(b, r, in_ch, run.out_ch, stride, hw, out_hw, residual))
            hw, in_ch = out_hw, run.out_ch
    return out


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """One resolved layer: of a supernet (``searchable``, its ``candidates``, whether
    and how it may be skipped) or of a plain net (one MBConv or one projection).

    Attributes:
      index: running index over the layers (a plain net has no skipped layers).
      block: index of the block (supernet) or stage string (plain net) it comes from.
      name: Keras name prefix (``layerNN`` in a supernet, ``blocks_{stage}_{repeat}``).
      kernel, expansion: the MBConv's; a supernet's searchable layer holds the 5x5,
        x6 superkernel. A projection has kernel 1, expansion 1.
      op: ``"mbconv"`` or ``"projection"``.
      searchable: the search chooses this layer among ``candidates`` (and skip
        where ``skippable``); a fixed layer's candidates are its own choice.
      skip_op: what skip is here: ``"identity"`` (the residual alone) or
        ``"projection"`` (1x1 conv with the layer's stride + BN, where the shape
        changes); ``""`` where the layer cannot be skipped.
    """

    index: int
    block: int
    name: str
    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    expansion: int
    residual: bool
    input_hw: int
    output_hw: int
    op: str = MBCONV
    searchable: bool = False
    skippable: bool = False
    candidates: tuple[str, ...] = ()
    skip_op: str = ""

    @property
    def stage(self) -> int:
        """The stage string a plain net's layer comes from (same as ``block``)."""
        return self.block

    @property
    def fixed_choice(self) -> str:
        """The choice string of a non-searchable layer (e.g. ``k3_e1``)."""
        return f"k{self.kernel}_e{self.expansion}"

    @property
    def options(self) -> tuple[str, ...]:
        """What this layer may decode to: its candidates, then skip where allowed."""
        if not self.searchable:
            return (self.fixed_choice,)
        return self.candidates + ((SKIP,) if self.skippable else ())

    def decoded(self, choice: str) -> LayerPlan | None:
        """The plain layer the builder makes of this one decoded as ``choice``: an
        MBConv, a projection (a projection skip), or None (an identity skip)."""
        if choice == SKIP:
            if self.skip_op == IDENTITY:
                return None
            return dataclasses.replace(
                self, kernel=1, expansion=1, residual=False, op=PROJECTION, searchable=False,
                skippable=False, candidates=(), skip_op="")
        kernel, expansion = parse_choice(choice)
        return dataclasses.replace(self, kernel=kernel, expansion=expansion, searchable=False,
                                   skippable=False, candidates=(), skip_op="")

    def count_params(self) -> int:
        """Trainable parameters: convs without bias, BN gamma and beta."""
        if self.op == PROJECTION:
            return self.in_ch * self.out_ch + 2 * self.out_ch
        mid = self.in_ch * self.expansion
        n = 0
        if self.expansion != 1:
            n += self.in_ch * mid + 2 * mid  # conv_pw + bn1
        n += self.kernel * self.kernel * mid + 2 * mid  # conv_dw + bn2
        n += mid * self.out_ch + 2 * self.out_ch  # conv_pwl + bn3
        return n

    def count_macs(self) -> int:
        """Multiply-accumulates of one image (convolutions only; BN folds away)."""
        if self.op == PROJECTION:
            return self.output_hw**2 * self.in_ch * self.out_ch
        mid = self.in_ch * self.expansion
        n = self.input_hw**2 * self.in_ch * mid if self.expansion != 1 else 0  # conv_pw
        n += self.output_hw**2 * self.kernel * self.kernel * mid  # conv_dw ("same" padding)
        return n + self.output_hw**2 * mid * self.out_ch  # conv_pwl


def stem_params(stem_ch: int) -> int:
    """The 3x3 stem conv on RGB and its BN."""
    return 3 * 3 * 3 * stem_ch + 2 * stem_ch


def stem_macs(input_size: int, stem_stride: int, stem_ch: int) -> int:
    return (input_size // stem_stride) ** 2 * 3 * 3 * 3 * stem_ch


def head_params(last_ch: int, head_ch: int, num_classes: int) -> int:
    """The 1x1 head conv and its BN, and the classifier (weight and bias)."""
    return last_ch * head_ch + 2 * head_ch + head_ch * num_classes + num_classes


def head_macs(last_hw: int, last_ch: int, head_ch: int, num_classes: int) -> int:
    return last_hw**2 * last_ch * head_ch + head_ch * num_classes
