"""Architectures without Keras: stage strings (timm's grammar), the registry of
named nets, resolved layer plans with parameter counts, and the ``arch.json``
hand-off. Importing this package loads neither Keras nor TensorFlow, so a bad
architecture fails in about a second.
"""

from spnas.arch.handoff import (
    ARCH_FORMAT,
    Arch,
    load_arch,
    make_arch,
    stage_strings,
    validate_arch,
    write_arch,
)
from spnas.arch.plan import ArchLike, LayerPlan, ModelPlan, count_params, plan_model
from spnas.arch.registry import ArchEntry, UnknownArchError, get_arch, list_archs
from spnas.arch.stages import ArchError, StageSpec, decode, decode_all, encode, encode_all

__all__ = [
    "ARCH_FORMAT",
    "Arch",
    "ArchEntry",
    "ArchError",
    "ArchLike",
    "LayerPlan",
    "ModelPlan",
    "StageSpec",
    "UnknownArchError",
    "count_params",
    "decode",
    "decode_all",
    "encode",
    "encode_all",
    "get_arch",
    "list_archs",
    "load_arch",
    "make_arch",
    "plan_model",
    "stage_strings",
    "validate_arch",
    "write_arch",
]
