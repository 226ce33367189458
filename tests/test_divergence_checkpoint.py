"""On divergence the last good checkpoint is kept (spnas/train/runner.py ``run_fit``).

A tiny regression net trains 2 steps at a sane learning rate (checkpoint at step 2),
then the learning rate jumps to 1e30: the next update blows the weights up and the
loss becomes inf. The checkpoint on disk must still be the one of step 2, holding
exactly the weights at the end of that chunk, and the error must name step 2.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf


class _Jump(keras.optimizers.schedules.LearningRateSchedule):
    def __call__(self, step):
        return tf.where(step < 2, 0.01, 1e30)


class _Snapshot(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.after = {}

    def on_epoch_end(self, epoch, logs=None):
        self.after[int(self.model.optimizer.iterations.numpy())] = [
            np.array(w) for w in self.model.get_weights()]


def _model():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"),
                          keras.layers.Dense(1)])
    m.compile(optimizer=keras.optimizers.SGD(_Jump()), loss="mse", jit_compile=False)
    return m


def test_divergence_keeps_the_last_good_checkpoint(tmp_path):
    from spnas.train.runner import (
        TrainingDivergedError,
        checkpoint_step,
        restore_checkpoint,
        run_fit,
    )

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x.sum(-1, keepdims=True) * 10.0).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    model, snap = _model(), _Snapshot()
    ckpt = str(tmp_path / "ckpt")
    with pytest.raises(TrainingDivergedError, match=r"last good checkpoint \(step 2\)"):
        run_fit(model, data, total_steps=8, checkpoint_dir=ckpt, checkpoint_every=2,
                callbacks=[snap])
    assert sorted(snap.after) == [2]  # only the first chunk ended
    assert checkpoint_step(ckpt) == 2
    fresh = _model()
    assert restore_checkpoint(fresh, ckpt) == 2
    for got, want in zip(fresh.get_weights(), snap.after[2]):
        np.testing.assert_array_equal(got, want)
    assert all(np.all(np.isfinite(w)) for w in fresh.get_weights())
    # and the model in memory is the diverged one, not the checkpoint
    assert not all(np.array_equal(a, b) for a, b in zip(model.get_weights(), snap.after[2]))
