"""Plain (non-searchable) ConvNets: stage strings, registry, builder."""

from spnas.models.registry import ArchEntry, get_arch, list_archs

__all__ = ["ArchEntry", "get_arch", "list_archs"]
