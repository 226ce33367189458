"""CIFAR-10 training of a searched (or any) net: the MnasNet recipe scaled to this data.

The paper's recipe (configs/train_default.py: RMSProp, LR 0.016 per 256 images,
5/350 linear warm-up, x0.97 steps, weight EMA, label smoothing 0.1, weight decay
1e-5, dropout 0.2) for 100 epochs at batch 128, with the decay period scaled so
the learning rate ends where the paper's 350 epochs end (x0.97 every 2.4/350 of
the schedule, 1.2 % of the peak). Data and augmentation as configs/cifar10.py.

Command:
  spnas-train --config=configs/cifar10_train.py --config.data.dataset=folder:/data/cifar10 \\
      --workdir=/tmp/cifar_search            # trains <workdir>/arch.json
  spnas-train --config=configs/cifar10_train.py --arch=mobilenetv2_cifar --config.width=0.5 ...
"""

from spnas.configs import cifar10, common, train_default


def get_config(arg=None):
    c = train_default.get_config(arg)
    c.data = cifar10.data()
    c.fallback_arch = "mobilenetv2_cifar"
    c.width = 0.0
    c.schedule = common.schedule(
        batch_size=128,
        epochs=100.0,
        warmup_fraction=common.PAPER_TRAIN_WARMUP_EPOCHS / common.PAPER_TRAIN_EPOCHS,
        bn_recalibration_batches=10,
    )
    c.schedule.lr_decay_epochs = c.schedule.get_ref("epochs") * cifar10.DECAY_FRACTION
    c.execution = common.execution(checkpoint_every=500, log_every=50)
    return c
