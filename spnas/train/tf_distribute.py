"""tf.distribute strategies for search and training (the TensorFlow edge).

``auto`` picks MirroredStrategy over all local GPUs when there are several,
otherwise the default strategy; ``tpu`` resolves a Cloud TPU by name or
address with TPUClusterResolver; ``multiworker`` reads ``TF_CONFIG``.
"""

from __future__ import annotations

import os
import sys

import keras
import tensorflow as tf

from spnas.train.checks import STRATEGIES

__all__ = ["STRATEGIES", "enable_determinism", "get_strategy"]

# XLA's flag for deterministic GPU kernels (reductions, scatter); read when JAX starts.
XLA_DETERMINISM_FLAG = "--xla_gpu_deterministic_ops=true"


def enable_determinism() -> None:
    """Deterministic kernels for the rest of the process (they cannot be turned off again).

    TensorFlow: ``tf.config.experimental.enable_op_determinism()`` (every op then
    either runs deterministically or raises) and one inter-op thread (independent
    ops one after the other; each still uses all cores). JAX backend: XLA's deterministic GPU
    ops flag, added to ``XLA_FLAGS`` (effective when JAX has not started its
    devices yet, as in a fresh command).
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
            print("spnas: note: TensorFlow had already started, so independent ops may still "
                  "run concurrently; results may differ under CPU load.", file=sys.stderr)
    if keras.backend.backend() == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        if XLA_DETERMINISM_FLAG not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {XLA_DETERMINISM_FLAG}".strip()


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
