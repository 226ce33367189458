"""Embedded default of ``spnas-train``: the searched net on the embedded digits, on a CPU.

The paper's training recipe (MnasNet; reference-facts.md "Training") with the
epochs scaled down: RMSProp 0.9/0.9/1e-3, LR 0.016 per 256 images (derived
from batch_size below), linear warm-up over 5/350 of the epochs, then x0.97
every 2.4 epochs (staircase from step 0), weight EMA 0.9999 (evaluated and
exported), label smoothing 0.1, weight decay 1e-5, dropout 0.2, float32.

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
Knobs: --arch=mobilenetv2_050 --config.epochs=40 --config.batch_size=128
       --config.strategy=mirrored --config.cpu_replicas=2
"""

import ml_collections

# MnasNet: 0.016 per 256 images. Kept here rather than imported from
# spnas.train.schedule (LR_PER_256, the same value, pinned by a test) so that
# loading a config does not import Keras: a bad command fails in a second.
LR_PER_256 = 0.016
PAPER_EPOCHS = 350.0  # reference-facts.md "Training"
PAPER_WARMUP_EPOCHS = 5.0


def get_config(arg=None):
    del arg
    c = ml_collections.ConfigDict()
    # Architecture: a registry name, an arch.json path, or comma-separated stage
    # strings. Empty: <workdir>/arch.json if present, else fallback_arch.
    c.arch = ""
    c.fallback_arch = "spnas_pixel1_050"
    c.width = 0.0  # 0: the architecture's own width multiplier
    c.dropout = 0.2
    # Data.
    c.dataset = "embedded"
    c.data_dir = ""
    c.manual_dir = ""
    c.on_corrupt = "error"  # or "skip"
    c.validation_fraction = 0.1
    c.augment = ml_collections.FieldReference(None, field_type=str)  # None: dataset default
    c.eval_split = "validation"
    c.image_size = 32
    c.num_classes = -1  # -1: from the dataset
    # Schedule (MnasNet), scaled by epochs.
    c.batch_size = 64
    c.eval_batch_size = 0  # 0: batch_size
    c.epochs = 12.0
    c.warmup_epochs = c.get_ref("epochs") * (PAPER_WARMUP_EPOCHS / PAPER_EPOCHS)
    c.steps_per_epoch = 0.0  # 0: train images / batch_size
    c.train_steps = 0  # 0: int(epochs * steps_per_epoch)
    c.lr_per_256 = LR_PER_256
    c.lr = c.get_ref("lr_per_256") * c.get_ref("batch_size") / 256.0
    c.lr_decay_epochs = 2.4
    c.lr_decay_rate = 0.97
    c.ema_decay = 0.9999
    c.label_smoothing = 0.1
    c.weight_decay = 1e-5
    # Not in the paper: recompute BN statistics for the EMA weights over this many
    # training batches before evaluating/exporting (spnas/train/precise_bn.py). A
    # run of a few hundred steps needs it; the 350-epoch ImageNet run does not (0).
    c.bn_recalibration_batches = 10
    # Execution.
    c.strategy = "auto"  # auto | cpu | mirrored | multiworker | tpu
    c.tpu = ""
    c.cpu_replicas = 1
    c.jit_compile = False  # XLA on CPU is several times slower for these nets
    c.run_eagerly = False  # True: no graph build (~30 s+ on 2 busy cores); for few-step tests
    c.checkpoint_every = 100
    c.log_every = 10
    c.seed = 0
    return c
