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
from collections.abc import Sequence
from typing import Any

from spnas.choices import (
    CANDIDATES,
    SKIP,
    SpaceError,
    check_candidates,
)
from spnas.fileio import read_json
from spnas.layer_plan import IDENTITY, PROJECTION, BlockSpec, LayerPlan, Run, walk

# Where a searchable layer may be skipped: "inner" (the paper: not the first layer of a
# block, skip = the residual's identity), "all" (every searchable layer; where the
# layer changes the shape, skip is a 1x1 conv with its stride + BN, as NAS-Bench-Macro's
# identity), "none".
SKIP_RULES = ("inner", "all", "none")

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


# A supernet layer is a LayerPlan (spnas.layer_plan), the one layer type of the package.
LayerSpec = LayerPlan


def round_filters(channels: int, width: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """MnasNet's channel rounding: scale, round to a multiple of ``divisor``."""
    if width == 1.0:
        return channels
    scaled = channels * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:  # never round down by more than 10 %
        new += divisor
    return int(new)


_FIELD_TYPES = {
    "blocks": "a list of block strings", "input_size": "an integer",
    "stem_channels": "an integer", "stem_stride": "an integer", "head_channels": "an integer",
    "width": "a number", "num_classes": "an integer", "dropout": "a number",
    "block_strides": "a list of integers or null", "candidates": "a list of candidates",
    "skip": f"one of {SKIP_RULES}", "block_candidates": "a list (one entry per block) or null",
    "block_skip": "a list (one entry per block) or null",
}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A single-path search space: stem, blocks of MBConv layers and head.

    The defaults are the paper's ImageNet / Pixel 1 space. ``block_strides``
    overrides the stride of each block (e.g. ``(1, 1, 2, 2, 1, 2, 1)`` with
    ``stem_stride=1`` for 32x32 images). ``candidates`` is the set every
    searchable layer chooses from (any non-empty subset of :data:`CANDIDATES`)
    and ``skip`` where it may be skipped (:data:`SKIP_RULES`);
    ``block_candidates`` / ``block_skip`` override them per block (None entries
    keep the space's). The layers are resolved once, when the space is made.
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
    candidates: tuple[str, ...] = CANDIDATES
    skip: str = "inner"
    block_candidates: tuple | None = None
    block_skip: tuple | None = None

    def __post_init__(self):
        self._check_types()
        object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "candidates", check_candidates(self.candidates, "candidates"))
        n = len(self.blocks)
        if self.block_strides is not None:
            object.__setattr__(self, "block_strides", tuple(int(s) for s in self.block_strides))
            if len(self.block_strides) != n:
                raise SpaceError(
                    f"block_strides has {len(self.block_strides)} entries for {n} blocks.")
        if self.skip not in SKIP_RULES:
            raise SpaceError(f"skip: {self.skip!r} is not one of {SKIP_RULES}.")
        if self.block_candidates is not None:
            if len(self.block_candidates) != n:
                raise SpaceError(f"block_candidates has {len(self.block_candidates)} "
                                 f"entries for {n} blocks.")
            object.__setattr__(self, "block_candidates", tuple(
                None if c is None else check_candidates(c, f"block_candidates[{i}]")
                for i, c in enumerate(self.block_candidates)))
        if self.block_skip is not None:
            if len(self.block_skip) != n:
                raise SpaceError(f"block_skip has {len(self.block_skip)} entries for "
                                 f"{n} blocks.")
            for i, rule in enumerate(self.block_skip):
                if rule is not None and rule not in SKIP_RULES:
                    raise SpaceError(f"block_skip[{i}]: {rule!r} is not one of "
                                     f"{SKIP_RULES} or null.")
            object.__setattr__(self, "block_skip", tuple(self.block_skip))
        if self.input_size < 8:
            raise SpaceError(f"input_size {self.input_size} is too small (>= 8).")
        if self.num_classes < 2:
            raise SpaceError(f"num_classes must be >= 2, got {self.num_classes}.")
        for name in ("stem_channels", "stem_stride", "head_channels"):
            if getattr(self, name) < 1:
                raise SpaceError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not (math.isfinite(self.width) and self.width > 0):
            raise SpaceError(f"width must be a positive number, got {self.width!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise SpaceError(f"dropout must be in [0, 1), got {self.dropout!r}.")
        # The one walk of the stages: resolved once and held (validates the strings and
        # the downsampling up front).
        object.__setattr__(self, "_layers", self._resolve())

    def _check_types(self) -> None:
        def bad(name):
            value = getattr(self, name)
            raise SpaceError(f"{name}: expected {_FIELD_TYPES[name]}, got {value!r}.")

        if isinstance(self.blocks, str) or not isinstance(self.blocks, Sequence) or \
                not self.blocks or not all(isinstance(b, str) for b in self.blocks):
            bad("blocks")
        for name in ("input_size", "stem_channels", "stem_stride", "head_channels",
                     "num_classes"):
            if not _is_int(getattr(self, name)):
                bad(name)
        for name in ("width", "dropout"):
            if isinstance(getattr(self, name), bool) or \
                    not isinstance(getattr(self, name), (int, float)):
                bad(name)
        for name in ("block_strides", "block_candidates", "block_skip"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, str) or not isinstance(value, Sequence)):
                bad(name)
        if self.block_strides is not None and not all(_is_int(v) and v >= 1
                                                      for v in self.block_strides):
            bad("block_strides")
        if not isinstance(self.skip, str):
            bad("skip")

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

    def block_rule(self, b: int) -> tuple[tuple[str, ...], str]:
        """Block ``b``'s candidate set and skip rule (its own, else the space's)."""
        cands = (self.block_candidates or (None,) * len(self.blocks))[b] or self.candidates
        rule = (self.block_skip or (None,) * len(self.blocks))[b] or self.skip
        return cands, rule

    def _resolve(self) -> tuple[LayerPlan, ...]:
        specs = self.block_specs()
        runs = []
        prev_out = self.stem_filters
        for b, spec in enumerate(specs):
            in_ch = round_filters(spec.in_ch, self.width)
            if in_ch != prev_out:
                raise SpaceError(
                    f"Block {b} ({self.blocks[b]!r}) takes {spec.in_ch} channels but the "
                    f"{'previous block' if b else 'stem'} gives {prev_out}.")
            prev_out = round_filters(spec.out_ch, self.width)
            runs.append(Run(spec.repeats, spec.stride, prev_out, spec.noskip, self.blocks[b]))
        out = []
        for i, pos in enumerate(walk(runs, self.input_size, self.stem_stride, self.stem_filters)):
            spec = specs[pos.run]
            cands, rule = self.block_rule(pos.run)
            skippable = spec.searchable and (rule == "all" or (rule == "inner" and pos.repeat > 0))
            skip_op = ""
            if skippable:
                same_shape = pos.stride == 1 and pos.in_ch == pos.out_ch
                skip_op = IDENTITY if same_shape else PROJECTION
                if same_shape and not pos.residual:
                    raise SpaceError(
                        f"Layer {i} (block {pos.run}, {self.blocks[pos.run]!r}) may be skipped "
                        "but its block is 'noskip': a skip there would be a bare identity; "
                        "drop 'noskip' or set the block's skip rule to 'none'.")
            out.append(LayerPlan(
                index=i, block=pos.run, name=f"layer{i:02d}", in_ch=pos.in_ch,
                out_ch=pos.out_ch, kernel=spec.kernel, stride=pos.stride,
                expansion=spec.expansion, residual=pos.residual, input_hw=pos.input_hw,
                output_hw=pos.output_hw, searchable=spec.searchable, skippable=skippable,
                candidates=cands if spec.searchable else (f"k{spec.kernel}_e{spec.expansion}",),
                skip_op=skip_op))
        return tuple(out)

    def layers(self) -> tuple[LayerPlan, ...]:
        """The layers with resolved channels, strides, sizes and choices (held, not
        recomputed)."""
        return self._layers

    def searchable_indices(self) -> list[int]:
        return [layer.index for layer in self._layers if layer.searchable]

    def describe(self) -> str:
        """One line: blocks, candidates and the skip rule (for summaries)."""
        n = sum(layer.searchable for layer in self._layers)
        extra = ""
        if self.block_candidates and any(self.block_candidates):
            extra += f", per-block candidates {list(self.block_candidates)}"
        if self.block_skip and any(self.block_skip):
            extra += f", per-block skip {list(self.block_skip)}"
        return (f"{len(self._layers)} layers ({n} searchable) in {len(self.blocks)} blocks, "
                f"{self.input_size}x{self.input_size}, width {self.width:g}; candidates "
                f"{', '.join(self.candidates)}; skip {self.skip!r}{extra}")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["blocks"] = list(self.blocks)
        d["block_strides"] = list(self.block_strides) if self.block_strides else None
        d["candidates"] = list(self.candidates)
        for key in ("block_candidates", "block_skip"):
            value = d[key]
            d[key] = None if value is None else [None if v is None else
                                                 (list(v) if isinstance(v, tuple) else v)
                                                 for v in value]
        if (self.candidates, self.skip, self.block_candidates, self.block_skip) == \
                (CANDIDATES, "inner", None, None):
            # The paper's choices: the dict every arch.json and table of that space holds.
            for key in ("candidates", "skip", "block_candidates", "block_skip"):
                d.pop(key)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SearchSpace:
        if not isinstance(d, dict):
            raise SpaceError(f"A search space is a JSON object / dict, got {d!r}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SpaceError(f"Unknown search-space fields: {sorted(unknown)}; known: "
                             f"{sorted(known)}.")
        d = dict(d)
        for key in ("blocks", "block_strides", "candidates", "block_candidates", "block_skip"):
            if isinstance(d.get(key), list):
                d[key] = tuple(tuple(v) if isinstance(v, list) else v for v in d[key])
        return cls(**d)


def validate_choices(space: SearchSpace, choices: Sequence[str]) -> list[str]:
    """Checks a per-layer choice list against the space; returns it as a list.

    A searchable layer takes one of its candidates, or ``skip`` where it may be
    skipped; a fixed layer takes its own ``k{K}_e{E}`` choice.
    """
    layers = space.layers()
    if isinstance(choices, str) or not isinstance(choices, Sequence):
        raise SpaceError(f"Expected a list of {len(layers)} layer choices, got {choices!r}.")
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
                    f"Layer {layer.index} cannot be skipped (space skip rule "
                    f"{space.block_rule(layer.block)[1]!r}"
                    + (": the first of its block)." if space.block_rule(layer.block)[1] == "inner"
                       else ").")
                )
        elif choice not in layer.candidates:
            known = "not in this layer's candidate set" if choice in CANDIDATES else \
                "unknown choice"
            raise SpaceError(f"Layer {layer.index}: {known} {choice!r}; expected one of "
                             f"{layer.options}.")
    return choices


def uniform_choices(space: SearchSpace, choice: str) -> list[str]:
    """Every searchable layer set to ``choice`` (fixed layers keep theirs)."""
    out = [choice if layer.searchable else layer.fixed_choice for layer in space.layers()]
    return validate_choices(space, out)


def embedded_space(num_classes: int = 10) -> SearchSpace:
    """The paper's 22-layer space shrunk for the embedded default (32x32 digits, CPU).

    Same blocks, same choices per layer; width 0.5 and strides so that a 32x32
    input ends at 2x2 (stem s2, then block strides 1,1,2,2,1,2,1).
    """
    return named_space("embedded", num_classes=num_classes)


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
    return named_space("cifar10", num_classes=num_classes, width=width)


SMOKE_BLOCK_STRINGS = (
    "r1_k3_s11_e1_i32_o16_noskip",
    "r2_k5_s22_e6_i16_o24",
    "r2_k5_s22_e6_i24_o40",
    "r1_k3_s11_e6_i40_o80_noskip",
)


def smoke_space(num_classes: int = 10) -> SearchSpace:
    """A 6-layer space (4 searchable, 2 skippable) for smoke tests on a CPU."""
    return named_space("smoke", num_classes=num_classes)


# --- Random architectures (the random-search baseline of Table 1) ----------------------


def layer_options(space: SearchSpace) -> list[tuple[str, ...]]:
    """Per layer, the choices a random net draws from (a fixed layer has one)."""
    return [layer.options for layer in space.layers()]


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

# NAS-Bench-Macro (Su et al., CVPR 2021; shared/data/README.md): a 3x3 stem of 32
# channels at stride 1 on 32x32 images, three stages of 2 / 3 / 3 ReLU MBConv layers
# with 64 / 128 / 256 channels whose first layer has stride 2, choices identity /
# MB3_K3 / MB6_K5 in every layer (identity at a stage's first layer: a 1x1 conv with
# stride 2 + BN), 1x1 conv to 1280, global pool, FC. No fixed layers.
NASBENCH_MACRO_BLOCK_STRINGS = (
    "r2_k5_s22_e6_i32_o64",
    "r3_k5_s22_e6_i64_o128",
    "r3_k5_s22_e6_i128_o256",
)
NASBENCH_MACRO_CANDIDATES = ("k3_e3", "k5_e6")

# The spaces known by name: each entry is the fields of a SearchSpace (a space is data).
SPACES: dict[str, dict] = {
    "paper": {},
    "embedded": {"input_size": 32, "width": 0.5, "stem_stride": 2,
                 "block_strides": (1, 1, 2, 2, 1, 2, 1), "num_classes": 10},
    "cifar10": {"input_size": 32, "width": 0.5, "stem_stride": 1,
                "block_strides": CIFAR_BLOCK_STRIDES, "num_classes": 10},
    "smoke": {"blocks": SMOKE_BLOCK_STRINGS, "input_size": 32, "width": 0.5, "stem_stride": 2,
              "block_strides": (1, 1, 2, 1), "num_classes": 10},
    "nasbench_macro": {"blocks": NASBENCH_MACRO_BLOCK_STRINGS, "input_size": 32,
                       "stem_stride": 1, "num_classes": 10, "dropout": 0.0,
                       "candidates": NASBENCH_MACRO_CANDIDATES, "skip": "all"},
}
SPACE_NAMES = tuple(SPACES)


def named_space(name: str, **overrides: Any) -> SearchSpace:
    """The space ``name`` of :data:`SPACES`, with some fields overridden."""
    if name not in SPACES:
        raise SpaceError(f"Unknown space {name!r}; expected one of {SPACE_NAMES} or a .json file.")
    return SearchSpace(**{**SPACES[name], **overrides})


def nasbench_macro_space(num_classes: int = 10) -> SearchSpace:
    """NAS-Bench-Macro's 8-layer space (:data:`NASBENCH_MACRO_BLOCK_STRINGS`)."""
    return named_space("nasbench_macro", num_classes=num_classes)


def resolve_space(spec: str) -> SearchSpace:
    """A name of :data:`SPACES` or a JSON file of a space dict (or an arch.json).

    Raises:
      FileNotFoundError: the file does not exist.
      SpaceError: anything else, naming what is wrong.
    """
    if spec in SPACES:
        return named_space(spec)
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
