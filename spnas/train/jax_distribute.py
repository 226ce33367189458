"""Data parallelism on the JAX backend: ``keras.distribution`` over local devices and hosts.

``data_parallel`` (or ``auto`` with several accelerators) sets a global
:class:`keras.distribution.DataParallel` over every device JAX sees; each step's
batch is split along its first axis, the weights are replicated and the
gradients averaged, so the updates equal those of one device on the whole
batch (up to the order of floating-point sums). Several hosts: every host runs
the same command after ``jax.distributed.initialize()`` (``execution.jax_distributed``);
each host feeds its own share of every global batch and only the chief
(process 0) writes files. No TensorFlow here.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import jax
import keras

__all__ = ["JaxStrategy", "enable_determinism", "get_strategy", "is_chief"]

# XLA's flag for deterministic GPU kernels (reductions, scatter); read when JAX starts.
XLA_DETERMINISM_FLAG = "--xla_gpu_deterministic_ops=true"


class JaxStrategy:
    """What search and training ask of a strategy, for the JAX backend.

    Attributes:
      distribution: the global ``keras.distribution.DataParallel``, or None (one device).
      num_replicas_in_sync: devices a step is split over (all hosts together).
      process_index, process_count: this host and the number of hosts.
    """

    def __init__(self, distribution: Any = None):
        self.distribution = distribution
        self.num_replicas_in_sync = len(distribution.device_mesh.devices.flatten()) \
            if distribution is not None else 1
        self.process_index = jax.process_index()
        self.process_count = jax.process_count()
        # Rows of every batch must split evenly over this host's devices.
        self.local_replicas = jax.local_device_count() if distribution is not None else 1

    def scope(self):
        """Variables made inside are laid out by the distribution (set globally too)."""
        return self.distribution.scope() if self.distribution is not None \
            else contextlib.nullcontext()


def enable_determinism() -> None:
    """XLA's deterministic GPU ops, added to ``XLA_FLAGS`` (effective when JAX has not
    started its devices yet, as in a fresh command). CPU kernels are deterministic."""
    flags = os.environ.get("XLA_FLAGS", "")
    if XLA_DETERMINISM_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {XLA_DETERMINISM_FLAG}".strip()


def _initialize_cluster(coordinator_address: str = "", num_processes: int = 0,
                        process_id: int = -1) -> None:
    """``jax.distributed.initialize``; unset arguments are detected from the cluster
    environment (Cloud TPU VMs, SLURM, Open MPI)."""
    kwargs: dict[str, Any] = {}
    if coordinator_address:
        kwargs["coordinator_address"] = coordinator_address
    if int(num_processes) > 0:
        kwargs["num_processes"] = int(num_processes)
    if int(process_id) >= 0:
        kwargs["process_id"] = int(process_id)
    jax.distributed.initialize(**kwargs)


def get_strategy(name: str = "auto", jax_distributed: bool = False, **cluster: Any) -> JaxStrategy:
    """One device, or DataParallel over all devices of all hosts.

    ``auto`` spreads over the local accelerators when there are several (as the
    TensorFlow backend's ``auto`` mirrors over several GPUs), else one device.
    """
    if jax_distributed:
        _initialize_cluster(**cluster)
    devices = jax.devices()
    accelerators = [d for d in devices if d.platform != "cpu"]
    if name == "data_parallel" or (name == "auto" and len(accelerators) > 1):
        distribution = keras.distribution.DataParallel(devices=devices)
        keras.distribution.set_distribution(distribution)
        return JaxStrategy(distribution)
    return JaxStrategy(None)


def is_chief(strategy: JaxStrategy) -> bool:
    return strategy.process_index == 0
