"""Embedded default of ``spnas-train``: the searched net on the embedded digits, on a CPU.

The paper's training recipe (MnasNet; reference-facts.md "Training") with the
epochs scaled down: RMSProp 0.9/0.9/1e-3, LR 0.016 per 256 images (derived
from schedule.batch_size), linear warm-up over 5/350 of the epochs, then
x0.97 every 2.4 epochs (staircase from step 0), weight EMA 0.9999 (evaluated
and exported), label smoothing 0.1, weight decay 1e-5, dropout 0.2, float32.
The recipe is the search's (spnas/train/recipe.py), with the same sections
(configs/common.py): ``data``, ``schedule``, ``execution``.

Data: the 1,797 8x8 scikit-learn digits upsampled to 32x32 (90 % train / 10 %
validation), as in configs/default.py. Architecture: ``<workdir>/arch.json``
when spnas-search wrote one there, else ``fallback_arch`` (the paper's
searched Pixel 1 net at width 0.5); ``--arch`` picks any other.

Command (after ``spnas-search --workdir=/tmp/spnas``, or on its own):
  spnas-train --workdir=/tmp/spnas
Expected: about 3.5 minutes on 2 busy CPU cores (12 epochs, 303 steps at batch
64; building the training graph takes the first minute or two); top-1 91-97 %
on the 179 validation digits (EMA weights, BN statistics recomputed; one image
is 0.56 %). Writes train_report.json, model.keras, train_log.csv and tb/train/
in the workdir. Then ``spnas-export --workdir=/tmp/spnas`` converts model.keras
to TFLite.
Knobs: --arch=mobilenetv2_050 --config.schedule.epochs=40 --config.schedule.batch_size=128
       --config.execution.strategy=mirrored --config.execution.cpu_replicas=2
"""

import ml_collections
from spnas.configs import common


def get_config(arg=None):
    del arg
    c = ml_collections.ConfigDict()
    # Architecture: a registry name, an arch.json path, or comma-separated stage
    # strings. Empty: <workdir>/arch.json if present, else fallback_arch.
    c.arch = ""
    c.fallback_arch = "spnas_pixel1_050"
    c.width = 0.0  # 0: the architecture's own width multiplier
    c.dropout = 0.2
    c.data = common.data("embedded", image_size=32)
    c.eval_split = "validation"
    # Not in the paper: recompute BN statistics for the EMA weights over 10
    # training batches before evaluating/exporting (spnas/train/precise_bn.py). A
    # run of a few hundred steps needs it; the 350-epoch ImageNet run does not (0).
    c.schedule = common.schedule(
        batch_size=64,
        epochs=12.0,
        warmup_fraction=common.PAPER_TRAIN_WARMUP_EPOCHS / common.PAPER_TRAIN_EPOCHS,
        bn_recalibration_batches=10,
    )
    c.execution = common.execution(checkpoint_every=100, log_every=10)
    c.seed = 0
    return c
