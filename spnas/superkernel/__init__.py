"""The superkernel layer and the searchable MBConv block (paper Sec. 3.2)."""

from spnas.superkernel.block import SearchableMBConv
from spnas.superkernel.indicator import group_norm, indicator
from spnas.superkernel.layer import SuperkernelDepthwiseConv

__all__ = ["SearchableMBConv", "SuperkernelDepthwiseConv", "group_norm", "indicator"]
