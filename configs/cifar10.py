"""CIFAR-10 search: the paper's 22-layer space on 32x32 images, on an image folder.

Data: ``data.dataset = "folder:PATH"`` with ``PATH/train/<class>/*.jpg`` (e.g. the
50,000 CIFAR-10 training images; without a ``validation/`` folder 10 % of each
class is held out, seeded). Augmentation: ``cifar`` (4-pixel zero pad, random
32x32 crop, horizontal flip). Space: :func:`spnas.space.cifar_space`, the
paper's blocks and block strides with a stride-1 stem (layers at 32, 16, 8, 4, 4,
2, 2 pixels), width 0.5. Latency table: ``cifar10_cpu``, that space profiled on a
2-core x86 host with the LiteRT interpreter (1 thread), shipped with spnas.

Recipe: the paper's search (8 epochs, lambda = 0 and indicator dropout for the
first 5, x0.97 every 2.4 epochs: 10 % decay in all) at batch 128. Latency-target
mode with a target in the middle of the table's range. ``DECAY_FRACTION`` is
for the training config: its decay period scales with its epochs.

Command:
  spnas-search --config=configs/cifar10.py --config.data.dataset=folder:/data/cifar10 \\
      --workdir=/tmp/cifar_search
Cost: 8 epochs of 352 steps; about 0.7 s per step on 2 CPU cores (~9 h), minutes on
an accelerator. ``bench/table1.py --preset=cpu`` runs a 500-step version.
"""

from spnas.configs import common, default

from spnas.space import CIFAR_BLOCK_STRIDES

# The paper trains 350 epochs and decays the learning rate by 0.97 every 2.4 epochs.
DECAY_FRACTION = common.DECAY_EPOCHS / common.PAPER_TRAIN_EPOCHS


def data(dataset: str = "folder:cifar10"):
    d = common.data(dataset, image_size=32)
    d.augment = "cifar"
    return d


def get_config(arg=None):
    c = default.get_config(arg)
    c.data = data()
    c.schedule = common.schedule(batch_size=128, epochs=common.PAPER_SEARCH_EPOCHS,
                                 bn_recalibration_batches=20)
    c.lambda_warmup_epochs = c.schedule.get_ref("epochs") * (
        common.PAPER_SEARCH_WARMUP_EPOCHS / common.PAPER_SEARCH_EPOCHS
    )
    c.execution = common.execution(checkpoint_every=200, log_every=10)
    c.space.stem_stride = 1
    c.space.block_strides = list(CIFAR_BLOCK_STRIDES)
    c.space.width = 0.5
    c.latency_table = "cifar10_cpu"
    c.target_ms = 0.30  # the middle of cifar10_cpu's range (see its docstring)
    return c
