"""Plain (non-searchable) ConvNets: stage strings, registry, plan and builder.

``build_model`` (Keras) is imported on first use so that the stage-string and
registry parts stay importable without loading Keras.
"""

from spnas.models.registry import ArchEntry, get_arch, list_archs

__all__ = [
    "ArchEntry",
    "build_model",
    "count_params",
    "get_arch",
    "list_archs",
    "plan_model",
]


def __getattr__(name: str):
    if name in ("build_model", "build_from_plan"):
        from spnas.models import builder

        return getattr(builder, name)
    if name in ("count_params", "plan_model"):
        from spnas.models import plan

        return getattr(plan, name)
    raise AttributeError(f"module 'spnas.models' has no attribute {name!r}")
