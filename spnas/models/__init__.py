"""Plain (non-searchable) Keras ConvNets built from architectures.

The Keras-free parts (stage strings, registry, plans, arch.json) are in
:mod:`spnas.arch`; they are re-exported here so ``from spnas.models import
build_model, list_archs`` keeps working.
"""

from spnas.arch import ArchEntry, count_params, get_arch, list_archs, plan_model
from spnas.models.builder import build_from_plan, build_model

__all__ = [
    "ArchEntry",
    "build_from_plan",
    "build_model",
    "count_params",
    "get_arch",
    "list_archs",
    "plan_model",
]
