"""The superkernel layer and the one MBConv / stem / head definition (paper Sec. 3.2)."""

from spnas.superkernel.block import MBConv, SearchableMBConv
from spnas.superkernel.indicator import group_norm, indicator
from spnas.superkernel.layer import SuperkernelDepthwiseConv
from spnas.superkernel.stem_head import Head, Stem

__all__ = [
    "Head",
    "MBConv",
    "SearchableMBConv",
    "Stem",
    "SuperkernelDepthwiseConv",
    "group_norm",
    "indicator",
]
