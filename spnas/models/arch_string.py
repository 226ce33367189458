"""Stage strings: timm's block grammar for plain MBConv networks.

``ir_r3_k3_s2_e3_c24`` is 3 inverted-residual (MBConv) layers, kernel 3, the
first with stride 2, expansion 3, 24 output channels; ``ds_r1_k3_s1_c16`` is a
depthwise-separable layer (MBConv with expansion 1, no expansion conv);
``_noskip`` removes the residual. A network is a flat list of such strings; a
searched ``arch.json`` stores its net this way.
"""

from __future__ import annotations

import dataclasses
import re

_TOKEN = re.compile(r"^([a-z]+)(\d+)$")
BLOCK_TYPES = ("ir", "ds")


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """A run of identical layers; only the first may be strided."""

    block_type: str
    repeats: int
    kernel: int
    stride: int
    expansion: int
    channels: int
    noskip: bool = False

    def __post_init__(self):
        if self.block_type not in BLOCK_TYPES:
            raise ValueError(f"Unknown block type {self.block_type!r}; expected one of {BLOCK_TYPES}.")
        for name in ("repeats", "kernel", "stride", "expansion", "channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"Stage field {name} must be >= 1, got {getattr(self, name)}.")
        if self.kernel % 2 == 0:
            raise ValueError(f"Kernel size must be odd, got {self.kernel}.")
        if self.block_type == "ds" and self.expansion != 1:
            raise ValueError("A 'ds' stage has no expansion (e must be 1).")


def decode(stage: str) -> StageSpec:
    """Parses one stage string.

    Raises:
      ValueError: naming the offending token.
    """
    if not isinstance(stage, str) or not stage:
        raise ValueError(f"Malformed stage string {stage!r}.")
    tokens = stage.split("_")
    block_type = tokens[0]
    if block_type not in BLOCK_TYPES:
        raise ValueError(f"Unknown block type {block_type!r} in stage string {stage!r}.")
    fields: dict[str, int] = {}
    noskip = False
    for token in tokens[1:]:
        if token == "noskip":
            if noskip:
                raise ValueError(f"Repeated token 'noskip' in stage string {stage!r}.")
            noskip = True
            continue
        m = _TOKEN.match(token)
        if not m or m.group(1) not in ("r", "k", "s", "e", "c"):
            raise ValueError(f"Unknown token {token!r} in stage string {stage!r}.")
        if m.group(1) in fields:
            raise ValueError(f"Repeated token {token!r} in stage string {stage!r}.")
        fields[m.group(1)] = int(m.group(2))
    required = ("r", "k", "s", "c") + (("e",) if block_type == "ir" else ())
    missing = [k for k in required if k not in fields]
    if missing:
        raise ValueError(f"Stage string {stage!r} lacks {missing}.")
    if block_type == "ds" and fields.get("e", 1) != 1:
        raise ValueError(f"Token 'e{fields['e']}' is not allowed in a 'ds' stage: {stage!r}.")
    return StageSpec(
        block_type=block_type,
        repeats=fields["r"],
        kernel=fields["k"],
        stride=fields["s"],
        expansion=fields.get("e", 1),
        channels=fields["c"],
        noskip=noskip,
    )


def encode(spec: StageSpec) -> str:
    """Inverse of :func:`decode`."""
    parts = [spec.block_type, f"r{spec.repeats}", f"k{spec.kernel}", f"s{spec.stride}"]
    if spec.block_type == "ir":
        parts.append(f"e{spec.expansion}")
    parts.append(f"c{spec.channels}")
    if spec.noskip:
        parts.append("noskip")
    return "_".join(parts)


def decode_all(stages: list[str]) -> list[StageSpec]:
    if isinstance(stages, str) or not stages:
        raise ValueError("An architecture is a non-empty list of stage strings.")
    return [decode(s) for s in stages]
