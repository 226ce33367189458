"""tf.distribute strategies for search and training (the TensorFlow edge).

``auto`` picks MirroredStrategy over all local GPUs when there are several,
otherwise the default strategy; ``tpu`` resolves a Cloud TPU by name or
address with TPUClusterResolver; ``multiworker`` reads ``TF_CONFIG``.
"""

from __future__ import annotations

import tensorflow as tf

from spnas.train.checks import STRATEGIES

__all__ = ["STRATEGIES", "get_strategy"]


def get_strategy(name: str = "auto", tpu: str = "", cpu_replicas: int = 1):
    """Returns a ``tf.distribute.Strategy``.

    Args:
      name: one of :data:`STRATEGIES`.
      tpu: TPU name or ``grpc://`` address (``tpu`` only; empty = local TPU VM).
      cpu_replicas: with ``mirrored`` and no GPU, split the CPU into this many
        logical devices (tests and laptops: data parallelism without a GPU).
        Must be set before TensorFlow initialises its devices.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; expected one of {STRATEGIES}.")
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as e:
            raise RuntimeError(f"Could not connect to TPU {tpu or '(local)'!r}: {e}") from e
        return tf.distribute.TPUStrategy(resolver)
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
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
