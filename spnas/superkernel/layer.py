"""The single-path superkernel: one 5x5 depthwise kernel that encodes every
MBConv choice of a layer (Stamoulis et al., 2019, Sec. 3.2, Eq. 1-4) and its
differentiable cost (Sec. 3.4, Eq. 11-12).

Decision order (reference-facts.md), for the paper's four candidates:
  d5x5  = 1(||w_shell|| > t5x5)                 shell = 5x5 minus the 3x3 core
  w'    = w_core + d5x5 * w_shell
  d100c = 1(||w'_e6extra|| > t100c)             second half of the channels
  d50c  = 1(||w'_e3|| > t50c)                   first half; only where skip is allowed
  w     = d50c * (w'_e3 + d100c * w'_e6extra)

A layer with another candidate set (:mod:`spnas.choices`) keeps this kernel with
the set's effective d5x5 and d100c: thresholds it does not need do not exist,
and a tied pair is one group with one threshold (``t5x5``).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from spnas.choices import CANDIDATES, QUADRANTS, SKIP, encoding, superkernel_cost
from spnas.superkernel.indicator import group_norm, indicator

KERNEL_SIZE = 5  # the superkernel is always 5x5 (paper, Fig. 2)


def _masks(channels: int, a_group: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    core = np.zeros((KERNEL_SIZE, KERNEL_SIZE, 1, 1), "float32")
    core[1:4, 1:4] = 1.0
    e3 = np.zeros((1, 1, channels, 1), "float32")
    e3[:, :, : channels // 2] = 1.0
    out = {"core": core, "shell": 1.0 - core, "e3": e3, "e6": 1.0 - e3}
    quadrant = {q: out[q.split("_")[0]] * out[q.split("_")[1]] for q in QUADRANTS}
    out["a"] = sum((quadrant[q] for q in a_group), np.zeros((KERNEL_SIZE, KERNEL_SIZE,
                                                              channels, 1), "float32"))
    return out


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
      candidates: the layer's candidate set (:mod:`spnas.choices`; the paper's four).
      exact_cost: the cost of a four-candidate layer with one k3/k5 ratio per
        expansion (exact); False keeps the paper's single ratio (latency).
    """

    def __init__(
        self,
        strides: int = 1,
        allow_skip: bool = True,
        runtimes: dict | None = None,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        threshold_init: float = 0.0,
        candidates=CANDIDATES,
        exact_cost: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.strides = int(strides)
        self.allow_skip = bool(allow_skip)
        self.candidates = tuple(candidates)
        self.encoding = encoding(self.candidates)
        self.exact_cost = bool(exact_cost)
        if runtimes is not None:
            missing = [k for k in self.candidates if k not in runtimes]
            if missing:
                raise ValueError(f"{self.name}: runtimes lack {missing}.")
            runtimes = {k: float(v) for k, v in runtimes.items()
                        if k in self.candidates or k == SKIP}
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
        enc = self.encoding
        self.t5x5 = self.add_weight(name="t5x5", shape=(), initializer=init,
                                    regularizer=self.kernel_regularizer,
                                    autocast=False) if enc.free_a else None
        self.t100c = self.add_weight(name="t100c", shape=(), initializer=init,
                                     regularizer=self.kernel_regularizer,
                                     autocast=False) if enc.free_b else None
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
        self._mask = {k: ops.convert_to_tensor(v)
                      for k, v in _masks(channels, self.encoding.a_group).items()}

    # -- the decisions ------------------------------------------------------------------
    def _decide(self, training: bool = False):
        """The kernel, the raw hard decisions ``(a, b, s)`` (see :mod:`spnas.choices`;
        an absent one is its fixed value) and their norms."""
        return self._forward(training)[:3]

    def _forward(self, training: bool = False):
        """:meth:`_decide`'s three and the skip gate of this pass (``s`` after indicator
        dropout, unscaled: 1 keeps the layer, 0 drops it)."""
        w = ops.convert_to_tensor(self.depthwise_kernel)
        m, enc = self._mask, self.encoding
        shell = w * m["shell"]
        keep = ops.cast(self.keep_prob, w.dtype)

        def scaled(x):  # inverted dropout's scale on a kept indicator
            return x / keep if training else x

        if enc.free_a:
            n5x5 = group_norm(w * m["a"])
            d5x5 = indicator(n5x5, self.t5x5)
            a = self._keep(d5x5, training)
            d5_used = scaled(a)
        else:
            n5x5 = group_norm(shell)
            d5x5 = a = d5_used = ops.cast(enc.d5_fixed, w.dtype)
        w_prime = w * m["core"] + d5_used * shell
        w_e6 = w_prime * m["e6"]
        w_e3 = w_prime * m["e3"]
        n100c = group_norm(w_e6)
        if enc.free_b:
            d100c = indicator(n100c, self.t100c)
            b = self._keep(d100c, training)
        else:
            d100c = b = ops.zeros((), w.dtype)
        d100_eff = enc.effective(a, b)[1]
        # A d100c that moves with the raw indicators takes dropout's inverted scale.
        d100_used = ops.cast(d100_eff, w.dtype) if isinstance(d100_eff, float) else scaled(d100_eff)
        n50c = group_norm(w_e3)
        if self.t50c is not None:
            d50c = indicator(n50c, self.t50c)
            gate = self._keep(d50c, training)
            d50c_used = scaled(gate)
        else:
            d50c = gate = d50c_used = ops.ones((), w.dtype)
        kernel = d50c_used * (w_e3 + d100_used * w_e6)
        return kernel, (d5x5, d100c, d50c), (n5x5, n100c, n50c), gate

    def _keep(self, d, training):
        """Indicator dropout, before its inverted scale: one Bernoulli draw per step."""
        if not training:
            return d
        keep = ops.cast(self.keep_prob, d.dtype)
        u = keras.random.uniform((), seed=self.seed_generator, dtype=d.dtype)
        return d * ops.cast(ops.less(u, keep), d.dtype)

    def call(self, inputs, training=None, return_runtime=False, return_gate=False):
        """Depthwise conv with the decided kernel.

        With ``return_runtime=True`` also returns the layer's cost from the same
        indicators (one pass builds both; the supernet uses it for its loss), and
        with ``return_gate=True`` the skip gate of this pass (the block's
        projection path runs where it is 0): ``(out, cost, gate)``. During the
        warm-up the indicators of d100c/d50c see the kernel after indicator
        dropout, as in the release; lambda is 0 then.
        """
        kernel, decisions, _, gate = self._forward(bool(training))
        out = ops.depthwise_conv(
            inputs, ops.cast(kernel, inputs.dtype), strides=self.strides, padding="same"
        )
        cost = self._runtime(*decisions) if return_runtime else 0.0
        if return_gate:
            return out, cost, gate
        if return_runtime:
            return out, cost
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
            raise ValueError(f"{self.name} has no cost-table entries.")
        return superkernel_cost(self.runtimes, d5x5, d100c, d50c, members=self.candidates,
                                exact_k3=self.exact_cost)

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
            "t5x5": f(self.t5x5) if self.t5x5 is not None else None,
            "t100c": f(self.t100c) if self.t100c is not None else None,
            "t50c": f(self.t50c) if self.t50c is not None else None,
        }

    def choice(self) -> str:
        """The decoded MBConv choice: ``skip`` or a member of the candidate set."""
        d = self.decisions()
        return self.encoding.choice(d["d5x5"], d["d100c"], d["d50c"])

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
                "candidates": list(self.candidates),
                "exact_cost": self.exact_cost,
            }
        )
        return config
