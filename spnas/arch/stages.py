"""Stage strings: timm's block grammar for plain MBConv networks.

``ir_r3_k3_s2_e3_c24`` is 3 inverted-residual (MBConv) layers, kernel 3, the
first with stride 2, expansion 3, 24 output channels; ``ds_r1_k3_s1_c16`` is a
depthwise-separable layer (MBConv with expansion 1, no expansion conv);
``_noskip`` removes the residual. A network is a flat list of such strings; a
searched ``arch.json`` stores its net this way (Single-Path NAS, Sec. 3.1: the
decoded layers of the supernet; skipped layers simply vanish).

The grammar is strict so that every network has exactly one spelling and
``encode(decode(s)) == s`` for every canonical string: tokens come in the order
``type, r, k, s, [e,] c, [noskip]``; numbers have no leading zeros; expansion 1
is spelt ``ds`` (an ``ir`` layer with ``e1`` would, in timm, still carry a 1x1
expansion conv, which our blocks do not build, so it is rejected rather than
silently built differently). ``pj_r1_s2_c64`` is a projection: a 1x1 conv with
the stride and BN, no activation (a skipped layer that changes the shape, as
NAS-Bench-Macro's identity at a stage's first layer).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from spnas.errors import UserError


class ArchError(UserError):
    """An architecture cannot be used as given: a malformed stage string, an unknown
    name, a bad or unknown-format arch.json, or a net that cannot be built as asked
    (the message names the file, token, layer or option)."""

_TOKEN = re.compile(r"^([a-z]+)(\d+)$")
BLOCK_TYPES = ("ir", "ds", "pj")
_FIELD_ORDER = {"ir": ("r", "k", "s", "e", "c"), "ds": ("r", "k", "s", "c"), "pj": ("r", "s", "c")}


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """A run of identical layers; only the first may be strided.

    Attributes:
      block_type: ``"ir"`` (MBConv with a 1x1 expansion conv), ``"ds"``
        (depthwise-separable: expansion 1, no expansion conv) or ``"pj"`` (a 1x1
        conv + BN projection: kernel 1, expansion 1, no residual).
      repeats: number of layers.
      kernel: depthwise kernel size (odd).
      stride: stride of the first layer; the others use 1.
      expansion: expansion ratio (1 for ``ds``, >= 2 for ``ir``).
      channels: output channels of every layer, before any width multiplier.
      noskip: no residual connection in any layer of the stage.
    """

    block_type: str
    repeats: int
    kernel: int
    stride: int
    expansion: int
    channels: int
    noskip: bool = False

    def __post_init__(self):
        if self.block_type not in BLOCK_TYPES:
            raise ArchError(
                f"Unknown block type {self.block_type!r}; expected one of {BLOCK_TYPES}."
            )
        for name in ("repeats", "kernel", "stride", "expansion", "channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArchError(f"Stage field {name} must be an integer >= 1, got {value!r}.")
        if self.kernel % 2 == 0:
            raise ArchError(f"Kernel size must be odd, got {self.kernel}.")
        if self.block_type == "ds" and self.expansion != 1:
            raise ArchError("A 'ds' stage has no expansion (e must be 1).")
        if self.block_type == "pj" and (self.kernel, self.expansion, self.noskip) != (1, 1, True):
            raise ArchError("A 'pj' stage is a 1x1 projection: kernel 1, expansion 1, noskip.")
        if self.block_type == "ir" and self.expansion == 1:
            raise ArchError("An 'ir' stage needs expansion >= 2; spell expansion 1 as 'ds'.")


def decode(stage: str) -> StageSpec:
    """Parses one stage string such as ``ir_r3_k3_s2_e3_c24``.

    Args:
      stage: the stage string.

    Returns:
      The parsed :class:`StageSpec`.

    Raises:
      ValueError: naming the offending token (unknown, repeated, out of order,
        with a leading zero, or missing).
    """
    if not isinstance(stage, str) or not stage:
        raise ArchError(f"Malformed stage string {stage!r}: expected e.g. 'ir_r2_k3_s2_e6_c24'.")
    tokens = stage.split("_")
    block_type = tokens[0]
    if block_type not in BLOCK_TYPES:
        raise ArchError(
            f"Unknown block type {block_type!r} in stage string {stage!r}; expected one of "
            f"{BLOCK_TYPES}."
        )
    order = _FIELD_ORDER[block_type]
    fields: dict[str, int] = {}
    noskip = False
    for token in tokens[1:]:
        if noskip:
            raise ArchError(f"Token {token!r} after 'noskip' in stage string {stage!r}.")
        if token == "noskip":
            if block_type == "pj":
                raise ArchError(f"A 'pj' stage has no residual to remove: {stage!r}.")
            noskip = True
            continue
        m = _TOKEN.match(token)
        if not m or m.group(1) not in ("r", "k", "s", "e", "c"):
            raise ArchError(f"Unknown token {token!r} in stage string {stage!r}.")
        key, digits = m.group(1), m.group(2)
        if key in fields:
            raise ArchError(f"Repeated token {token!r} in stage string {stage!r}.")
        if key not in order:
            raise ArchError(
                f"Token {token!r} is not allowed in a {block_type!r} stage: {stage!r}."
            )
        if any(order.index(k) > order.index(key) for k in fields):
            raise ArchError(
                f"Token {token!r} is out of order in stage string {stage!r}; expected the "
                f"order {'_'.join((block_type,) + order)}."
            )
        if len(digits) > 1 and digits[0] == "0":
            raise ArchError(f"Token {token!r} has a leading zero in stage string {stage!r}.")
        fields[key] = int(digits)
    missing = [k for k in order if k not in fields]
    if missing:
        raise ArchError(f"Stage string {stage!r} lacks {missing}.")
    try:
        return StageSpec(
            block_type=block_type,
            repeats=fields["r"],
            kernel=fields.get("k", 1),
            stride=fields["s"],
            expansion=fields.get("e", 1),
            channels=fields["c"],
            noskip=noskip or block_type == "pj",
        )
    except ValueError as e:
        raise ArchError(f"Stage string {stage!r}: {e}") from None


def encode(spec: StageSpec) -> str:
    """Inverse of :func:`decode`: the canonical string of a stage."""
    if not isinstance(spec, StageSpec):
        raise TypeError(f"encode() takes a StageSpec, got {type(spec).__name__}.")
    parts = [spec.block_type, f"r{spec.repeats}"]
    if spec.block_type != "pj":
        parts.append(f"k{spec.kernel}")
    parts.append(f"s{spec.stride}")
    if spec.block_type == "ir":
        parts.append(f"e{spec.expansion}")
    parts.append(f"c{spec.channels}")
    if spec.noskip and spec.block_type != "pj":
        parts.append("noskip")
    return "_".join(parts)


def decode_all(stages: Sequence[str]) -> list[StageSpec]:
    """Parses a network: a non-empty list of stage strings.

    Raises:
      ValueError: if ``stages`` is empty or a bare string, or naming the
        offending token and stage.
    """
    if isinstance(stages, str) or not isinstance(stages, Sequence) or not stages:
        raise ArchError(f"An architecture is a non-empty list of stage strings, got {stages!r}.")
    out = []
    for i, s in enumerate(stages):
        try:
            out.append(decode(s))
        except ValueError as e:
            raise ArchError(f"Stage {i}: {e}") from None
    return out


def encode_all(specs: Sequence[StageSpec]) -> list[str]:
    """Inverse of :func:`decode_all`."""
    return [encode(s) for s in specs]
