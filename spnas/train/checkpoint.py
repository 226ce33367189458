"""The checkpoint of a resumable run: weights, optimizer, random generators, callbacks.

One folder holds one checkpoint: ``ckpt.weights.h5`` (the model's and the
optimizer's variables, EMA included) and ``ckpt.json`` (the global step, the state
of every ``keras.random.SeedGenerator`` of the model, which Keras does not save
with the weights, and the ``checkpoint_state()`` of the callbacks that have one:
the search's lambda schedule and controller). Both are written atomically; a
damaged one is reported (:class:`CheckpointError`), never replaced by a fresh
start. :func:`spnas.train.runner.run_fit` saves and restores through here.
"""

from __future__ import annotations

import contextlib
import json
import os

import h5py  # the weights format of Keras; to check a checkpoint opens before loading it
import keras
import numpy as np

from spnas.errors import UserError
from spnas.fileio import atomic_write_json
from spnas.train.distribute import is_chief


class TrainingDivergedError(UserError, RuntimeError):
    """The loss, a weight or a model statistic became NaN or infinite."""


def _step(model) -> int:
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


CKPT_WEIGHTS = "ckpt.weights.h5"
CKPT_META = "ckpt.json"


class CheckpointError(UserError):
    """A checkpoint file is damaged (truncated, not HDF5, not JSON)."""


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


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


def _damaged(path: str, what: str) -> CheckpointError:
    folder = os.path.dirname(path)
    return CheckpointError(
        f"Checkpoint file {path} is damaged ({what}); it is not replaced by a fresh start. "
        f"To start over, delete {folder} (or use a new --workdir).")


def _read_meta(directory: str) -> dict:
    """The checkpoint's ``ckpt.json`` (step, seed states, callback states); {} if none.

    Raises:
      CheckpointError: it exists but is not such a JSON object.
    """
    meta = os.path.join(directory, CKPT_META)
    if not os.path.exists(meta):
        return {}
    try:
        with open(meta, "rb") as f:
            out = json.loads(f.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _damaged(meta, f"not valid JSON: {e}") from None
    if not isinstance(out, dict) or not isinstance(out.get("step", 0), int) \
            or out.get("step", 0) < 0:
        raise _damaged(meta, "not a checkpoint description with a step >= 0")
    return out


def check_checkpoint(directory: str) -> int:
    """Checks the checkpoint files in ``directory``; returns the step of ckpt.json (0: none).

    Raises:
      CheckpointError: ckpt.json is not JSON, or ckpt.weights.h5 is missing while
        ckpt.json names a step, or is truncated or not an HDF5 file.
    """
    meta = _read_meta(directory)
    path = os.path.join(directory, CKPT_WEIGHTS)
    if not os.path.exists(path):
        if meta.get("step", 0) > 0:
            raise _damaged(path, f"missing, while {CKPT_META} says step {meta['step']}")
        return 0
    with open(path, "rb") as f:
        head = f.read(len(_HDF5_SIGNATURE))
    if head != _HDF5_SIGNATURE:
        raise _damaged(path, "not an HDF5 file")
    try:
        with h5py.File(path, "r") as f:
            f.visit(lambda name: None)
    except Exception as e:  # h5py raises OSError/KeyError/RuntimeError alike
        raise _damaged(path, f"truncated or unreadable: {str(e).splitlines()[0][:120]}") from None
    return int(meta.get("step", 0))


def checkpoint_step(directory: str) -> int:
    """The global step of the checkpoint in ``directory`` (0 when there is none).

    Raises:
      CheckpointError: the checkpoint is damaged (:func:`check_checkpoint`).
    """
    return check_checkpoint(directory)


def save_checkpoint(model: keras.Model, directory: str, callbacks: list | None = None) -> int:
    """Saves weights, optimizer and random-generator state atomically; returns the step.

    Callbacks with ``checkpoint_state() -> dict`` (JSON-able) have it saved too
    (e.g. the latency-target controller's last error) and get it back through
    ``restore_state(dict)`` when :func:`run_fit` resumes.

    In a multi-host run only the chief writes (:func:`spnas.train.distribute.is_chief`);
    the others return the step and restore from the chief's directory, which must
    be on a filesystem they all see.
    """
    bad = non_finite_variable(model)
    if bad is not None:  # never let blown-up weights replace the last good checkpoint
        raise TrainingDivergedError(f"{bad} became non-finite at step {_step(model)}")
    if not is_chief():
        return _step(model)
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, CKPT_WEIGHTS)
    tmp = os.path.join(directory, "ckpt-partial.weights.h5")
    step = _step(model)
    states = {type(c).__name__: c.checkpoint_state() for c in callbacks or ()
              if hasattr(c, "checkpoint_state")}
    meta = {"step": step, "seed_states": _seed_states(model), "callbacks": states}
    model.save_weights(tmp, overwrite=True)
    # The description is ready before the weights land, so the two renames follow each
    # other within a millisecond.
    os.replace(tmp, final)
    atomic_write_json(os.path.join(directory, CKPT_META), meta)
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
    """Restores the last checkpoint if there is one; returns the global step (0 if none).

    Raises:
      CheckpointError: the checkpoint files are damaged (never silently a fresh start).
      ValueError: the checkpoint is of another model or optimizer.
    """
    path = os.path.join(directory, CKPT_WEIGHTS)
    check_checkpoint(directory)
    if not os.path.exists(path):
        return 0
    if not model.optimizer.built:
        # Its slots must be made where the model's variables were (tf.distribute
        # refuses outside the strategy's scope; a resumed multi-worker run got there).
        with _strategy_scope(model):
            model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(path)
    except OSError as e:  # h5py: a file cut short after its directory
        raise _damaged(path, f"unreadable: {str(e).splitlines()[0][:120]}") from None
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


def non_finite_variable(model: keras.Model) -> str | None:
    """The path of the first model variable holding a NaN or inf (None: all finite).

    All variables of the model, not only the trainable ones: the BN statistics,
    and the supernet's lambda and thresholds (its decisions and runtime follow from
    them). One device round trip: a flag per variable, stacked, read once.
    """
    variables = list(model.weights)
    if not variables:
        return None
    ops = keras.ops
    flags = keras.ops.convert_to_numpy(
        ops.stack([ops.all(ops.isfinite(ops.cast(v, "float32"))) for v in variables]))
    bad = np.flatnonzero(~np.asarray(flags, dtype=bool))
    return variables[int(bad[0])].path if bad.size else None
