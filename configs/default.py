"""Embedded default: a Single-Path NAS search on real data that ships with spnas' deps.

Data: the 1,797 8x8 handwritten digits of scikit-learn (real scans, no network),
upsampled to 32x32 RGB; 90 % train / 10 % validation. Space: the paper's 22
layers (20 searchable) at width 0.5 with strides for 32x32 inputs
(`spnas.space.embedded_space`); its input size is ``data.image_size``. Latency
table: `embedded_cpu`, profiled on a 2-core x86 CPU with the LiteRT interpreter
(1 thread) and shipped with spnas.

Sections (configs/common.py): ``data``, ``schedule`` (the MnasNet recipe the
trainer runs too), ``execution``; the search's own keys are top-level.

Command:
  spnas-search --workdir=/tmp/spnas_search
Expected: about 3-4 minutes on 2 free CPU cores (200 steps: 125 warm-up steps with
lambda = 0, then lambda = 0.02); writes arch.json, search_log.csv,
fig4_ce_runtime.png and fig6_kernel_std.png in the workdir. On the shipped table
the space spans 0.094-0.540 ms; lambda = 0.2 brought the predicted runtime from
0.540 to 0.312 ms in 75 steps in our runs (bench/search_sweep.py --lambdas=...).
Knobs: --config.lambda_=0.2 --config.schedule.epochs=16 --config.latency_table=PATH
       --config.target_ms=0.4 (latency-target mode instead of a fixed lambda).
"""

import ml_collections
from spnas.configs import common

from spnas.space import CANDIDATES, PAPER_BLOCK_STRINGS


def get_config(arg=None):
    del arg
    c = ml_collections.ConfigDict()
    c.data = common.data("embedded", image_size=32)
    # Schedule (reference-facts.md "Search"), scaled by epochs. No learning-rate
    # warm-up; BN statistics recomputed before the final evaluation.
    c.schedule = common.schedule(batch_size=64, epochs=common.PAPER_SEARCH_EPOCHS,
                                 bn_recalibration_batches=20)
    c.execution = common.execution(checkpoint_every=100, log_every=10)
    c.seed = 0  # seeds the data split, shuffling, augmentation and initialisation
    # Search space (spnas.space.SearchSpace fields; input_size is data.image_size).
    c.space = ml_collections.ConfigDict()
    c.space.blocks = list(PAPER_BLOCK_STRINGS)  # the paper's 7 stages (spnas/space.py grammar)
    c.space.width = 0.5  # channel multiplier
    c.space.stem_stride = 2
    c.space.block_strides = [1, 1, 2, 2, 1, 2, 1]  # first stride of each stage (32x32 inputs)
    c.space.stem_channels = 32
    c.space.head_channels = 1280
    c.space.dropout = 0.2  # before the classifier
    # Each searchable layer's candidates (any subset of k3_e3, k3_e6, k5_e3, k5_e6) and where
    # it may be skipped: inner (not a block's first layer), all (a projection where the shape
    # changes) or none (docs/spaces_and_costs.md).
    c.space.candidates = list(CANDIDATES)
    c.space.skip = "inner"
    # The superkernel's init: "fan_in" (ours: group norms start near 1, so the
    # thresholds get a gradient from the first step) or "fan_out" (MnasNet's conv
    # init, as the authors' release; spnas/superkernel/block.py).
    c.superkernel_init = "fan_in"
    c.latency_table = "embedded_cpu"  # a path or the name of a shipped table ("": none, cost != latency)
    c.table_proxy = False  # True: allow a table of another input size (e.g. Pixel 1 on 32x32)
    # The paper: 8 epochs, the first 5 with lambda = 0 and indicator dropout.
    c.lambda_warmup_epochs = c.schedule.get_ref("epochs") * (
        common.PAPER_SEARCH_WARMUP_EPOCHS / common.PAPER_SEARCH_EPOCHS
    )
    c.indicator_keep_prob = 0.6  # indicator dropout keep-probability during the warm-up
    c.lambda_ = 0.02  # the release's run; runtime loss = lambda * 1e3 * ln(R_ms)
    # Latency-target mode (0 = off): a PI controller sets lambda from ln(R / target)
    # after the warm-up (spnas/search/target.py): integral gain target_lr,
    # proportional gain target_kp, |lambda| <= target_max_lambda.
    # The decoded net is then moved to the budget by one global shift of the
    # indicators' margins (target_decode; spnas/search/target.py).
    # The default: a target in the middle of embedded_cpu's range (0.094-0.540 ms), so
    # the first run shows the trade-off (a mix of kernels and expansions; with the
    # release's fixed lambda = 0.02 this space decodes 17 of 20 layers as k5_e6).
    # 0 = off: the fixed-lambda mode of the paper.
    c.target_ms = 0.32  # latency target in ms (0: fixed-lambda mode)
    # What the search's cost is: "latency" (the latency table), "macs" (millions of
    # multiply-accumulates) or "params" (parameters), the last two counted exactly from
    # the space. With "macs" or "params" set the budget as target (in MMAC or parameters)
    # and target_ms=0; target with cost=latency is target_ms by another name.
    c.cost = "latency"
    c.target = 0.0  # budget in the cost's unit (0: off; target_ms for latency)
    c.target_lr = 0.02  # controller integral gain
    c.target_kp = 1.0  # controller proportional gain
    c.target_max_lambda = 1.0  # bound on |lambda| in target mode
    c.target_decode = True  # move the decoded net to the budget by a margin shift
    c.target_tolerance = 0.05  # relative tolerance of the budget
    # Parameter limit beside the latency target (0 = off): after the warm-up a second
    # multiplier lambda_p on lambda_p * 1e3 * ln(P) grows while the decoded net has more
    # than max_params parameters and decays to 0 under it; the decoded net is then
    # moved under the limit by a margin shift (spnas/search/limits.py).
    c.max_params = 0  # parameter limit of the decoded net (0: off)
    c.params_lr = 0.02  # parameter-limit controller integral gain
    c.params_kp = 1.0  # parameter-limit controller proportional gain
    c.params_max_lambda = 1.0  # bound on lambda_p (>= 0)
    # Many budgets from one search: after it, decode one net per latency budget from the
    # same supernet (the margin shift of target_decode) and write arch_<T>ms.json each,
    # budgets.json/.csv and fig_budgets.png (spnas/search/budgets.py).
    c.targets = ""  # comma-separated budgets in the cost's unit, e.g. "0.2,0.25,0.3" ms ("": off)
    return c
