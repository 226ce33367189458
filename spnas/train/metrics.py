"""Logging of a training run: a CSV log every N steps.

It survives the pre-emption/resume cycle of :func:`spnas.train.runner.run_fit`:
on resume the CSV keeps only the rows up to the restored step (rows written
after the last checkpoint are dropped, so every step appears once). The
TensorBoard scalars are :class:`spnas.train.scalars.TrainScalars`.
"""

from __future__ import annotations

import csv
import os

import keras

from spnas.fileio import atomic_write_text
from spnas.train.distribute import is_chief

LOG_FIELDS = ("step", "epoch", "loss", "accuracy", "lr")


def global_step(model: keras.Model) -> int:
    """The optimizer's step counter (the number of updates applied so far)."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def read_log(path: str) -> list[dict]:
    """Complete rows of a training CSV log (a row cut short by a kill is dropped)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        if None in row.values() or None in row:
            continue  # cut short (fewer or more fields than the header)
        try:
            int(row["step"])
        except (KeyError, ValueError):
            continue
        out.append(row)
    return out


class TrainLogger(keras.callbacks.Callback):
    """Appends ``step, epoch, loss, accuracy, lr`` to a CSV every ``every`` steps.

    ``loss`` and ``accuracy`` are Keras' running means over the current
    checkpoint chunk (one Keras "epoch" of ``run_fit``); ``loss`` includes the
    weight-decay term. ``lr`` is the schedule's value at that step.

    Args:
      csv_path: the log file (created, or trimmed to the restored step).
      every: log period in global steps.
      steps_per_epoch: images per epoch / batch size (float; for the epoch column).
      lr_schedule: callable step -> learning rate, or None.
    """

    def __init__(self, csv_path: str, every: int, steps_per_epoch: float, lr_schedule=None):
        super().__init__()
        self.csv_path = csv_path
        self.every = max(1, int(every))
        self.steps_per_epoch = float(steps_per_epoch)
        self.lr_schedule = lr_schedule
        self._file = None
        self._writer = None
        self._last = 0

    def on_train_begin(self, logs=None):
        # run_fit may call fit() twice; other hosts of a cluster write nothing.
        if self._file is not None or not is_chief():
            return
        step = global_step(self.model)
        kept = [r for r in read_log(self.csv_path) if int(r["step"]) <= step]
        # Rewrite atomically (a kill here must not lose the rows before `step`),
        # then append.
        lines = [",".join(LOG_FIELDS)]
        lines += [",".join(str(r.get(k, "")) for k in LOG_FIELDS) for r in kept]
        atomic_write_text(self.csv_path, "\n".join(lines) + "\n")
        self._file = open(self.csv_path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=LOG_FIELDS)
        self._last = step

    def on_train_batch_end(self, batch, logs=None):
        if self._file is None:
            return
        step = global_step(self.model)
        # Compare periods rather than `step % every` so a jump of several steps
        # (steps_per_execution > 1) still logs once per period.
        if step // self.every > self._last // self.every:
            self._log(step, logs or {})
        self._last = step

    def _log(self, step: int, logs: dict) -> None:
        lr = ""
        if self.lr_schedule is not None:
            lr = float(keras.ops.convert_to_numpy(self.lr_schedule(step)))
        self._writer.writerow(
            {
                "step": step,
                "epoch": round(step / self.steps_per_epoch, 4),
                "loss": float(logs["loss"]) if "loss" in logs else "",
                "accuracy": float(logs["accuracy"]) if "accuracy" in logs else "",
                "lr": lr,
            }
        )
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._writer = None
