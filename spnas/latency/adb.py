"""Timing TFLite models on an Android device over adb with ``benchmark_model``.

The paper profiles the four candidates of every layer on the target phone (a
Pixel 1) with TFLite (Stamoulis et al., 2019, Sec. 3.4, Eq. 10-12). This is the
device side of that: each model is pushed to the device and timed there by
TensorFlow Lite's own ``benchmark_model`` binary (the user supplies it, built
for the device's ABI, either as a host file that is pushed once or as a path
already on the device). The host only converts, pushes and parses.

``benchmark_model`` prints, for its warm-up runs and then for its timed runs,
one statistics line in microseconds::

  count=50 first=8539 curr=6894 min=6043 max=8539 avg=7181.07 std=656

and a summary line; newer versions print
``Inference timings in us: Init: ..., First inference: ..., Warmup (avg): ...,
Inference (avg): 6479.5``, older ones ``Average inference timings in us:
Warmup: ..., Init: ..., no stats: 6479.5`` (or ``Inference: ...``).
:func:`parse_benchmark_output` takes the *last* statistics line (the timed
runs) for the mean, standard deviation, min and max, and falls back to the
summary line's average (spread unknown) when no statistics line is there or
the last one is the warm-up's (its average differs from the summary's). ``std / avg`` is the
entry's spread (the host profiler uses ``(p90 - p10) / median``; the device
tool reports no percentiles).

The timed runs of every model are split into ``rounds`` calls of the binary
visiting all models in turn (as the host profiler interleaves its rounds), so
a phone heating up and throttling during a long run slows all entries alike
instead of the last layers; the rounds are pooled into one mean and standard
deviation.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Sequence

from spnas.errors import UserError

DEFAULT_REMOTE_DIR = "/data/local/tmp/spnas"  # world-writable scratch on every Android device
DEFAULT_TIMEOUT_S = 600.0  # per adb call; a benchmark of one 224x224 net takes seconds
DEFAULT_ROUNDS = 3  # benchmark_model calls per model, interleaved across models
# What benchmark_model reports: the mean of the timed runs, or their minimum.
ADB_STATISTICS = ("avg", "min")


class AdbError(UserError, RuntimeError):
    """adb, the device or benchmark_model cannot do what was asked."""


class DeviceNotFoundError(AdbError):
    """``adb devices`` does not list the (or any) device as ready."""


class AdbTimeoutError(AdbError):
    """An adb call ran longer than its timeout."""


class BenchmarkOutputError(AdbError):
    """benchmark_model's output holds no timing that can be parsed."""


@dataclasses.dataclass(frozen=True)
class BenchmarkStats:
    """Timed runs of one model on the device (milliseconds).

    Attributes:
      avg_ms, std_ms, min_ms, max_ms: statistics of the timed runs (std, min,
        max are NaN when the output had only the summary line).
      count: number of timed runs (0 if not reported).
      spread: ``std / avg``, NaN when unknown.
      threads: ``--num_threads`` of the runs.
    """

    avg_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    count: int
    spread: float
    threads: int

    @classmethod
    def pooled(cls, parts: Sequence[BenchmarkStats]) -> BenchmarkStats:
        """One set of statistics over several calls' timed runs.

        The pooled variance includes the differences between the calls'
        means, so drift between rounds shows up in the spread.
        """
        if not parts:
            raise AdbError("No benchmark results to pool.")
        if len(parts) == 1:
            return parts[0]
        weights = [max(p.count, 1) for p in parts]
        total = sum(weights)
        avg = sum(w * p.avg_ms for w, p in zip(weights, parts)) / total
        var = sum(w * (p.std_ms**2 + (p.avg_ms - avg) ** 2) for w, p in zip(weights, parts)) / total
        std = math.sqrt(var) if math.isfinite(var) else math.nan
        return cls(
            avg_ms=avg,
            std_ms=std,
            min_ms=min(p.min_ms for p in parts),
            max_ms=max(p.max_ms for p in parts),
            count=sum(p.count for p in parts),
            spread=std / avg if avg > 0 else math.nan,
            threads=parts[0].threads,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_NUMBER = r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
_STATS_LINE = re.compile(
    r"\bcount=(\d+)\b.*?\bmin=" + _NUMBER + r".*?\bmax=" + _NUMBER + r".*?\bavg=" + _NUMBER
    + r".*?\bstd=" + _NUMBER
)
_SUMMARY = (
    re.compile(r"Inference \(avg\):\s*" + _NUMBER),  # TFLite >= 2.x
    re.compile(r"no stats:\s*" + _NUMBER),  # TF 1.x "Average inference timings in us"
    re.compile(r"Average inference timings in us:.*?\bInference:\s*" + _NUMBER),
)


def parse_benchmark_output(text: str, threads: int = 1) -> BenchmarkStats:
    """Timing of the timed runs in ``benchmark_model``'s output (us -> ms).

    Args:
      text: stdout and stderr of one ``benchmark_model`` run.
      threads: the ``--num_threads`` it ran with (recorded only).

    Raises:
      BenchmarkOutputError: no statistics line and no summary line, or a
        non-positive average; the message quotes the end of the output.
    """
    stats = list(_STATS_LINE.finditer(text))
    summary = None
    for pattern in _SUMMARY:
        found = pattern.findall(text)
        if found:
            summary = float(found[-1])
            break
    result = None
    if stats:
        count, lo, hi, avg, std = stats[-1].groups()
        result = (int(count), float(lo), float(hi), float(avg), float(std))
        # Without the timed runs' line the last one is the warm-up's: trust the summary.
        if summary is not None and not math.isclose(result[3], summary, rel_tol=5e-3):
            result = None
    if result is None and summary is not None:
        result = (0, math.nan, math.nan, summary, math.nan)
    if result is None:
        raise BenchmarkOutputError(
            "benchmark_model printed no timing (neither 'count=... avg=... std=...' nor "
            f"'Inference (avg): ...'); its output ended with:\n{_tail(text)}"
        )
    count, lo, hi, avg_us, std_us = result
    if not math.isfinite(avg_us) or avg_us <= 0:
        raise BenchmarkOutputError(
            f"benchmark_model reported a non-positive average ({avg_us} us); output:\n{_tail(text)}"
        )
    return BenchmarkStats(
        avg_ms=avg_us / 1e3,
        std_ms=std_us / 1e3,
        min_ms=lo / 1e3,
        max_ms=hi / 1e3,
        count=count,
        spread=std_us / avg_us,
        threads=int(threads),
    )


def _tail(text: str, lines: int = 12) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return "\n".join(kept) if kept else "(no output)"


def cpu_mask(cpus: Sequence[int]) -> str:
    """The hex mask ``taskset`` takes for a set of CPU ids, e.g. ``[4, 5] -> 30``."""
    if not cpus or any(c < 0 for c in cpus):
        raise AdbError(f"CPU ids must be a non-empty list of ids >= 0, got {list(cpus)}.")
    return format(sum(1 << c for c in set(cpus)), "x")


@dataclasses.dataclass
class AdbTarget:
    """An Android device reached over adb that times models with ``benchmark_model``.

    Attributes:
      benchmark_model: the binary: a host file (pushed to ``remote_dir``) or
        a path on the device.
      adb: the adb executable.
      serial: the device's serial (``adb -s``); None takes the only device.
      remote_dir: the device directory for the binary and the models.
      rounds: calls of the binary per model, interleaved across models.
      timeout_s: limit of every adb call.
      benchmark_args: extra ``benchmark_model`` flags (e.g. ``--use_gpu=true``).
      cpus: pin the binary to these device CPUs with ``taskset`` (e.g. the
        big cores of a big.LITTLE phone).
    """

    benchmark_model: str
    adb: str = "adb"
    serial: str | None = None
    remote_dir: str = DEFAULT_REMOTE_DIR
    rounds: int = DEFAULT_ROUNDS
    timeout_s: float = DEFAULT_TIMEOUT_S
    benchmark_args: tuple[str, ...] = ()
    cpus: tuple[int, ...] | None = None
    _binary: str | None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.rounds < 1:
            raise AdbError(f"rounds must be >= 1, got {self.rounds}.")
        if self.timeout_s <= 0:
            raise AdbError(f"timeout_s must be positive, got {self.timeout_s}.")
        if not self.benchmark_model:
            raise AdbError("Give the benchmark_model binary (a host file or a device path).")
        self.benchmark_args = tuple(self.benchmark_args)

    # ------------------------------------------------------------------ adb calls

    def _run(self, args: Sequence[str], device: bool = True) -> str:
        cmd = [self.adb]
        if device and self.serial:
            cmd += ["-s", self.serial]
        cmd += list(args)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s)
        except FileNotFoundError:
            raise AdbError(
                f"adb executable {self.adb!r} not found: install Android platform-tools or "
                "pass --adb=PATH."
            ) from None
        except PermissionError:
            raise AdbError(f"adb executable {self.adb!r} cannot be run (permission denied).") \
                from None
        except subprocess.TimeoutExpired:
            raise AdbTimeoutError(
                f"'{' '.join(cmd)}' did not finish within {self.timeout_s:g} s (raise the "
                "timeout, or check the device is responsive)."
            ) from None
        output = (done.stdout or "") + (done.stderr or "")
        if done.returncode != 0:
            raise AdbError(
                f"'{' '.join(cmd)}' failed with exit status {done.returncode}:\n{_tail(output)}"
            )
        return output

    def shell(self, command: str) -> str:
        """Runs one shell command line on the device; returns its output."""
        return self._run(["shell", command])

    def devices(self) -> dict[str, str]:
        """``adb devices``: serial -> state (``device``, ``unauthorized``, ``offline``...)."""
        out = self._run(["devices"], device=False)
        found: dict[str, str] = {}
        for line in out.splitlines():
            line = line.strip()
            if not line or line.startswith(("List of devices", "*")):
                continue  # header, and adb's "* daemon started" chatter
            parts = line.split()
            if len(parts) >= 2:
                found[parts[0]] = parts[1]
        return found

    def connect(self) -> None:
        """Checks the device is there and ready, and puts the binary in place (once).

        Raises:
          DeviceNotFoundError: no ready device, the serial is not listed, or
            several devices and no serial.
          AdbError: adb is missing or the binary is not on the device.
        """
        if self._binary is not None:
            return
        listed = self.devices()
        ready = [s for s, state in listed.items() if state == "device"]
        seen = ", ".join(f"{s} ({state})" for s, state in listed.items()) or "none"
        if self.serial is None:
            if not ready:
                raise DeviceNotFoundError(
                    f"adb lists no ready device (listed: {seen}). Connect one with USB debugging "
                    "enabled and authorised, or pass --serial."
                )
            if len(ready) > 1:
                raise DeviceNotFoundError(
                    f"adb lists several devices ({', '.join(ready)}); choose one with --serial."
                )
            self.serial = ready[0]
        elif self.serial not in listed:
            raise DeviceNotFoundError(
                f"Device {self.serial!r} is not among the devices adb lists ({seen})."
            )
        elif listed[self.serial] != "device":
            raise DeviceNotFoundError(
                f"Device {self.serial!r} is {listed[self.serial]!r}, not ready (authorise USB "
                "debugging on the device, or reconnect it)."
            )
        self.shell(f"mkdir -p {shlex.quote(self.remote_dir)}")
        if os.path.isfile(self.benchmark_model):
            binary = f"{self.remote_dir}/benchmark_model"
            self._run(["push", self.benchmark_model, binary])
            self.shell(f"chmod 755 {shlex.quote(binary)}")
        else:
            binary = self.benchmark_model
        # Old adb versions return 0 whatever the remote command did: test the output.
        probe = self.shell(f"if [ -x {shlex.quote(binary)} ]; then echo spnas-binary-ok; fi")
        if "spnas-binary-ok" not in probe:
            raise AdbError(
                f"benchmark_model {self.benchmark_model!r} is neither a file on this host nor an "
                f"executable on device {self.serial!r}."
            )
        self._binary = binary

    def describe(self) -> dict:
        """What the table records about the device (model, ABI, Android version)."""
        info = {"target": "adb", "serial": self.serial}
        for key, prop in (("model", "ro.product.model"), ("abi", "ro.product.cpu.abi"),
                          ("android", "ro.build.version.release")):
            try:
                info[key] = self.shell(f"getprop {prop}").strip() or "unknown"
            except AdbError:
                info[key] = "unknown"
        info["benchmark_model"] = self.benchmark_model
        info["benchmark_args"] = list(self.benchmark_args)
        info["cpus"] = list(self.cpus) if self.cpus else None
        info["rounds"] = self.rounds
        return info

    # ------------------------------------------------------------------ timing

    def benchmark(self, remote_graph: str, threads: int, warmup: int, runs: int) -> BenchmarkStats:
        """One ``benchmark_model`` call on a model already on the device."""
        if self._binary is None:
            self.connect()
        cmd = [self._binary, f"--graph={remote_graph}", f"--num_threads={threads}",
               f"--num_runs={runs}", f"--warmup_runs={warmup}", *self.benchmark_args]
        line = " ".join(shlex.quote(c) for c in cmd)
        if self.cpus:
            line = f"taskset {cpu_mask(self.cpus)} {line}"
        output = self.shell(line)
        try:
            return parse_benchmark_output(output, threads)
        except BenchmarkOutputError as e:
            raise BenchmarkOutputError(f"{line}: {e}") from None

    def measure(
        self,
        flatbuffers: Sequence[bytes],
        threads: int = 1,
        warmup: int = 20,
        repeats: int = 100,
        progress=None,
    ) -> list[BenchmarkStats]:
        """Times several models on the device; one pooled result per model.

        Every model is pushed, then each of ``rounds`` rounds calls the binary
        once per model (in a rotating order) with its share of ``repeats``.
        The pushed models are removed afterwards.

        Args:
          flatbuffers: the models.
          threads, warmup, repeats: ``--num_threads``, ``--warmup_runs`` and
            the total ``--num_runs`` over all rounds.
          progress: optional tqdm bar, advanced by one per round.
        """
        if threads < 1 or warmup < 0 or repeats < self.rounds:
            raise AdbError(
                f"Need threads >= 1, warmup >= 0 and repeats >= rounds ({self.rounds}); got "
                f"{threads}, {warmup}, {repeats}."
            )
        if self._binary is None:
            self.connect()
        base, extra = divmod(repeats, self.rounds)
        runs = [base + (1 if r < extra else 0) for r in range(self.rounds)]
        remote = [f"{self.remote_dir}/spnas_model_{i:04d}.tflite" for i in range(len(flatbuffers))]
        results: list[list[BenchmarkStats]] = [[] for _ in flatbuffers]
        try:
            with tempfile.TemporaryDirectory(prefix="spnas_adb_") as tmp:
                local = [os.path.join(tmp, os.path.basename(r)) for r in remote]
                for path, fb in zip(local, flatbuffers):
                    with open(path, "wb") as f:
                        f.write(fb)
                # One push of all files into the directory: one adb round trip.
                self._run(["push", *local, self.remote_dir + "/"])
            for r, count in enumerate(runs):
                for j in range(len(flatbuffers)):
                    i = (j + r) % len(flatbuffers)
                    results[i].append(self.benchmark(remote[i], threads, warmup, count))
                if progress is not None:
                    progress.update(1)
        finally:
            if remote:
                try:
                    self.shell("rm -f " + " ".join(shlex.quote(p) for p in remote))
                except AdbError:
                    pass  # cleaning up must not hide the real error
        return [BenchmarkStats.pooled(parts) for parts in results]
