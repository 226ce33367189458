"""tf.distribute strategies for search and training (the TensorFlow edge; reached
through :mod:`spnas.train.distribute` on the TensorFlow backend).

``auto`` picks MirroredStrategy over all local GPUs when there are several,
otherwise the default strategy; ``tpu`` resolves a Cloud TPU by name or
address with TPUClusterResolver; ``multiworker`` reads ``TF_CONFIG`` (with the
fixes Keras 3's ``fit`` needs there: :class:`_MultiWorkerMirroredStrategy`).
"""

from __future__ import annotations

import tensorflow as tf

from spnas.config_check import TF_STRATEGIES
from spnas.fileio import note

__all__ = ["enable_determinism", "get_strategy", "is_chief"]


def enable_determinism() -> None:
    """Deterministic kernels for the rest of the process (they cannot be turned off again).

    TensorFlow: ``tf.config.experimental.enable_op_determinism()`` (every op then
    either runs deterministically or raises) and one inter-op thread (independent
    ops one after the other; each still uses all cores).
    """
    tf.config.experimental.enable_op_determinism()
    # Deterministic kernels are not enough on a loaded CPU: two runs of the embedded
    # default beside each other differed (max norm difference 0.27 after 30 steps)
    # until independent ops stopped running concurrently; with one inter-op thread
    # they were bit-identical (the kernels themselves still use every core).
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already started in this process (tests, notebooks)
        if tf.config.threading.get_inter_op_parallelism_threads() != 1:
            note("TensorFlow had already started, so independent ops may still run "
                 "concurrently; results may differ under CPU load.")


def get_strategy(name: str = "auto", tpu: str = "", cpu_replicas: int = 1):
    """Returns a ``tf.distribute.Strategy``.

    Args:
      name: one of :data:`spnas.config_check.TF_STRATEGIES`.
      tpu: TPU name or ``grpc://`` address (``tpu`` only; empty = local TPU VM).
      cpu_replicas: with ``mirrored`` and no GPU, split the CPU into this many
        logical devices (tests and laptops: data parallelism without a GPU).
        Must be set before TensorFlow initialises its devices.
    """
    if name not in TF_STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; expected one of {TF_STRATEGIES}.")
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as e:
            raise RuntimeError(f"Could not connect to TPU {tpu or '(local)'!r}: {e}") from e
        return tf.distribute.TPUStrategy(resolver)
    if name == "multiworker":
        return _MultiWorkerMirroredStrategy()
    if name == "mirrored":
        if cpu_replicas > 1 and not tf.config.list_physical_devices("GPU"):
            cpu = tf.config.list_physical_devices("CPU")[0]
            try:
                tf.config.set_logical_device_configuration(
                    cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
            except RuntimeError as e:
                raise RuntimeError(
                    f"cpu_replicas={cpu_replicas} needs to be set before TensorFlow starts: {e}"
                ) from e
            return tf.distribute.MirroredStrategy(
                [f"/cpu:{i}" for i in range(cpu_replicas)])
        return tf.distribute.MirroredStrategy()
    if name == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy with the ``reduce`` that Keras 3's ``fit`` expects.

    Keras 3 (checked with 3.15) calls it in two ways the collective implementation rejects
    with several workers (keras-team/keras#20585):

    * ``reduce("MEAN", (images, labels), axis=None)`` on the first batch, to build
      the model (``TensorFlowTrainer._maybe_symbolic_build``): the collective reduce
      takes one value, not a structure ("Attempt to convert a value (PerReplica
      ...) with an unsupported type"). Structures are reduced leaf by leaf here,
      as MirroredStrategy does.
    * ``reduce("MEAN", metric, axis=0)`` on every step's metrics
      (``reduce_per_replica``), which are scalars ("Invalid reduction dimension 0
      for input with 0 dimensions"). A scalar has no axis to reduce over: it is
      averaged over the replicas, which is what MirroredStrategy gives.
    """

    def reduce(self, reduce_op, value, axis):
        if not isinstance(value, tf.distribute.DistributedValues) and tf.nest.is_nested(value):
            return tf.nest.map_structure(lambda v: self.reduce(reduce_op, v, axis), value)
        local = self.experimental_local_results(value)[0]
        if axis is not None and getattr(getattr(local, "shape", None), "rank", None) == 0:
            axis = None
        return super().reduce(reduce_op, value, axis)


def is_chief(strategy) -> bool:
    """The chief of a multi-worker cluster writes the files; one-worker runs always do.

    ``TF_CONFIG`` names the tasks: the ``chief`` task when there is one, else
    worker 0 (the MultiWorkerMirroredStrategy convention).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None:
        return True
    task_id = getattr(resolver, "task_id", 0) or 0
    has_chief = "chief" in (resolver.cluster_spec().as_dict() if resolver else {})
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and not has_chief
