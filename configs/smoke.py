"""Smoke variant: the default search shrunk to seconds of training on a CPU.

A 6-layer space (4 searchable layers: `spnas.space.smoke_space`) with its
own shipped table (`smoke_cpu`, profiled like `embedded_cpu`), batch 16, 8 steps.

Command:
  spnas-search --config=configs/smoke.py --workdir=/tmp/spnas_smoke
Expected: well under a minute on 2 CPU cores (mostly building the train step);
the architecture it decodes is not meaningful, the plumbing is.
"""

from spnas.configs import default

from spnas.space import SMOKE_BLOCK_STRINGS


def get_config(arg=None):
    c = default.get_config(arg)
    c.space.blocks = list(SMOKE_BLOCK_STRINGS)
    c.space.block_strides = [1, 1, 2, 1]
    c.latency_table = "smoke_cpu"
    c.target_ms = 0.0  # fixed lambda: the plumbing of the paper's mode
    c.schedule.batch_size = 16
    c.schedule.epochs = 2.0
    c.schedule.steps_per_epoch = 4
    c.execution.checkpoint_every = 4
    c.execution.log_every = 1
    return c
