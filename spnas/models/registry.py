"""A small registry of named architectures (timm's ``@register_model`` pattern).

Entries of the paper's search space carry their per-layer ``choices`` so their
latency can be predicted from a table; every entry carries stage strings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from spnas.search.space import SKIP, SearchSpace


@dataclasses.dataclass(frozen=True)
class ArchEntry:
    """A registered architecture."""

    name: str
    stages: tuple[str, ...]
    choices: tuple[str, ...] | None = None  # per supernet layer, when in the paper's space
    space: SearchSpace | None = None
    stem_channels: int = 32
    head_channels: int = 1280
    params_1000: int | None = None  # golden parameter count at 1000 classes
    source: str = ""


_REGISTRY: dict[str, Callable[[], ArchEntry]] = {}


def register(fn: Callable[[], ArchEntry]) -> Callable[[], ArchEntry]:
    _REGISTRY[fn.__name__] = fn
    return fn


def list_archs() -> list[str]:
    return sorted(_REGISTRY)


def get_arch(name: str) -> ArchEntry:
    if name not in _REGISTRY:
        raise KeyError(f"Unknown architecture {name!r}; known: {', '.join(list_archs())}.")
    return _REGISTRY[name]()


# The Single-Path NAS Pixel 1 network (paper Fig. 9; timm ``spnasnet_100``).
SPNAS_PIXEL1_CHOICES = (
    ("k3_e1",)
    + ("k3_e3", "k3_e3", "k3_e3", SKIP)  # block 24
    + ("k5_e6", "k3_e3", "k3_e3", "k3_e3")  # block 40
    + ("k5_e6", "k3_e3", "k3_e3", "k3_e3")  # block 80
    + ("k5_e6", "k5_e3", "k5_e3", "k5_e3")  # block 96
    + ("k5_e6", "k5_e6", "k5_e6", "k5_e6")  # block 192
    + ("k3_e6",)
)


@register
def spnas_pixel1() -> ArchEntry:
    from spnas.search.decode import stage_strings

    space = SearchSpace()
    return ArchEntry(
        name="spnas_pixel1",
        stages=tuple(stage_strings(space, SPNAS_PIXEL1_CHOICES)),
        choices=SPNAS_PIXEL1_CHOICES,
        space=space,
        params_1000=4_421_616,  # timm spnasnet_100 / paper
        source="Stamoulis et al. 2019, Fig. 9; timm spnasnet_100",
    )
