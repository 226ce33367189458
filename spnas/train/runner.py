"""Step-exact, pre-emption-safe training with ``model.fit``.

Training runs in chunks of ``checkpoint_every`` steps (Keras "epochs"); after
each chunk the model and optimizer state are saved atomically. A run killed at
any point and started again with the same command restores the last chunk and
continues at the same global step, so it finishes with the same step count.
Keras' BackupAndRestore restores whole epochs only and overwrites in place,
hence this small runner.
"""

from __future__ import annotations

import json
import math
import os
import sys

import keras
import numpy as np
from tqdm.auto import tqdm

from spnas.errors import UserError
from spnas.fileio import atomic_write_json

CKPT_WEIGHTS = "ckpt.weights.h5"
CKPT_META = "ckpt.json"


class TrainingDivergedError(UserError, RuntimeError):
    """The loss became NaN or infinite."""


def _step(model) -> int:
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def save_checkpoint(model: keras.Model, directory: str) -> int:
    """Saves weights + optimizer state atomically; returns the global step."""
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, CKPT_WEIGHTS)
    tmp = os.path.join(directory, "ckpt-partial.weights.h5")
    model.save_weights(tmp, overwrite=True)
    os.replace(tmp, final)
    step = _step(model)
    atomic_write_json(os.path.join(directory, CKPT_META), {"step": step})
    return step


def restore_checkpoint(model: keras.Model, directory: str) -> int:
    """Restores the last checkpoint if there is one; returns the global step (0 if none)."""
    path = os.path.join(directory, CKPT_WEIGHTS)
    if not os.path.exists(path):
        return 0
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    step = _step(model)
    meta = os.path.join(directory, CKPT_META)
    if step == 0 and os.path.exists(meta):
        # Keras only warns when the saved optimizer state does not fit this optimizer
        # (another ema_decay, a float learning rate instead of a schedule, ...) and
        # leaves it at step 0: the run would silently start over.
        with open(meta) as f:
            saved = json.load(f).get("step", 0)
        if saved > 0:
            raise ValueError(
                f"The checkpoint in {directory} (step {saved}) has optimizer state that does "
                "not fit this run's optimizer (was the configuration changed?). Rerun with the "
                "original configuration, or use a new work directory."
            )
    return step


class _ChunkCheckpoint(keras.callbacks.Callback):
    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def on_epoch_end(self, epoch, logs=None):
        # The last update may have blown the weights up although its loss was finite:
        # never let such weights replace the last good checkpoint.
        for v in self.model.trainable_variables:
            if not np.all(np.isfinite(keras.ops.convert_to_numpy(v))):
                raise TrainingDivergedError(
                    f"weight {v.path} became non-finite at step {_step(self.model)}"
                )
        save_checkpoint(self.model, self.directory)


class _NanGuard(keras.callbacks.Callback):
    """Stops at the first non-finite loss, before the checkpoint of that chunk."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            raise TrainingDivergedError(f"loss became {float(loss)} at step {_step(self.model)}")


class TqdmProgress(keras.callbacks.Callback):
    """One progress bar over the whole run (global steps), with the latest logs."""

    def __init__(self, total_steps: int, keys=("loss", "ce", "accuracy"), extra=None, desc="search"):
        super().__init__()
        self.total = total_steps
        self.keys = keys
        self.extra = extra  # optional callable -> dict of more values to show
        self.desc = desc
        self.bar = None

    def on_train_begin(self, logs=None):
        if self.bar is None:
            self.bar = tqdm(total=self.total, initial=_step(self.model), desc=self.desc,
                            unit="step", mininterval=2.0, dynamic_ncols=True)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is None:
            return
        step = _step(self.model)
        self.bar.update(step - self.bar.n)
        shown = {k: f"{float(logs[k]):.3f}" for k in self.keys if logs and k in logs}
        if self.extra is not None and step % 10 == 0:
            shown.update(self.extra())
        self.bar.set_postfix(shown, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_fit(
    model: keras.Model,
    dataset,
    total_steps: int,
    checkpoint_dir: str,
    checkpoint_every: int,
    callbacks: list | None = None,
) -> int:
    """Trains ``model`` (compiled) up to ``total_steps`` global steps, resumably.

    Returns:
      The final global step (== total_steps).

    Raises:
      TrainingDivergedError: the loss became NaN/inf; the last good checkpoint
        in ``checkpoint_dir`` is kept.
    """
    step = restore_checkpoint(model, checkpoint_dir)
    if step >= total_steps:
        # Nothing to train: the run had finished, or the config now asks for
        # fewer steps than the checkpoint holds. Say so rather than silently
        # report a model trained under another config.
        what = ("already finished" if step == total_steps else
                f"past the {total_steps} steps the config now asks for")
        print(f"note: the checkpoint in {checkpoint_dir} is at step {step}, {what}; nothing is "
              "trained. Remove that folder (or use another workdir) to start over.",
              file=sys.stderr)
        return step
    chunk = max(1, min(int(checkpoint_every), total_steps))
    callbacks = [_NanGuard(), *(callbacks or []), _ChunkCheckpoint(checkpoint_dir)]
    full_chunks = total_steps // chunk
    try:
        # Checkpoints fall on chunk boundaries; a step off the grid (checkpoint_every
        # changed between runs) goes straight to the step-exact tail below.
        if step % chunk == 0 and step // chunk < full_chunks:
            model.fit(dataset, epochs=full_chunks, initial_epoch=step // chunk,
                      steps_per_epoch=chunk, callbacks=callbacks, verbose=0, shuffle=False)
        step = _step(model)
        remaining = total_steps - step
        if remaining > 0:
            model.fit(dataset, epochs=1, steps_per_epoch=remaining, callbacks=callbacks,
                      verbose=0, shuffle=False)
    except TrainingDivergedError as e:
        last = None
        meta = os.path.join(checkpoint_dir, CKPT_META)
        if os.path.exists(meta):
            with open(meta) as f:
                last = json.load(f).get("step")
        where = (f"the last good checkpoint (step {last}) is kept in {checkpoint_dir}"
                 if last is not None else "no checkpoint had been written yet")
        raise TrainingDivergedError(
            f"Training diverged: {e}. Stopped; {where}. Lower the learning rate (or lambda) "
            "and run again; an unchanged command resumes from that checkpoint."
        ) from None
    return _step(model)


def steps_for(epochs: float, steps_per_epoch: int) -> int:
    return max(1, int(math.ceil(epochs * steps_per_epoch)))
