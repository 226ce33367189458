"""One benchmark variant in its own process: build, compile, time train steps on
request, report the peak memory (bench-only code for ``bench/search_cost.py``).

Each variant lives in a fresh spawned process, so its peak memory is its own
(peak RSS minus a baseline taken after the imports and the synthetic batch, or
the accelerator's ``peak_bytes_in_use``). The parent asks every live worker for
a few timed steps in turn, so that the load of other processes on a shared
machine falls on all variants alike.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import resource
import time


def device_name(backend: str) -> tuple[str, bool]:
    """A readable device name and whether it is an accelerator."""
    if backend == "jax":
        import jax

        dev = jax.devices()[0]
        if dev.platform != "cpu":
            return f"{dev.platform}:{dev.device_kind}", True
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"gpu:{details.get('device_name', gpus[0].name)}", True
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"cpu:{cpu} ({os.cpu_count()} cores visible)", False


def device_peak_bytes(backend: str) -> int | None:
    """Peak accelerator memory in use, where the backend reports it."""
    try:
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            return int(stats["peak_bytes_in_use"]) if "peak_bytes_in_use" in stats else None
        if backend == "tensorflow":
            import tensorflow as tf

            return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    except (ValueError, RuntimeError, KeyError):
        return None
    return None


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


class StepSession:
    """A compiled variant and its synthetic batch, ready to time train steps.

    Args:
      variant: one of ``search_cost.VARIANTS``.
      cfg: the resolved benchmark config (``search_cost.resolve_config``).
    """

    def __init__(self, variant: str, cfg: dict):
        import keras
        import numpy as np

        from bench import search_cost as sc
        from spnas.train.optim import MnasRMSprop

        self.variant = variant
        self.backend = keras.backend.backend()
        self.device, self.accelerator = device_name(self.backend)
        if cfg["bf16"]:
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
        space = sc.make_space(cfg)
        table = sc.load_benchmark_table(cfg["table"], space)
        rng = np.random.default_rng(0)
        shape = (cfg["batch"], space.input_size, space.input_size, 3)
        # Synthetic tensors, placed in device memory once: a speed benchmark.
        self.x = keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
        labels = rng.integers(0, space.num_classes, cfg["batch"])
        self.y = keras.ops.convert_to_tensor(np.eye(space.num_classes, dtype="float32")[labels])
        self.base_rss = peak_rss_mb()

        model = sc.build_variant(variant, space, table)
        self.params = int(sum(np.prod(v.shape) for v in model.trainable_variables))
        self.searchable_params = sc.searchable_layer_params(model, space)
        jit = {"auto": self.backend == "jax" or self.accelerator, "on": True, "off": False}
        self.jit = jit[cfg["jit"]]
        model.compile(
            # The search's optimizer: RMSProp 0.9/0.9/1e-3 and the weight EMA.
            optimizer=MnasRMSprop(sc.LR_PER_256 * cfg["batch"] / 256, use_ema=True),
            loss=keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=sc.LABEL_SMOOTHING
            ),
            jit_compile=self.jit,
        )
        # Built here rather than inside the first traced step, where its new variables
        # would make tf.function trace the whole step twice.
        model.optimizer.build(model.trainable_variables)
        self.model = model
        self.runtime_loss = table is not None and variant != "fixed"
        self.loop = cfg["loop"] if self.backend == "jax" else "train_on_batch"
        self._state = None
        t0 = time.perf_counter()
        self.loss = self._step()
        self.first_step_s = time.perf_counter() - t0
        for _ in range(cfg["warmup"]):
            self._step()

    def _step(self):
        """One train step, run to completion; returns the loss."""
        if self.loop == "train_on_batch":
            # One call into the compiled step plus a host copy of the loss, which
            # also waits for the step to finish.
            return self.model.train_on_batch(self.x, self.y, return_dict=True)["loss"]
        # JAX's train_on_batch reads every variable out and writes it back each
        # call; keep the state in the loop instead (Keras' own compiled step).
        import jax

        if self._state is None:
            self.model.train_on_batch(self.x, self.y)  # builds the compiled step
            self._state = self.model._get_jax_state(
                trainable_variables=True, non_trainable_variables=True,
                optimizer_variables=True, metrics_variables=True, purge_model_variables=False,
            )
        logs, self._state = self.model.train_function(self._state, iter([(self.x, self.y, None)]))
        return jax.block_until_ready(logs)["loss"]

    def time_steps(self, n: int) -> list[float]:
        """Wall-clock milliseconds of ``n`` consecutive train steps."""
        times = []
        for _ in range(n):
            t = time.perf_counter()
            self.loss = self._step()
            times.append((time.perf_counter() - t) * 1e3)
        return times

    def finish(self) -> dict:
        """Writes the loop's state back and reports everything but the timings."""
        import numpy as np

        if self._state is not None:
            tv, ntv, ov, mv = self._state
            self.model._jax_state = {"trainable_variables": tv, "non_trainable_variables": ntv,
                                     "optimizer_variables": ov, "metrics_variables": mv}
            self.model.jax_state_sync()
        dev_peak = device_peak_bytes(self.backend) if self.accelerator else None
        return {
            "variant": self.variant,
            "params": self.params,
            "searchable_layer_params": self.searchable_params,
            "first_step_s": self.first_step_s,
            "peak_mem_mb": dev_peak / 2**20 if dev_peak is not None else peak_rss_mb() - self.base_rss,
            "peak_mem_kind": "device peak_bytes_in_use" if dev_peak is not None else "host RSS delta",
            "last_loss": float(np.asarray(self.loss)),
            "jit_compile": bool(self.jit),
            "backend": self.backend,
            "device": self.device,
            "accelerator": self.accelerator,
            "runtime_loss": self.runtime_loss,
        }


def _serve(conn, variant: str, cfg: dict) -> None:
    """The worker process: ``("time", n)`` -> timings, ``("finish", None)`` -> report."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        session = StepSession(variant, cfg)
        conn.send(("ready", None))
        while True:
            cmd, arg = conn.recv()
            if cmd == "time":
                conn.send(("times", session.time_steps(int(arg))))
            else:
                conn.send(("result", session.finish()))
                return
    except Exception as e:  # e.g. out of memory: reported in the table, not fatal
        conn.send(("error", f"{type(e).__name__}: {str(e)[:300]}"))


class Worker:
    """Parent-side handle on one variant's process.

    Args:
      variant: the variant to build.
      cfg: the resolved benchmark config.
      timeout_s: the longest wait for any one answer (build + compile included).
    """

    def __init__(self, variant: str, cfg: dict, timeout_s: float):
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: isolated peaks
        self.variant = variant
        self.timeout_s = timeout_s
        self.error: str | None = None
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, variant, cfg), daemon=True)
        self.proc.start()
        child.close()
        self._expect("ready")

    def _expect(self, kind: str):
        if self.error:
            return None
        try:
            if not self.conn.poll(self.timeout_s):
                self.error = f"no answer within {self.timeout_s:.0f} s"
            else:
                got, payload = self.conn.recv()
                if got == kind:
                    return payload
                self.error = payload if got == "error" else f"unexpected {got!r}"
        except (EOFError, OSError):
            self.proc.join(5)
            self.error = f"worker died (exit code {self.proc.exitcode}; out of memory?)"
        self.close()
        return None

    def time_steps(self, n: int) -> list[float]:
        if self.error:
            return []
        self.conn.send(("time", n))
        return self._expect("times") or []

    def finish(self) -> dict:
        if not self.error:
            self.conn.send(("finish", None))
            result = self._expect("result")
            self.close()
            if result is not None:
                return result
        return {"variant": self.variant, "error": self.error}

    def close(self) -> None:
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
