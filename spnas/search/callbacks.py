"""Callbacks of the search: the lambda / indicator-dropout schedule and the log.

Schedule (reference-facts.md, "Search"): for the first ``warmup_steps``
(5 of 8 epochs) lambda = 0 and every indicator is kept with probability 0.6;
afterwards lambda takes its value and indicator dropout stops. Both are
non-trainable variables of the supernet, so the compiled step sees them; the
schedule reads the optimizer's step, so a resumed run picks up where it was.
"""

from __future__ import annotations

import csv
import io

import keras
import numpy as np

from spnas.fileio import atomic_write_text
from spnas.search.supernet import Supernet
from spnas.train.distribute import is_chief
from spnas.train.metrics import read_log
from spnas.train.scalars import open_writer


def _global_step(model) -> int:
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


class SearchSchedule(keras.callbacks.Callback):
    """Sets lambda and the indicator keep-probability from the global step.

    Args:
      supernet: the model being searched.
      warmup_steps: steps with lambda = 0 and indicator dropout on.
      runtime_lambda: lambda after the warm-up (ignored when ``controller`` is set).
      keep_prob: indicator keep-probability during the warm-up (0.6).
      controller: optional latency-target controller with
        ``next_lambda(current, runtime_ms, first) -> float`` that adapts lambda
        after the warm-up (see spnas/search/target.py). Lambda lives in a model
        variable, so it is checkpointed and a resumed run continues from it.
      params_controller: optional parameter-limit controller with
        ``next_lambda(current, params, first) -> float`` that sets the supernet's
        ``params_lambda`` after the warm-up (0 before; spnas/search/limits.py).
    """

    def __init__(self, supernet: Supernet, warmup_steps: int, runtime_lambda: float,
                 keep_prob: float = 0.6, controller=None, params_controller=None):
        super().__init__()
        self.supernet = supernet
        self.warmup_steps = int(warmup_steps)
        self.runtime_lambda = float(runtime_lambda)
        self.keep_prob = float(keep_prob)
        self.controller = controller
        self.params_controller = params_controller
        self._state = None
        self._step = None

    def values(self, step: int) -> tuple[float, float, float]:
        """(lambda, indicator keep-probability, lambda_p) for ``step``."""
        if step < self.warmup_steps:
            return 0.0, self.keep_prob, 0.0
        first = step == self.warmup_steps
        lam_p = 0.0
        if self.params_controller is not None:
            current = float(keras.ops.convert_to_numpy(self.supernet.params_lambda))
            params = float(keras.ops.convert_to_numpy(self.supernet.params_count()))
            lam_p = self.params_controller.next_lambda(current, params, first=first)
        if self.controller is None:
            return self.runtime_lambda, 1.0, lam_p
        current = float(keras.ops.convert_to_numpy(self.supernet.runtime_lambda))
        runtime = float(keras.ops.convert_to_numpy(self.supernet.runtime_ms()))
        return self.controller.next_lambda(current, runtime, first=first), 1.0, lam_p

    def checkpoint_state(self) -> dict:
        """What a resumed run needs besides the model (whose variables hold both
        lambdas): the controllers' last errors."""
        state = {"last_error": getattr(self.controller, "_last_error", None)}
        if self.params_controller is not None:
            state["params"] = self.params_controller.state()
        return state

    def restore_state(self, state: dict) -> None:
        if self.controller is not None:
            self.controller._last_error = state.get("last_error")
        if self.params_controller is not None:
            self.params_controller.restore(state.get("params") or {})

    def on_train_begin(self, logs=None):
        self.on_train_batch_begin(0)

    def on_train_batch_begin(self, batch, logs=None):
        step = _global_step(self.model)
        if step == self._step:  # the first batch of a fit() right after on_train_begin
            return
        self._step = step  # the controller must see each step once
        state = self.values(step)
        if state != self._state:
            self.supernet.set_runtime_lambda(state[0])
            self.supernet.set_indicator_keep_prob(state[1])
            if self.params_controller is not None:
                self.supernet.set_params_lambda(state[2])
            self._state = state


LOG_FIELDS = ("step", "epoch", "loss", "ce", "accuracy", "lr", "lambda", "keep_prob", "runtime_ms",
              "params", "lambda_params")


class WindowMeans:
    """Means over the batches between two reads, from Keras' running means.

    ``update(batch, logs)`` takes the 0-based batch index within the epoch and the
    running means Keras reports after it, and returns for each key the mean of
    the batches since the previous update (or the epoch's start, after
    :meth:`reset`): ``(k m_k - j m_j) / (k - j)``.
    """

    def __init__(self, keys):
        self.keys = tuple(keys)
        self.reset()

    def reset(self) -> None:
        self._seen, self._means = 0, {}

    def update(self, batch: int, logs: dict) -> dict:
        count = int(batch) + 1
        out = {}
        for key in self.keys:
            if key in logs:
                m = float(logs[key])
                out[key] = ((count * m - self._seen * self._means.get(key, 0.0))
                            / max(1, count - self._seen))
        self._seen = count
        self._means = {k: float(logs[k]) for k in self.keys if k in logs}
        return out


class SearchLogger(keras.callbacks.Callback):
    """Writes ``search_log.csv`` (and TensorBoard scalars) every ``every`` steps.

    Columns: step, epoch, loss, ce, accuracy (each the mean over the steps since
    the previous row, i.e. a window of ``every`` steps), lr, lambda, keep_prob,
    runtime_ms and params (of the decoded net, from the hard decisions),
    lambda_params (the parameter limit's multiplier) and, per searchable layer,
    ``L<i>_d5x5``, ``L<i>_d100c``, ``L<i>_d50c``. Rows are keyed by step: on
    (re)start the file is rewritten atomically with the rows up to the restored
    step only (none for a start at step 0), so the log has each step once.

    Keras reports a metric as its running mean since the start of the epoch (of
    each ``fit`` chunk here), which would draw a curve that resets every
    ``checkpoint_every`` steps; the window mean is recovered exactly from two
    running means: ``(k m_k - j m_j) / (k - j)`` over batches ``j+1..k``.
    """

    WINDOWED = ("loss", "ce", "accuracy")

    def __init__(self, supernet: Supernet, csv_path: str, every: int, steps_per_epoch: int,
                 lr_schedule=None, tb_dir: str | None = None):
        super().__init__()
        self.supernet = supernet
        self.csv_path = csv_path
        self.every = max(1, int(every))
        self.steps_per_epoch = steps_per_epoch
        self.lr_schedule = lr_schedule
        self.tb_dir = tb_dir
        self.layer_ids = [spec.index for spec in supernet.space.layers() if spec.searchable]
        self.fields = list(LOG_FIELDS) + [
            f"L{i}_{d}" for i in self.layer_ids for d in ("d5x5", "d100c", "d50c")
        ]
        self._writer = None
        self._file = None
        self._tb = None
        self._windows = WindowMeans(self.WINDOWED)

    def on_epoch_begin(self, epoch, logs=None):
        self._windows.reset()

    def on_train_begin(self, logs=None):
        if self._file is not None or not is_chief():  # other hosts of a cluster write nothing
            return
        step = _global_step(self.model)
        # Rows are keyed by step: keep those up to the restored checkpoint (none at step 0,
        # which is logged again below), rewritten atomically (a kill here must not lose
        # them), then append. A row cut short by a kill is dropped.
        kept = [r for r in read_log(self.csv_path) if step > 0 and int(r["step"]) <= step]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_text(self.csv_path, buffer.getvalue())
        self._file = open(self.csv_path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.fields)
        self._tb = open_writer(self.tb_dir)
        if step == 0:
            self._log(0, {})

    def _log(self, step: int, logs: dict):
        sn = self.supernet
        row = {
            "step": step,
            "epoch": round(step / self.steps_per_epoch, 4),
            "lr": float(keras.ops.convert_to_numpy(self.lr_schedule(step))) if self.lr_schedule else "",
            "lambda": float(keras.ops.convert_to_numpy(sn.runtime_lambda)),
            "keep_prob": float(keras.ops.convert_to_numpy(sn.searchable_blocks[0].conv_dw.keep_prob)),
            "runtime_ms": float(keras.ops.convert_to_numpy(sn.runtime_ms())) if sn.latency else "",
            "params": round(float(keras.ops.convert_to_numpy(sn.params_count()))),
            "lambda_params": float(keras.ops.convert_to_numpy(sn.params_lambda)),
        }
        for key in ("loss", "ce", "accuracy"):
            row[key] = float(logs[key]) if key in logs else ""
        for d in sn.decisions():
            for name in ("d5x5", "d100c", "d50c"):
                row[f"L{d['index']}_{name}"] = int(d[name])
        self._writer.writerow(row)
        self._file.flush()
        if self._tb is not None:
            keys = ("loss", "ce", "accuracy", "lr", "lambda", "keep_prob", "runtime_ms", "params",
                    "lambda_params")
            self._tb.scalars(step, {f"search/{k}": row[k] for k in keys})
            self._tb.scalars(step, {f"choices/{c}": n
                                    for c, n in _choice_counts(sn.choices()).items()})

    def on_train_batch_end(self, batch, logs=None):
        step = _global_step(self.model)
        if self._file is not None and step % self.every == 0:
            self._log(step, self._windows.update(batch, logs or {}))

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _choice_counts(choices: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in choices:
        out[c] = out.get(c, 0) + 1
    return out


def kernel_channel_std(supernet: Supernet) -> dict[str, list]:
    """Per searchable layer, the 5x5 map of the superkernel's std across channels (Fig. 6)."""
    out = {}
    for block, spec in zip(supernet.mbconv, supernet.space.layers()):
        if spec.searchable:
            w = np.asarray(keras.ops.convert_to_numpy(block.conv_dw.depthwise_kernel))[..., 0]
            out[str(spec.index)] = np.std(w, axis=-1).round(6).tolist()
    return out
