"""The single-path supernet (paper Sec. 3, Fig. 2) with its runtime loss (Eq. 9-12).

Stem conv 3x3 -> 22 MBConv layers (20 with a superkernel) -> 1x1 conv to 1280
-> global average pool -> dropout -> FC. The loss it adds is
``lambda * 1e3 * ln(R)`` with ``R = constant + sum_l R_l`` in ms (the factor
1e3 is the release's; see reference-facts.md), ``lambda`` a non-trainable
variable the search schedules (0 during warm-up). With a parameter limit it adds
``lambda_p * 1e3 * ln(P)`` too, P the decoded net's parameter count from the same
indicators (spnas/search/limits.py).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from spnas.arch.params import ParamsTable, layer_params
from spnas.space import SearchSpace
from spnas.superkernel.block import MBConv, build_chain, weight_decay_losses
from spnas.superkernel.stem_head import Head, Stem
from spnas.tables.cost import CostTable
from spnas.tables.runtime_model import bind
from spnas.tables.table import LatencyTable

RUNTIME_LOSS_SCALE = 1e3  # lambda * 1e3 * ln(R_ms), as in the authors' release
PARAMS_LOSS_SCALE = 1e3  # lambda_p * 1e3 * ln(P): the runtime loss's scale (spnas/search/limits.py)
# P enters the log in millions, as R does in ms: the unit shifts the loss, not its gradient.
PARAMS_UNIT = 1e6
WEIGHT_DECAY = 1e-5  # MnasNet


def latency_config(table: CostTable | LatencyTable | None) -> dict | None:
    """The part of a cost table the supernet needs, as a plain (serialisable) dict:
    ``{"constant", "layers", "paper_ratio", "kind", "unit"}`` (latency, MACs, ...)."""
    if table is None:
        return None
    if isinstance(table, CostTable):
        return table.supernet_cost()
    return {
        "kind": "latency", "unit": "ms", "paper_ratio": True,
        "constant": table.constant_ms,
        "layers": {str(i): dict(table.layers[i]) for i in table.searchable_indices},
    }


def cost_constant(latency: dict) -> float:
    """The constant of a supernet cost dict (``constant_ms`` in one made before MACs)."""
    return float(latency["constant"] if "constant" in latency else latency["constant_ms"])


def layer_runtimes(space: SearchSpace, latency: dict | None) -> dict[str, dict]:
    """``latency["layers"]`` (``{}`` without latency), checked to cover exactly the
    searchable layers of ``space``."""
    runtimes = (latency or {}).get("layers", {})
    if latency is not None:
        expected = {str(i) for i in space.searchable_indices()}
        if set(runtimes) != expected:
            raise ValueError(
                f"Latency entries cover layers {sorted(runtimes, key=int)}, the "
                f"supernet's searchable layers are {sorted(expected, key=int)}."
            )
    return runtimes


@keras.saving.register_keras_serializable(package="spnas")
class Supernet(keras.Model):
    """Over-parameterised single-path network over a :class:`SearchSpace`.

    Args:
      space: the search space (a SearchSpace or its dict).
      latency: ``{"constant_ms": float, "layers": {"i": {k3_e3..k5_e6}}}`` (see
        :func:`latency_config`), or None for a supernet without runtime loss.
      weight_decay: L2 on every non-BN variable, thresholds included
        (loss += wd * 1/2 ||w||^2).
      superkernel_init: ``"fan_in"`` or ``"fan_out"`` (the release's); see
        :func:`spnas.superkernel.block.superkernel_init`.
      params_loss: add ``params_lambda * 1e3 * ln(P / 1e6)`` for a parameter limit (P from
        :meth:`params_count`; ``params_lambda`` is set by the search).
    """

    def __init__(
        self,
        space: SearchSpace | dict | None = None,
        latency: dict | None = None,
        weight_decay: float = WEIGHT_DECAY,
        superkernel_init: str = "fan_in",
        params_loss: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if space is None:
            space = SearchSpace()
        if isinstance(space, dict):
            space = SearchSpace.from_dict(space)
        self.space = space
        self.latency = latency
        self.weight_decay = float(weight_decay)
        self.superkernel_init = str(superkernel_init)
        self.params_loss = bool(params_loss)
        self.params_table = ParamsTable.from_space(space).supernet_params()
        runtimes = layer_runtimes(space, latency)
        exact = not (latency or {}).get("paper_ratio", True)
        self.stem = Stem(space.stem_filters, space.stem_stride, self.weight_decay, name="stem")
        self.mbconv: list[MBConv] = [
            MBConv.from_spec(spec, runtimes.get(str(spec.index)), self.weight_decay,
                             self.superkernel_init, exact_cost=exact)
            for spec in space.layers()
        ]
        self.head = Head(space.head_filters, space.num_classes, space.dropout, self.weight_decay,
                         name="head")
        self.runtime_lambda = self.add_weight(
            name="runtime_lambda", shape=(), initializer="zeros", trainable=False
        )
        self.params_lambda = self.add_weight(
            name="params_lambda", shape=(), initializer="zeros", trainable=False
        )

    # -- forward -------------------------------------------------------------------------
    def call(self, inputs, training=None):
        x = self.stem(inputs, training=training)
        with_runtime = self.latency is not None
        runtime = cost_constant(self.latency) if with_runtime else 0.0
        for block in self.mbconv:
            if with_runtime:
                x, r = block(x, training=training, return_runtime=True)
                runtime = runtime + r
            else:
                x = block(x, training=training)
        logits = self.head(x, training=training)
        if with_runtime:
            # The runtime comes from the indicators of this very pass (one graph).
            self.add_loss(self.runtime_lambda * RUNTIME_LOSS_SCALE * ops.log(runtime))
        if self.params_loss:
            # The same (undropped) hard decisions as the runtime of this pass, recomputed.
            self.add_loss(self.params_lambda * PARAMS_LOSS_SCALE
                          * ops.log(self.params_count() / PARAMS_UNIT))
        return logits

    def build(self, input_shape=None):
        size = self.space.input_size
        build_chain([self.stem, *self.mbconv, self.head], input_shape or (None, size, size, 3))
        self.built = True

    def _get_regularization_losses(self):
        # Keras' (private) source of the weight terms of ``model.losses``, one per
        # weight: the same total from one term per L2 coefficient, with half the graph
        # ops (block.weight_decay_losses). Were Keras to rename it, its own per-weight
        # terms would apply again: the same loss, a slower build.
        return weight_decay_losses(self.trainable_weights)

    def make_train_function(self, force=False):
        # Build the optimizer before the train step is traced. Keras (TensorFlow, no
        # distribution strategy) otherwise builds it inside the first trace, and
        # tf.function then traces the whole step a second time without variable
        # creation: about a quarter of the time to the first step of a search.
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
        return super().make_train_function(force)

    # -- search interface ----------------------------------------------------------------
    @property
    def searchable_blocks(self) -> list[MBConv]:
        return [b for b in self.mbconv if b.searchable]

    def runtime_ms(self):
        """Differentiable predicted runtime R (ms) from the current hard decisions."""
        if self.latency is None:
            raise ValueError("This supernet was built without a latency table.")
        total = ops.convert_to_tensor(cost_constant(self.latency))
        for block in self.searchable_blocks:
            total = total + block.conv_dw.runtime_ms()
        return total

    def params_count(self):
        """Differentiable parameter count P of the decoded net from the current hard
        decisions (exact for them: :func:`spnas.arch.params.layer_params`)."""
        layers = self.params_table["layers"]
        total = ops.convert_to_tensor(float(self.params_table["constant"]))
        for block, spec in zip(self.mbconv, self.space.layers()):
            if spec.searchable:
                total = total + layer_params(layers[str(spec.index)],
                                             *block.conv_dw.hard_decisions(),
                                             members=spec.candidates)
        return total

    def enable_params_loss(self) -> None:
        """Adds the parameter-limit loss from the next trace of the step on (call it
        before the first ``fit``; same as ``params_loss=True``)."""
        self.params_loss = True

    def set_params_lambda(self, value: float) -> None:
        self.params_lambda.assign(float(value))

    def set_runtime_lambda(self, value: float) -> None:
        self.runtime_lambda.assign(float(value))

    def set_indicator_keep_prob(self, value: float) -> None:
        for block in self.searchable_blocks:
            block.conv_dw.keep_prob.assign(float(value))

    def decisions(self) -> list[dict[str, Any]]:
        """Per searchable layer: index, hard decisions, norms and thresholds."""
        out = []
        for block, spec in zip(self.mbconv, self.space.layers()):
            if spec.searchable:
                out.append({"index": spec.index, **block.conv_dw.decisions()})
        return out

    def choices(self) -> list[str]:
        """The decoded architecture: one choice per layer (fixed layers included)."""
        return [
            block.conv_dw.choice() if spec.searchable else spec.fixed_choice
            for block, spec in zip(self.mbconv, self.space.layers())
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            {"space": self.space.to_dict(), "latency": self.latency,
             "weight_decay": self.weight_decay, "superkernel_init": self.superkernel_init,
             "params_loss": self.params_loss}
        )
        return config


def build_supernet(
    space: SearchSpace | None = None,
    table: CostTable | LatencyTable | None = None,
    weight_decay: float = WEIGHT_DECAY,
    strict_table: bool = True,
    superkernel_init: str = "fan_in",
    params_loss: bool = False,
) -> Supernet:
    """Builds (and shape-builds) a supernet over ``space`` with ``table``'s runtime loss.

    A cost table bound to ``space`` (a :class:`~spnas.tables.BoundTable` or an
    analytic MACs table) is used as it is; a plain latency table is bound
    (validated) here, ``strict_table=False`` accepting a proxy table (same layers,
    other input size). ``params_loss`` adds the parameter-limit loss.
    """
    space = space or SearchSpace()
    bound = table
    if isinstance(table, LatencyTable) or (isinstance(table, CostTable) and table.space != space):
        bound = bind(table, space, strict_table)
    model = Supernet(space, latency_config(bound), weight_decay=weight_decay,
                     superkernel_init=superkernel_init, params_loss=params_loss,
                     name="supernet")
    model.build((None, space.input_size, space.input_size, 3))
    return model
