"""TensorBoard scalars without TensorFlow, indexed by the optimizer's global step.

The event files are written with the ``tensorboard`` package's own writer (it
needs protobuf, not TensorFlow), so search and training log the same curves on
the TensorFlow and the JAX backend. Where ``tensorboard`` is not installed (a
JAX machine set up without it), :func:`open_writer` returns None, one note says
so, and the CSV logs and PNG figures are the record.

Steps are the optimizer's step, so the curves of a resumed run continue where
the killed one stopped (Keras' own TensorBoard callback counts batches per
``fit`` call, which restarts at 0 on every resume).
"""

from __future__ import annotations

import importlib
import time

import keras

from spnas.fileio import note
from spnas.train.distribute import is_chief
from spnas.train.metrics import global_step

_noted: set[str] = set()


class ScalarWriter:
    """Appends scalar summaries to one event file in ``logdir``."""

    def __init__(self, logdir: str):
        writer_module = importlib.import_module("tensorboard.summary.writer.event_file_writer")
        self._event = importlib.import_module("tensorboard.compat.proto.event_pb2").Event
        self._summary = importlib.import_module("tensorboard.compat.proto.summary_pb2").Summary
        self._writer = writer_module.EventFileWriter(logdir, flush_secs=30)

    def scalars(self, step: int, values: dict) -> None:
        """Writes ``{tag: number}`` at ``step`` (non-numbers and empty strings skipped)."""
        summary_values = [self._summary.Value(tag=tag, simple_value=float(v))
                          for tag, v in values.items() if isinstance(v, (int, float))]
        if summary_values:
            self._writer.add_event(self._event(wall_time=time.time(), step=int(step),
                                               summary=self._summary(value=summary_values)))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def open_writer(logdir: str | None) -> ScalarWriter | None:
    """A writer for ``logdir``; None when there is none, on non-chief processes of a
    multi-host run, or when the ``tensorboard`` package is missing (noted once)."""
    if not logdir or not is_chief():
        return None
    try:
        return ScalarWriter(logdir)
    except ImportError:
        if "tensorboard" not in _noted:
            _noted.add("tensorboard")
            note("the tensorboard package is not installed, so no TensorBoard logs are "
                 "written (the CSV logs and PNG figures are; `pip install tensorboard` adds "
                 "them).")
        return None


class TrainScalars(keras.callbacks.Callback):
    """``train/loss``, ``train/accuracy`` (Keras' running means over the checkpoint
    chunk) and ``train/lr`` every ``every`` global steps, and :meth:`write_eval`'s
    final evaluation as ``eval/<metric>``.

    Args:
      logdir: event file directory (``<workdir>/tb/train``).
      every: period in global steps.
      lr_schedule: callable step -> learning rate, or None.
    """

    KEYS = ("loss", "accuracy", "top5")

    def __init__(self, logdir: str, every: int, lr_schedule=None):
        super().__init__()
        self.logdir = logdir
        self.every = max(1, int(every))
        self.lr_schedule = lr_schedule
        self._writer: ScalarWriter | None = None
        self._opened = False
        self._last = 0

    def on_train_begin(self, logs=None):
        if not self._opened:  # run_fit may call fit() twice
            self._writer = open_writer(self.logdir)
            self._opened = True
        self._last = global_step(self.model)

    def on_train_batch_end(self, batch, logs=None):
        step = global_step(self.model)
        if self._writer is not None and step // self.every > self._last // self.every:
            values = {f"train/{k}": float(logs[k]) for k in self.KEYS if logs and k in logs}
            if self.lr_schedule is not None:
                values["train/lr"] = float(keras.ops.convert_to_numpy(self.lr_schedule(step)))
            self._writer.scalars(step, values)
        self._last = step

    def write_eval(self, step: int, result: dict) -> None:
        """The final evaluation's metrics at the last step."""
        if self._writer is not None:
            self._writer.scalars(step, {f"eval/{k}": float(v) for k, v in result.items()})

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
