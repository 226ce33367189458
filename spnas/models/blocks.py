"""Plain MBConv building blocks (standard Keras layers only, functional API).

Used by the model builder, the latency profiler and the benchmarks. Each helper
applies the package's one definition (:class:`spnas.superkernel.MBConv`,
:class:`~spnas.superkernel.Stem`, :class:`~spnas.superkernel.Head`) flat: its
sub-layers become layers of the functional model, named after timm
(``conv_pw``, ``bn1``, ``conv_dw``, ``bn2``, ``conv_pwl``, ``bn3``) under a
per-layer prefix (``{name}_conv_pw`` ...).
"""

from __future__ import annotations

from spnas.superkernel.block import MBConv, Projection
from spnas.superkernel.stem_head import Head, Stem


def mbconv(
    x,
    filters: int,
    kernel: int,
    stride: int,
    expansion: int,
    residual: bool,
    name: str,
    weight_decay: float = 0.0,
):
    """MBConv-k x k-e (expansion 1 = depthwise-separable, no expansion conv)."""
    block = MBConv(filters, expansion=expansion, kernel_size=kernel, strides=stride,
                   searchable=False, residual=residual, weight_decay=weight_decay,
                   flat=True, name=name)
    return block.apply_to(x)


def projection(x, filters: int, stride: int, name: str, weight_decay: float = 0.0):
    """Conv 1x1 (strided), BN: a skipped layer that changes the shape."""
    layer = Projection(filters, stride, weight_decay=weight_decay, flat=True, name=name)
    return layer.apply_to(x)


def stem(x, filters: int, stride: int, weight_decay: float = 0.0, name: str = "stem"):
    """Conv 3x3, BN, ReLU."""
    return Stem(filters, stride, weight_decay=weight_decay, flat=True, name=name).apply_to(x)


def head(x, filters: int, num_classes: int, dropout: float, weight_decay: float = 0.0,
         name: str = "head"):
    """Conv 1x1, BN, ReLU, global average pool, dropout, FC (logits)."""
    layer = Head(filters, num_classes, dropout, weight_decay=weight_decay, flat=True, name=name)
    return layer.apply_to(x)
