"""RMSProp with MnasNet's weight EMA, and helpers to use the EMA weights.

RMSProp: TF1's ``RMSPropOptimizer`` (which MnasNet and the release use) starts
its mean-square accumulator at 1, Keras at 0. From 0 the first updates are
``lr * g / sqrt(0.1 g^2 + eps)`` ~ 3 lr per weight whatever the gradient, which
wrecks the initial weights (we saw the search's CE climb to 16 in its first
steps); from 1 they are ``lr * g``. :class:`MnasRMSprop` starts at 1.

MnasNet uses ``tf.train.ExponentialMovingAverage(0.9999, num_updates=step)``,
whose shadows start at the variables' values and whose decay is
``min(0.9999, (1 + n) / (10 + n))``: without that warm-up a
0.9999 average of a short run stays at the initial weights. Keras' built-in
EMA has no warm-up and overwrites the model with the average at the end of
every ``fit`` call; here the average is kept apart and swapped in explicitly
for evaluation and export (:func:`ema_weights`).

MnasNet's EMA also averages the BN moving statistics (its ``ema_vars`` are the
trainable variables plus every ``moving_mean`` / ``moving_variance``), so the
evaluated net uses averaged statistics with its averaged weights. Keras hands an
optimizer only the trainable variables; :func:`track_moving_statistics` gives it
the BN statistics too, and the same decay averages them after every step.
(Where BN statistics are recomputed for the EMA weights before evaluating,
``schedule.bn_recalibration_batches > 0``, these averages are overwritten.)
"""

from __future__ import annotations

import contextlib

import keras
from keras import ops

from spnas.train.precise_bn import batch_norm_layers

RMSPROP_RHO = 0.9  # MnasNet
RMSPROP_MOMENTUM = 0.9  # MnasNet
RMSPROP_EPSILON = 1e-3  # MnasNet
EMA_DECAY = 0.9999  # MnasNet


@keras.saving.register_keras_serializable(package="spnas")
class MnasRMSprop(keras.optimizers.RMSprop):
    """RMSProp 0.9/0.9/1e-3 as TF1 (accumulator starts at 1) with a TF1-style EMA."""

    def __init__(self, learning_rate=0.016, rho=RMSPROP_RHO, momentum=RMSPROP_MOMENTUM,
                 epsilon=RMSPROP_EPSILON, use_ema=True, ema_momentum=EMA_DECAY, **kwargs):
        super().__init__(learning_rate=learning_rate, rho=rho, momentum=momentum,
                         epsilon=epsilon, use_ema=use_ema, ema_momentum=ema_momentum, **kwargs)

    def track_moving_statistics(self, variables) -> None:
        """Also averages these non-trainable variables (BN moving statistics), as
        MnasNet does; call before the optimizer is built (after ``compile``)."""
        if self.built:
            raise RuntimeError("track_moving_statistics must be called before the first step")
        self._tracked_statistics = list(variables)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._statistic_averages = []
        if self.use_ema:
            for var in getattr(self, "_tracked_statistics", []):
                average = self.add_variable_from_reference(var, name="average")
                average.assign(var)
                self._statistic_averages.append(average)
        for velocity in self._velocities:
            if velocity is not None:
                velocity.assign(ops.ones(velocity.shape, velocity.dtype))
        if self.use_ema:
            # TF1's ExponentialMovingAverage starts each shadow at the variable's value;
            # Keras starts its averages at 0, which the first average (decay 0.1 at
            # step 0) would carry as 0.9 w1 instead of 0.1 w0 + 0.9 w1.
            for var, average in zip(var_list, self._model_variables_moving_average):
                if average is not None:
                    average.assign(var)

    def _update_model_variables_moving_average(self, trainable_variables):
        if not self.use_ema:
            return
        n = ops.cast(self.iterations, "float32")
        decay = ops.minimum(self.ema_momentum, (1.0 + n) / (10.0 + n))
        for var, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is not None:
                d = ops.cast(decay, var.dtype)
                average.assign(d * average + (1.0 - d) * var)
        for var, average in zip(self._tracked_statistics_list(), self._statistic_averages):
            d = ops.cast(decay, var.dtype)
            average.assign(d * average + (1.0 - d) * var)

    def _tracked_statistics_list(self) -> list:
        return list(getattr(self, "_tracked_statistics", []))

    def averaged_pairs(self, model: keras.Model) -> list:
        """(variable, its average) for the trainable weights and the tracked BN statistics."""
        averages = getattr(self, "_model_variables_moving_average", None)
        if not self.use_ema or not averages:
            return []
        pairs = list(zip(model.trainable_variables, averages))
        return pairs + list(zip(self._tracked_statistics_list(),
                                getattr(self, "_statistic_averages", [])))

    def finalize_variable_values(self, var_list):
        # Keep the raw weights in the model; EMA weights are swapped in on demand.
        return


def moving_statistics(model: keras.Model) -> list:
    """The BN moving means and variances of ``model`` (nested layers included)."""
    out = []
    for layer in batch_norm_layers(model):
        if layer.built:
            out += [layer.moving_mean, layer.moving_variance]
    return out


def _pairs(model: keras.Model) -> list:
    opt = getattr(model, "optimizer", None)
    if isinstance(opt, MnasRMSprop):
        return opt.averaged_pairs(model)
    averages = getattr(opt, "_model_variables_moving_average", None) if opt is not None else None
    return list(zip(model.trainable_variables, averages)) if averages else []


@contextlib.contextmanager
def ema_weights(model: keras.Model):
    """Temporarily loads the optimizer's EMA into the model's trainable variables (and
    into its BN moving statistics where the optimizer averages them); restores the
    raw values on exit."""
    pairs = _pairs(model)
    saved = [ops.convert_to_numpy(v) for v, _ in pairs]
    for v, a in pairs:
        v.assign(a)
    try:
        yield model
    finally:
        for (v, _), value in zip(pairs, saved):
            v.assign(value)


def copy_ema_into_model(model: keras.Model) -> None:
    """Overwrites the model's trainable weights (and averaged BN statistics) with their EMA."""
    for v, a in _pairs(model):
        v.assign(a)
