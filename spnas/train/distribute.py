"""Where a run executes: the backend's way of spreading a step over devices and hosts.

One entry point for search and training, whatever the Keras backend:

* TensorFlow (the default on CPU, and the backend of TFLite export, tf.data/TFDS
  inputs and TPU Nodes): ``tf.distribute`` strategies (:mod:`spnas.train.tf_distribute`,
  imported only on that backend);
* JAX (GPUs, Cloud TPU VMs, machines without TensorFlow): ``keras.distribution``
  data parallelism over the local devices, and over several hosts after
  ``jax.distributed.initialize()`` (:mod:`spnas.train.jax_distribute`).

Both hand back an object with ``scope()`` and ``num_replicas_in_sync``; the
chosen one is remembered so that writers can ask :func:`is_chief` (only the
chief process writes checkpoints, logs and results in a multi-host run).
This module imports neither TensorFlow nor JAX.
"""

from __future__ import annotations

import importlib
from typing import Any

import keras

from spnas.config_check import JAX_STRATEGIES, STRATEGIES, TF_STRATEGIES

__all__ = ["STRATEGIES", "enable_determinism", "get_strategy", "is_chief", "local_replicas",
           "process_share"]

_current: dict[str, Any] = {}


def _edge():
    """The backend's distribution module (imported only when asked for)."""
    name = "jax_distribute" if keras.backend.backend() == "jax" else "tf_distribute"
    return importlib.import_module(f"spnas.train.{name}")


def enable_determinism() -> None:
    """Deterministic kernels for the rest of the process (see the backend modules)."""
    _edge().enable_determinism()


def get_strategy(name: str = "auto", tpu: str = "", cpu_replicas: int = 1,
                 jax_distributed: bool = False, **jax_cluster: Any):
    """The backend's strategy for ``execution.strategy`` (see configs/common.py).

    Args:
      name: one of :data:`STRATEGIES`; ``data_parallel`` is the JAX backend's,
        ``cpu``/``mirrored``/``multiworker``/``tpu`` are TensorFlow's, ``auto``
        means all local accelerators (one device when there is one or none).
      tpu: TPU name or address (TensorFlow ``tpu`` only).
      cpu_replicas: TensorFlow ``mirrored`` without a GPU: logical CPU devices.
      jax_distributed: JAX only: call ``jax.distributed.initialize`` first (several
        hosts); ``jax_cluster`` holds its coordinator_address, num_processes and
        process_id (empty/0: detected from the cluster environment).

    Raises:
      ValueError: an unknown strategy, or one of the other backend's.
    """
    backend = keras.backend.backend()
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; expected one of {STRATEGIES}.")
    allowed = JAX_STRATEGIES if backend == "jax" else TF_STRATEGIES
    if name not in allowed:
        other = "jax" if backend != "jax" else "tensorflow"
        raise ValueError(
            f"execution.strategy={name!r} needs KERAS_BACKEND={other}; the {backend} backend "
            f"takes one of {allowed}.")
    if backend == "jax":
        strategy = _edge().get_strategy(name, jax_distributed, **jax_cluster)
    else:
        strategy = _edge().get_strategy(name, tpu, cpu_replicas)
    _current["strategy"] = strategy
    return strategy


def is_chief() -> bool:
    """Whether this process writes the run's files (True outside multi-host runs)."""
    strategy = _current.get("strategy")
    if strategy is None:
        return True
    return bool(_edge().is_chief(strategy))


def local_replicas() -> int:
    """Devices of this host a JAX data-parallel batch is split over (1 otherwise):
    evaluation batches are padded to a multiple of it."""
    return int(getattr(_current.get("strategy"), "local_replicas", 1) or 1)


def process_share() -> tuple[int, int]:
    """``(process_index, process_count)`` of a multi-host JAX run, else ``(0, 1)``:
    tf.distribute shards its own inputs (spnas/data/pipeline.py)."""
    strategy = _current.get("strategy")
    count = int(getattr(strategy, "process_count", 1) or 1)
    return (int(getattr(strategy, "process_index", 0)), count) if count > 1 else (0, 1)
