"""Step-exact, pre-emption-safe training with ``model.fit``.

Training runs in chunks of ``checkpoint_every`` steps (Keras "epochs"); after
each chunk the model and optimizer state are saved atomically. A run killed at
any point and started again with the same command restores the last chunk and
continues at the same global step, so it finishes with the same step count.
Keras' BackupAndRestore restores whole epochs only and overwrites in place,
hence this small runner.

A resumed run continues the uninterrupted one exactly: besides the weights and
the optimizer state (EMA included), the checkpoint holds the state of every
random-number generator of the model (indicator dropout, dropout; Keras does not
save them with the weights), and each ``fit`` call gets the training stream from
the current global step on (``dataset`` may be a function of the start step).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from typing import Any

import keras
import numpy as np
from tqdm.auto import tqdm

from spnas.errors import UserError
from spnas.fileio import atomic_write_json
from spnas.train.distribute import is_chief

CKPT_WEIGHTS = "ckpt.weights.h5"
CKPT_META = "ckpt.json"


class TrainingDivergedError(UserError, RuntimeError):
    """The loss became NaN or infinite."""


def _step(model) -> int:
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def seed_generators(model: keras.Model) -> list:
    """Every ``keras.random.SeedGenerator`` of the model, in a stable order."""
    out, seen = [], set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for sg in getattr(layer, "_seed_generators", ()):
            if id(sg) not in seen:
                seen.add(id(sg))
                out.append(sg)
    return out


def _seed_states(model: keras.Model) -> list[list[int]]:
    return [[int(x) for x in keras.ops.convert_to_numpy(sg.state)] for sg in seed_generators(model)]


def _read_meta(directory: str) -> dict:
    """The checkpoint's ``ckpt.json`` (step, seed states, callback states); {} if none."""
    meta = os.path.join(directory, CKPT_META)
    if not os.path.exists(meta):
        return {}
    with open(meta) as f:
        return json.load(f)


def checkpoint_step(directory: str) -> int:
    """The global step of the checkpoint in ``directory`` (0 when there is none)."""
    if not os.path.exists(os.path.join(directory, CKPT_WEIGHTS)):
        return 0
    return int(_read_meta(directory).get("step", 0))


def save_checkpoint(model: keras.Model, directory: str, callbacks: list | None = None) -> int:
    """Saves weights, optimizer and random-generator state atomically; returns the step.

    Callbacks with ``checkpoint_state() -> dict`` (JSON-able) have it saved too
    (e.g. the latency-target controller's last error) and get it back through
    ``restore_state(dict)`` when :func:`run_fit` resumes.

    In a multi-host run only the chief writes (:func:`spnas.train.distribute.is_chief`);
    the others return the step and restore from the chief's directory, which must
    be on a filesystem they all see.
    """
    if not is_chief():
        return _step(model)
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, CKPT_WEIGHTS)
    tmp = os.path.join(directory, "ckpt-partial.weights.h5")
    model.save_weights(tmp, overwrite=True)
    os.replace(tmp, final)
    step = _step(model)
    states = {type(c).__name__: c.checkpoint_state() for c in callbacks or ()
              if hasattr(c, "checkpoint_state")}
    atomic_write_json(os.path.join(directory, CKPT_META),
                      {"step": step, "seed_states": _seed_states(model), "callbacks": states})
    return step


def _restore_callback_states(directory: str, callbacks: list) -> None:
    states = _read_meta(directory).get("callbacks") or {}
    for c in callbacks:
        if hasattr(c, "restore_state") and type(c).__name__ in states:
            c.restore_state(states[type(c).__name__])


def _strategy_scope(model: keras.Model):
    """The scope of the tf.distribute strategy the model was made in (TensorFlow
    backend; a no-op elsewhere)."""
    strategy = getattr(model, "distribute_strategy", None)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def restore_checkpoint(model: keras.Model, directory: str) -> int:
    """Restores the last checkpoint if there is one; returns the global step (0 if none)."""
    path = os.path.join(directory, CKPT_WEIGHTS)
    if not os.path.exists(path):
        return 0
    if not model.optimizer.built:
        # Its slots must be made where the model's variables were (tf.distribute
        # refuses outside the strategy's scope; a resumed multi-worker run got there).
        with _strategy_scope(model):
            model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    step = _step(model)
    meta = _read_meta(directory)
    states = meta.get("seed_states")
    generators = seed_generators(model)
    if states is not None and len(states) == len(generators):
        for sg, state in zip(generators, states):
            sg.state.assign(np.asarray(state, dtype=sg.state.dtype))
    if step == 0:
        # Keras only warns when the saved optimizer state does not fit this optimizer
        # (another ema_decay, a float learning rate instead of a schedule, ...) and
        # leaves it at step 0: the run would silently start over.
        saved = meta.get("step", 0)
        if saved > 0:
            raise ValueError(
                f"The checkpoint in {directory} (step {saved}) has optimizer state that does "
                "not fit this run's optimizer (was the configuration changed?). Rerun with the "
                "original configuration, or use a new work directory."
            )
    return step


class _ChunkCheckpoint(keras.callbacks.Callback):
    def __init__(self, directory: str, callbacks: list):
        super().__init__()
        self.directory = directory
        self.callbacks = callbacks  # whose checkpoint_state() is saved with the weights

    def on_epoch_end(self, epoch, logs=None):
        # The last update may have blown the weights up although its loss was finite:
        # never let such weights replace the last good checkpoint. Every process of a
        # multi-host run checks (their replicas hold the same weights), so all stop together.
        for v in self.model.trainable_variables:
            if not np.all(np.isfinite(keras.ops.convert_to_numpy(v))):
                raise TrainingDivergedError(
                    f"weight {v.path} became non-finite at step {_step(self.model)}"
                )
        save_checkpoint(self.model, self.directory, self.callbacks)


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
    dataset: Any,
    total_steps: int,
    checkpoint_dir: str,
    checkpoint_every: int,
    callbacks: list | None = None,
) -> int:
    """Trains ``model`` (compiled) up to ``total_steps`` global steps, resumably.

    ``dataset`` is the (repeated) training dataset, or a function of the global
    step it must start at: every ``fit`` call then starts where an uninterrupted
    run would be, so a resumed run trains on the same batches.

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
    def at(start: int):
        return dataset(start) if callable(dataset) else dataset

    chunk = max(1, min(int(checkpoint_every), total_steps))
    callbacks = list(callbacks or [])
    if step > 0:
        _restore_callback_states(checkpoint_dir, callbacks)
    callbacks = [_NanGuard(), *callbacks, _ChunkCheckpoint(checkpoint_dir, callbacks)]
    full_chunks = total_steps // chunk
    try:
        # Checkpoints fall on chunk boundaries; a step off the grid (checkpoint_every
        # changed between runs) goes straight to the step-exact tail below.
        if step % chunk == 0 and step // chunk < full_chunks:
            model.fit(at(step), epochs=full_chunks, initial_epoch=step // chunk,
                      steps_per_epoch=chunk, callbacks=callbacks, verbose=0, shuffle=False)
        step = _step(model)
        remaining = total_steps - step
        if remaining > 0:
            model.fit(at(step), epochs=1, steps_per_epoch=remaining, callbacks=callbacks,
                      verbose=0, shuffle=False)
    except TrainingDivergedError as e:
        last = _read_meta(checkpoint_dir).get("step")
        where = (f"the last good checkpoint (step {last}) is kept in {checkpoint_dir}"
                 if last is not None else "no checkpoint had been written yet")
        raise TrainingDivergedError(
            f"Training diverged: {e}. Stopped; {where}. Lower the learning rate (or lambda) "
            "and run again; an unchanged command resumes from that checkpoint."
        ) from None
    return _step(model)


def steps_for(epochs: float, steps_per_epoch: int) -> int:
    return max(1, int(math.ceil(epochs * steps_per_epoch)))
