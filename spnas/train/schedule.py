"""Learning-rate schedule of MnasNet / Single-Path NAS.

``lr(step) = base * 0.97 ** floor(step / (2.4 epochs))`` (staircase, counted
from step 0), with an optional linear warm-up over the first epochs (5 for the
350-epoch training, none for the search). Reference: MnasNet TPU code,
``build_learning_rate``; reference-facts.md.
"""

from __future__ import annotations

import keras
from keras import ops

LR_PER_256 = 0.016  # MnasNet: 0.016 per 256 images
DECAY_EPOCHS = 2.4
DECAY_RATE = 0.97


def scaled_lr(batch_size: int, lr_per_256: float = LR_PER_256) -> float:
    """Linear scaling rule: 0.016 per 256 images (0.064 at batch 1024)."""
    return lr_per_256 * batch_size / 256.0


@keras.saving.register_keras_serializable(package="spnas")
class MnasNetSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Exponential staircase decay with linear warm-up.

    Args:
      base_lr: peak learning rate.
      steps_per_epoch: optimizer steps per epoch (global batch).
      decay_epochs: epochs between decays (2.4).
      decay_rate: multiplicative decay (0.97).
      warmup_epochs: linear warm-up length in epochs (0 = none).
    """

    def __init__(self, base_lr: float, steps_per_epoch: int, decay_epochs: float = DECAY_EPOCHS,
                 decay_rate: float = DECAY_RATE, warmup_epochs: float = 0.0):
        self.base_lr = float(base_lr)
        self.steps_per_epoch = int(steps_per_epoch)
        self.decay_epochs = float(decay_epochs)
        self.decay_rate = float(decay_rate)
        self.warmup_epochs = float(warmup_epochs)
        if self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}.")

    def __call__(self, step):
        step = ops.cast(step, "float32")
        decay_steps = max(self.decay_epochs * self.steps_per_epoch, 1.0)
        lr = self.base_lr * ops.power(self.decay_rate, ops.floor(step / decay_steps))
        if self.warmup_epochs > 0:
            warmup_steps = self.warmup_epochs * self.steps_per_epoch
            warm = self.base_lr * step / warmup_steps
            lr = ops.where(step < warmup_steps, warm, lr)
        return lr

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "steps_per_epoch": self.steps_per_epoch,
            "decay_epochs": self.decay_epochs,
            "decay_rate": self.decay_rate,
            "warmup_epochs": self.warmup_epochs,
        }
