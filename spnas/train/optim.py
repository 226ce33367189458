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
        # Non-trainable variables averaged too (BN statistics), held where Keras' tracker
        # does not adopt them as the optimizer's own (JAX would donate them twice).
        self._statistics = _References()
        self._statistic_averages = []  # their averages, made in build()
        self._step_constants = None  # per dtype, while an update step is being built

    def track_moving_statistics(self, variables) -> None:
        """Also averages these non-trainable variables (BN moving statistics), as
        MnasNet does; call before the optimizer is built (after ``compile``)."""
        if self.built:
            raise RuntimeError("track_moving_statistics must be called before the first step")
        self._statistics = _References(variables)

    def add_variable_from_reference(self, reference_variable, name=None, initializer="zeros"):
        if name == "velocity":
            # TF1's accumulator starts at 1. An initializer rather than an assign in
            # build(): where nothing builds the optimizer before the first step, Keras
            # builds it inside the first trace of the train step, and tf.function keeps
            # the initializers of variables made there but drops assigns made there.
            initializer = "ones"
        return super().add_variable_from_reference(reference_variable, name=name,
                                                   initializer=initializer)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        if not self.use_ema:
            return
        self._statistic_averages = [self.add_variable_from_reference(var, name="average")
                                    for var in self._tracked_statistics]
        # TF1's ExponentialMovingAverage starts each shadow at the variable's value;
        # Keras starts its averages at 0, which the first average (decay 0.1 at step 0)
        # would carry as 0.9 w1 instead of 0.1 w0 + 0.9 w1. An initializer cannot read
        # another variable inside a trace (tf.function would guard the whole step with
        # an initialisation cond), so this needs the optimizer built before the train
        # step is traced, as Supernet.make_train_function does; built inside the trace,
        # the averages start at Keras' 0 (the start's weight in the average after n
        # steps is prod_{i<n} (1 + i) / (10 + i): 1e-5 after 10 steps).
        averages = list(self._model_variables_moving_average) + self._statistic_averages
        for var, average in zip(list(var_list) + self._tracked_statistics, averages):
            if average is not None:  # a copy: on JAX an assign shares the buffer, which
                average.assign(ops.copy(var))  # the train step then donates twice

    # -- the update step -------------------------------------------------------------------
    # Keras' RMSprop and EMA arithmetic, in the same order and so to the bit the same
    # values, with fewer graph ops per variable (they dominate the time to build the
    # train step: ~0.5 ms of tracing and graph optimisation per op on 2 CPU cores):
    # the new slot values are used as computed instead of being read back from the
    # variables, and the constants (rho, 1 - rho, epsilon, momentum, the EMA decay) are
    # made once per step instead of once per variable and use.
    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        self._step_constants = {}
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._step_constants = None

    def _constants(self, dtype) -> tuple:
        """(rho, 1 - rho, epsilon, momentum) as tensors of ``dtype``, shared in one step."""
        cache, key = self._step_constants, str(dtype)
        if cache is not None and key in cache:
            return cache[key]
        constants = tuple(ops.convert_to_tensor(c, dtype)
                          for c in (self.rho, 1 - self.rho, self.epsilon, self.momentum))
        if cache is not None:  # None: an update_step called outside apply(), nothing to share
            cache[key] = constants
        return constants

    def update_step(self, gradient, variable, learning_rate):
        if self.centered:
            return super().update_step(gradient, variable, learning_rate)
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        rho, one_minus_rho, epsilon, momentum = self._constants(variable.dtype)
        index = self._get_variable_index(variable)
        velocity = self._velocities[index]
        new_velocity = ops.add(ops.multiply(rho, velocity),
                               ops.multiply(one_minus_rho, ops.square(gradient)))
        self.assign(velocity, new_velocity)
        increment = ops.divide(ops.multiply(lr, gradient),
                               ops.sqrt(ops.add(new_velocity, epsilon)))
        if self.momentum > 0:
            slot = self._momentums[index]
            new_momentum = ops.add(ops.multiply(momentum, slot), increment)
            self.assign(slot, new_momentum)
            self.assign_sub(variable, new_momentum)
        else:
            self.assign_sub(variable, increment)

    def _ema_decay(self, n):
        """The EMA decay after step ``n`` (0-based): MnasNet's ``num_updates`` warm-up."""
        n = ops.cast(n, "float32")
        return ops.minimum(self.ema_momentum, (1.0 + n) / (10.0 + n))

    @staticmethod
    def _assign_averages(pairs, decay) -> None:
        """``average <- d * average + (1 - d) * var`` for each pair (d cast once per dtype)."""
        weights = {}  # dtype -> (decay, 1 - decay)
        for var, average in pairs:
            key = str(var.dtype)
            if key not in weights:
                d = ops.cast(decay, var.dtype)
                weights[key] = (d, 1.0 - d)
            d, rest = weights[key]
            average.assign(d * average + rest * var)

    def _update_model_variables_moving_average(self, trainable_variables):
        if not self.use_ema:
            return
        pairs = [(var, average) for var, average
                 in zip(trainable_variables, self._model_variables_moving_average)
                 if average is not None]
        if not self.averages_statistics_after_step:
            pairs += list(zip(self._tracked_statistics, self._statistic_averages))
        self._assign_averages(pairs, self._ema_decay(self.iterations))

    @property
    def _tracked_statistics(self) -> list:
        return self._statistics.variables

    @property
    def averages_statistics_after_step(self) -> bool:
        """On JAX the update step is a pure function of the optimizer's and the trainable
        variables only: the BN statistics it would read are the values of the trace, not
        of the step. There :class:`StatisticAverages` averages them after each step."""
        return keras.backend.backend() == "jax"

    def average_statistics(self) -> None:
        """One EMA update of the tracked statistics with the decay of the step just
        taken (``iterations`` has already counted it)."""
        if not self.use_ema or not self._statistic_averages:
            return
        self._assign_averages(zip(self._tracked_statistics, self._statistic_averages),
                              self._ema_decay(self.iterations - 1))

    def averaged_pairs(self, model: keras.Model) -> list:
        """(variable, its average) for the trainable weights and the tracked BN statistics."""
        averages = getattr(self, "_model_variables_moving_average", None)
        if not self.use_ema or not averages:
            return []
        pairs = list(zip(model.trainable_variables, averages))
        return pairs + list(zip(self._tracked_statistics, self._statistic_averages))

    def finalize_variable_values(self, var_list):
        # Keep the raw weights in the model; EMA weights are swapped in on demand.
        return


class _References:
    """Variables an optimizer reads but does not own (a plain list would be tracked)."""

    def __init__(self, variables=()):
        self.variables = list(variables)


class StatisticAverages(keras.callbacks.Callback):
    """Averages the BN statistics a :class:`MnasRMSprop` tracks after every step; added
    (by :func:`spnas.train.recipe.fit`) only where the step itself cannot
    (``averages_statistics_after_step``: JAX)."""

    def on_train_batch_end(self, batch, logs=None):
        self.model.optimizer.average_statistics()


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
        v.assign(ops.copy(a))  # not the average's own buffer (JAX would share it)
    try:
        yield model
    finally:
        for (v, _), value in zip(pairs, saved):
            v.assign(value)


def copy_ema_into_model(model: keras.Model) -> None:
    """Overwrites the model's trainable weights (and averaged BN statistics) with their EMA."""
    for v, a in _pairs(model):
        v.assign(ops.copy(a))
