"""The single-path superkernel: one 5x5 depthwise kernel that encodes every
MBConv choice of a layer (Stamoulis et al., 2019, Sec. 3.2, Eq. 1-4) and its
differentiable runtime (Sec. 3.4, Eq. 11-12).

Decision order (reference-facts.md):
  d5x5  = 1(||w_shell|| > t5x5)                 shell = 5x5 minus the 3x3 core
  w'    = w_core + d5x5 * w_shell
  d100c = 1(||w'_e6extra|| > t100c)             second half of the channels
  d50c  = 1(||w'_e3|| > t50c)                   first half; only where skip is allowed
  w     = d50c * (w'_e3 + d100c * w'_e6extra)
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from spnas.space import CANDIDATES, choice_from_decisions, layer_runtime
from spnas.superkernel.indicator import group_norm, indicator

KERNEL_SIZE = 5  # the superkernel is always 5x5 (paper, Fig. 2)


def _masks(channels: int) -> dict[str, np.ndarray]:
    core = np.zeros((KERNEL_SIZE, KERNEL_SIZE, 1, 1), "float32")
    core[1:4, 1:4] = 1.0
    e3 = np.zeros((1, 1, channels, 1), "float32")
    e3[:, :, : channels // 2] = 1.0
    return {"core": core, "shell": 1.0 - core, "e3": e3, "e6": 1.0 - e3}


@keras.saving.register_keras_serializable(package="spnas")
class SuperkernelDepthwiseConv(keras.layers.Layer):
    """Depthwise 5x5 superkernel with trainable thresholds ``t5x5``, ``t100c``, ``t50c``.

    Args:
      strides: depthwise stride (1 or 2).
      allow_skip: whether the layer may be dropped (adds ``t50c``). The first
        layer of each block cannot be skipped.
      runtimes: optional dict with the layer's table entries ``k3_e3``,
        ``k3_e6``, ``k5_e3``, ``k5_e6`` (ms); enables :meth:`runtime_ms`.
      kernel_initializer: initializer of the depthwise kernel.
      kernel_regularizer: regularizer of the kernel and the thresholds (the
        reference applies weight decay to all non-BN variables).
      threshold_init: initial value of the thresholds (0 in the paper).
    """

    def __init__(
        self,
        strides: int = 1,
        allow_skip: bool = True,
        runtimes: dict | None = None,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        threshold_init: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.strides = int(strides)
        self.allow_skip = bool(allow_skip)
        if runtimes is not None:
            missing = [k for k in CANDIDATES if k not in runtimes]
            if missing:
                raise ValueError(f"{self.name}: runtimes lack {missing}.")
            runtimes = {k: float(runtimes[k]) for k in CANDIDATES}
        self.runtimes = runtimes
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.threshold_init = float(threshold_init)
        self.seed_generator = keras.random.SeedGenerator(seed=None, name="indicator_seed")

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if channels % 2:
            raise ValueError(f"{self.name}: the superkernel needs an even channel count, got {channels}.")
        self.channels = channels
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel",
            shape=(KERNEL_SIZE, KERNEL_SIZE, channels, 1),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            # Under a mixed-precision policy the decisions (norms vs thresholds) stay
            # in the variables' float32 and only the final kernel is cast to the
            # compute dtype in call(); no effect under float32.
            autocast=False,
        )
        init = keras.initializers.Constant(self.threshold_init)
        self.t5x5 = self.add_weight(name="t5x5", shape=(), initializer=init,
                                    regularizer=self.kernel_regularizer, autocast=False)
        self.t100c = self.add_weight(name="t100c", shape=(), initializer=init,
                                     regularizer=self.kernel_regularizer, autocast=False)
        self.t50c = (
            self.add_weight(name="t50c", shape=(), initializer=init,
                            regularizer=self.kernel_regularizer, autocast=False)
            if self.allow_skip
            else None
        )
        # Scheduled by the search (0.6 during warm-up, then 1.0): a variable, not a
        # Python float, so a compiled train step sees the new value.
        self.keep_prob = self.add_weight(
            name="indicator_keep_prob", shape=(), initializer="ones", trainable=False,
            autocast=False,
        )
        self._mask = {k: ops.convert_to_tensor(v) for k, v in _masks(channels).items()}

    # -- the decisions ------------------------------------------------------------------
    def _decide(self, training: bool = False):
        w = ops.convert_to_tensor(self.depthwise_kernel)
        m = self._mask
        shell = w * m["shell"]
        n5x5 = group_norm(shell)
        d5x5 = indicator(n5x5, self.t5x5)
        d5x5_used = self._drop(d5x5, training)
        w_prime = w * m["core"] + d5x5_used * shell
        w_e6 = w_prime * m["e6"]
        w_e3 = w_prime * m["e3"]
        n100c = group_norm(w_e6)
        d100c = indicator(n100c, self.t100c)
        d100c_used = self._drop(d100c, training)
        n50c = group_norm(w_e3)
        if self.t50c is not None:
            d50c = indicator(n50c, self.t50c)
            d50c_used = self._drop(d50c, training)
        else:
            d50c = d50c_used = ops.ones((), w.dtype)
        kernel = d50c_used * (w_e3 + d100c_used * w_e6)
        return kernel, (d5x5, d100c, d50c), (n5x5, n100c, n50c)

    def _drop(self, d, training):
        """Inverted dropout on one indicator; one Bernoulli draw per step."""
        if not training:
            return d
        keep = ops.cast(self.keep_prob, d.dtype)
        u = keras.random.uniform((), seed=self.seed_generator, dtype=d.dtype)
        return d * ops.cast(ops.less(u, keep), d.dtype) / keep

    def call(self, inputs, training=None, return_runtime=False):
        """Depthwise conv with the decided kernel.

        With ``return_runtime=True`` also returns the layer's runtime from the
        same indicators (one pass builds both; the supernet uses it for its
        loss). During the warm-up the indicators of d100c/d50c see the kernel
        after indicator dropout, as in the release; lambda is 0 then.
        """
        kernel, decisions, _ = self._decide(bool(training))
        out = ops.depthwise_conv(
            inputs, ops.cast(kernel, inputs.dtype), strides=self.strides, padding="same"
        )
        if return_runtime:
            return out, self._runtime(*decisions)
        return out

    def runtime_ms(self):
        """Differentiable runtime of the layer (Eq. 11-12) from its hard decisions.

        ``R = Rch * ratio + Rch * (1 - ratio) * d5x5`` with
        ``Rch = d50c * (R_k5e3 + d100c * (R_k5e6 - R_k5e3))`` and
        ``ratio = R_k3e6 / R_k5e6``; the table's k3e3 entry is not used (the
        paper's model approximates it by ``R_k5e3 * ratio``). Indicator dropout
        does not apply to the runtime.
        """
        _, decisions, _ = self._decide(training=False)
        return self._runtime(*decisions)

    def hard_decisions(self) -> tuple:
        """The hard (straight-through) ``(d5x5, d100c, d50c)`` as tensors, as the
        runtime uses them: for other per-candidate costs (the parameter count)."""
        return self._decide(training=False)[1]

    def _runtime(self, d5x5, d100c, d50c):
        if self.runtimes is None:
            raise ValueError(f"{self.name} has no latency-table entries.")
        return layer_runtime(self.runtimes, d5x5, d100c, d50c)

    def decisions(self) -> dict[str, float]:
        """Current hard decisions and the quantities behind them, as floats."""
        _, ds, norms = self._decide(training=False)

        def f(x):
            return float(ops.convert_to_numpy(x))

        return {
            "d5x5": f(ds[0]),
            "d100c": f(ds[1]),
            "d50c": f(ds[2]),
            "norm5x5": f(norms[0]),
            "norm100c": f(norms[1]),
            "norm50c": f(norms[2]),
            "t5x5": f(self.t5x5),
            "t100c": f(self.t100c),
            "t50c": f(self.t50c) if self.t50c is not None else None,
        }

    def choice(self) -> str:
        """The decoded MBConv choice: ``skip`` or ``k{3,5}_e{3,6}``."""
        d = self.decisions()
        return choice_from_decisions(d["d5x5"], d["d100c"], d["d50c"])

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape

        def out(s):
            return None if s is None else -(-s // self.strides)

        return (n, out(h), out(w), c)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "strides": self.strides,
                "allow_skip": self.allow_skip,
                "runtimes": self.runtimes,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
                if self.kernel_regularizer
                else None,
                "threshold_init": self.threshold_init,
            }
        )
        return config
