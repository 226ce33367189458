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
A resume off the chunk grid (a stop between checkpoints, or another
``checkpoint_every``) first trains up to the next grid step, then continues by chunks.

**Guards.** :class:`_NanGuard`, the first callback, checks the loss after every
step, and every model variable (weights, BN statistics, the supernet's thresholds
and lambda, hence its decisions and runtime) whenever something is about to read
them: at each log period (``check_every``, the loggers' period), before each
checkpoint and at the end of training (before decoding and arch.json). Checking
every variable costs about 70 ms on the embedded supernet on 2 cores (413 small
reductions), so not every step: a non-finite weight makes the next step's loss
non-finite anyway. The first non-finite value stops the run with one message
that is true about what was kept.

**Signals.** During :func:`run_fit`, SIGINT and SIGTERM (main thread only) stop the
run at the next step boundary: a checkpoint of that step is saved (atomically,
as the chunk checkpoints) and :class:`spnas.errors.Interrupted` says where and
that the same command resumes. A second signal while that checkpoint (or a
chunk checkpoint) is being written waits for the write to finish; outside a
write it stops at once, keeping the last checkpoint on disk. The previous
handlers come back afterwards.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from typing import Any

import keras
import numpy as np
from tqdm.auto import tqdm

from spnas.errors import Interrupted
from spnas.fileio import note
from spnas.train.checkpoint import (
    CheckpointError,
    TrainingDivergedError,
    _restore_callback_states,
    checkpoint_step,
    non_finite_variable,
    restore_checkpoint,
    save_checkpoint,
)

# Callers import the checkpoint's names from the runner, which saves and restores it.
__all__ = ["CheckpointError", "TqdmProgress", "TrainingDivergedError", "checkpoint_step",
           "restore_checkpoint", "run_fit", "save_checkpoint", "steps_for"]


def _step(model) -> int:
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


class _ChunkCheckpoint(keras.callbacks.Callback):
    def __init__(self, directory: str, callbacks: list, stop: _SignalStop):
        super().__init__()
        self.directory = directory
        self.callbacks = callbacks  # whose checkpoint_state() is saved with the weights
        self.stop = stop

    def on_epoch_end(self, epoch, logs=None):
        # Every process of a multi-host run checks the weights (their replicas hold the
        # same ones), so all stop together; a signal waits for the write.
        with self.stop.saving():
            save_checkpoint(self.model, self.directory, self.callbacks)


class _NanGuard(keras.callbacks.Callback):
    """Stops at the first non-finite loss (every step) or model variable (each
    ``every`` steps, before a checkpoint and at the end), before any other callback
    reads the model at that step (it is the first callback)."""

    def __init__(self, every: int = 1):
        super().__init__()
        self.every = max(1, int(every))
        self._period = None

    def _check_variables(self) -> None:
        # A finite loss can come with an update that blew the weights up.
        bad = non_finite_variable(self.model)
        if bad is not None:
            raise TrainingDivergedError(f"{bad} became non-finite at step {_step(self.model)}")

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        step = _step(self.model)
        if loss is not None and not np.isfinite(float(loss)):
            raise TrainingDivergedError(f"loss became {float(loss)} at step {step}")
        # The loggers write when the step crosses into a new period (spnas/train/metrics.py).
        period = step // self.every
        if period != self._period:
            self._period = period
            self._check_variables()

    def on_epoch_end(self, epoch, logs=None):  # a chunk ends: its checkpoint follows
        self._check_variables()

    def on_train_end(self, logs=None):
        self._check_variables()


class _Stopped(Exception):
    """Internal: leaves ``fit`` after a signal (``saved``: the step checkpointed, or None)."""

    def __init__(self, signum: int, saved: int | None):
        super().__init__(signum, saved)
        self.signum, self.saved = signum, saved


class _SignalStop:
    """SIGINT/SIGTERM during training: stop at the next step boundary (see module doc).

    Handlers are installed only in the main thread (Python allows no other) and the
    previous ones are restored on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._writing = 0
        self._second = False
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
        return False

    def _handle(self, signum, frame):
        if self.signum is None:
            self.signum = signum  # acted on at the next step boundary
        elif self._writing:
            self._second = True  # raised once the write is done
        else:
            raise _Stopped(signum, None)

    @contextlib.contextmanager
    def saving(self):
        """A checkpoint write: a second signal waits for it."""
        self._writing += 1
        try:
            yield
        finally:
            self._writing -= 1
        if self._second and not self._writing:
            raise _Stopped(self.signum, None)


class _StopAtSignal(keras.callbacks.Callback):
    """The last callback: after a signal, checkpoints the step just finished and leaves."""

    def __init__(self, directory: str, callbacks: list, stop: _SignalStop):
        super().__init__()
        self.directory, self.callbacks, self.stop = directory, callbacks, stop

    def on_train_batch_end(self, batch, logs=None):
        if self.stop.signum is None:
            return
        with self.stop.saving():
            step = save_checkpoint(self.model, self.directory, self.callbacks)
        raise _Stopped(self.stop.signum, step)


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
    remedy: str = "a lower learning rate",
    check_every: int = 1,
) -> int:
    """Trains ``model`` (compiled) up to ``total_steps`` global steps, resumably.

    ``dataset`` is the (repeated) training dataset, or a function of the global
    step it must start at: every ``fit`` call then starts where an uninterrupted
    run would be, so a resumed run trains on the same batches. ``remedy`` is what a
    divergence message tells the user to lower (``"a lower schedule.lr_per_256"``);
    ``check_every`` is the period of the variables' finiteness check (the log period).

    Returns:
      The final global step (== total_steps).

    Raises:
      TrainingDivergedError: the loss or a model variable became NaN/inf; the last
        good checkpoint in ``checkpoint_dir`` is kept.
      Interrupted: SIGINT or SIGTERM; a checkpoint of the step reached is saved.
      CheckpointError: the checkpoint in ``checkpoint_dir`` is damaged.
    """
    step = restore_checkpoint(model, checkpoint_dir)
    if step >= total_steps:
        # Nothing to train: the run had finished, or the config now asks for
        # fewer steps than the checkpoint holds. Say so rather than silently
        # report a model trained under another config.
        what = ("already finished" if step == total_steps else
                f"past the {total_steps} steps the config now asks for")
        note(f"the checkpoint in {checkpoint_dir} is at step {step}, {what}; nothing is "
             "trained. Remove that folder (or use another workdir) to start over.")
        return step

    def at(start: int):
        return dataset(start) if callable(dataset) else dataset

    chunk = max(1, min(int(checkpoint_every), total_steps))
    callbacks = list(callbacks or [])
    if step > 0:
        _restore_callback_states(checkpoint_dir, callbacks)
    stop = _SignalStop()
    callbacks = [_NanGuard(check_every), *callbacks, _ChunkCheckpoint(checkpoint_dir, callbacks, stop),
                 _StopAtSignal(checkpoint_dir, callbacks, stop)]

    def fit(epochs: int, initial_epoch: int, steps: int) -> None:
        model.fit(at(_step(model)), epochs=epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=steps, callbacks=callbacks, verbose=0, shuffle=False)

    full_chunks = total_steps // chunk
    try:
        with stop:
            # Checkpoints fall on chunk boundaries; a step off the grid (a stop between
            # checkpoints, or checkpoint_every changed between runs) trains up to the
            # next boundary first.
            if step % chunk and step < full_chunks * chunk:
                fit(1, 0, chunk - step % chunk)
            step = _step(model)
            if step % chunk == 0 and step // chunk < full_chunks:
                fit(full_chunks, step // chunk, chunk)
            remaining = total_steps - _step(model)
            if remaining > 0:
                fit(1, 0, remaining)
            if stop.signum is not None:  # came after the last step: its checkpoint is saved
                raise _Stopped(stop.signum, checkpoint_step(checkpoint_dir) or None)
    except TrainingDivergedError as e:
        last = checkpoint_step(checkpoint_dir)
        if last > 0:
            where = (f"the last good checkpoint (step {last}) is kept in {checkpoint_dir}, but "
                     "the same command would resume from it with the same learning rate and "
                     "(same seed, same steps) diverge again, and this work directory continues "
                     f"only the config it was started with: start over in a new --workdir with "
                     f"{remedy}")
        else:
            where = (f"it had not reached its first checkpoint, so nothing is kept: rerun with "
                     f"{remedy} (in this work directory or a new one)")
        raise TrainingDivergedError(f"Training diverged: {e}. Stopped; {where}.") from None
    except _Stopped as e:
        name = signal.Signals(e.signum).name
        if e.saved is not None:
            raise Interrupted(
                f"Interrupted by {name} at step {e.saved} of {total_steps}; checkpoint saved in "
                f"{checkpoint_dir}; the same command resumes from step {e.saved}.") from None
        last = checkpoint_step(checkpoint_dir)
        kept = (f"the last checkpoint (step {last}) in {checkpoint_dir} is kept; the same "
                f"command resumes from step {last}" if last else
                "no checkpoint had been written yet; the same command starts from step 0")
        raise Interrupted(f"Interrupted by a second {name} at step {_step(model)} of "
                          f"{total_steps}, without saving: {kept}.") from None
    return _step(model)


def steps_for(epochs: float, steps_per_epoch: int) -> int:
    return max(1, int(math.ceil(epochs * steps_per_epoch)))
