"""NAS-Bench-Macro's space searched with Single-Path NAS on a CIFAR-10 image folder.

Space (Su et al., CVPR 2021, "Prioritized Architecture Sampling with Monte-Carlo
Tree Search"; its benchmark trained all 6,561 nets of it): a 3x3 stem of 32
channels at stride 1 on 32x32 images, three stages of 2 / 3 / 3 ReLU MBConv layers
with 64 / 128 / 256 channels whose first layer has stride 2, in every layer the
choice identity / MB3_K3 / MB6_K5 (``skip`` / ``k3_e3`` / ``k5_e6``; at a stage's
first layer the identity is a 1x1 conv with stride 2 + BN), 1x1 conv to 1280,
global pool, FC. In the superkernel the pair {k3_e3, k5_e6} is one tied group
(the 5x5 shell over all channels with the upper half of the channels, one
threshold) and every layer may be skipped (``space.skip = "all"``): no fixed
layers. ``spnas.space.SPACES["nasbench_macro"]`` is the same space by name.

Cost: MACs (``cost = "macs"``, millions per image, counted exactly as the benchmark
counts its FLOPs: 7.71-105.66 MMAC over the space), target in the middle of that
range. ``--config.cost=latency --config.target=0 --config.target_ms=T
--config.latency_table=nasbench_macro_cpu`` searches for host LiteRT latency instead.

Data and recipe as ``configs/cifar10.py`` (``cifar`` augmentation, the paper's
8-epoch search shape at batch 128).

Command:
  spnas-search --config=configs/nasbench_macro.py \\
      --config.data.dataset=folder:/data/cifar10 --workdir=/tmp/macro_search
Cost: 8 epochs of 352 steps; bench/nasbench_macro.py measures the step time on
this host and runs shorter searches (bench/README.md, "NAS-Bench-Macro").
Expected: an arch.json whose 8 layer choices map onto a benchmark code (skip -> 0,
k3_e3 -> 1, k5_e6 -> 2), predicted MACs within 5 % of the target.
"""

from spnas.configs import cifar10

from spnas.space import NASBENCH_MACRO_BLOCK_STRINGS, NASBENCH_MACRO_CANDIDATES

# The middle of the space's MACs range, 7.71328-105.660928 MMAC (spnas.arch.params.MacsTable).
MIDDLE_MMAC = 56.69


def get_config(arg=None):
    c = cifar10.get_config(arg)
    c.space.blocks = list(NASBENCH_MACRO_BLOCK_STRINGS)
    c.space.block_strides = [2, 2, 2]
    c.space.stem_stride = 1
    c.space.width = 1.0
    c.space.stem_channels = 32
    c.space.head_channels = 1280
    c.space.dropout = 0.0
    c.space.candidates = list(NASBENCH_MACRO_CANDIDATES)  # MB3_K3, MB6_K5
    c.space.skip = "all"  # identity anywhere; a projection where the shape changes
    c.cost = "macs"
    c.target_ms = 0.0
    c.target = MIDDLE_MMAC  # MMAC
    c.latency_table = ""  # none needed for a MACs search
    return c
