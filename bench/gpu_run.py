"""One prepared GPU benchmark run under JAX: search-step cost, the PyTorch peer, and a
short CIFAR-10 search and training through the CLIs.

Made for a machine lent for about ten minutes (one NVIDIA H200 in our plan) with
JAX (CUDA), PyTorch and timm but no TensorFlow. Every part runs in its own
process with a time box; ``OUT/gpu_run.json`` and ``OUT/gpu_run.md`` are rewritten
after every part (and ``bench/search_cost.py`` rewrites its JSON after every
variant), so a run killed at any point leaves what it had measured.

Parts, in order of importance (the later ones run only while the budget lasts):

1. ``search_cost_bf16``: ``bench/search_cost.py --preset=imagenet --bf16`` (the
   paper's space at 224x224, batch 256, the Pixel 1 runtime loss when the table is
   found): train-step time of the single-path supernet, the multi-path supernet
   (Eq. 5), the paper's searched net (``spnas_pixel1`` = timm ``spnasnet_100``) and
   the plain MBConv-5x5-6 net, on synthetic tensors in device memory.
2. ``timm``: timm's ``spnasnet_100`` train step in PyTorch (RMSProp as TF, label
   smoothing 0.1, channels-last, eager) at the same batch and resolution, AMP bf16
   and fp32: the peer a user would pick instead. Skipped, with the reason, when
   torch or timm is missing.
3. ``cifar_search``: ``spnas-search --config=configs/cifar10.py`` for a few hundred
   steps on the CIFAR-10 JPEGs (``--tarball``, extracted under ``--scratch``); the
   schedule is the paper's 8 epochs compressed into those steps (lambda warm-up
   5/8 of them). The CLI picks its input pipeline (``data.input=auto``: the
   Pillow/numpy one where TensorFlow is absent).
4. ``cifar_train``: ``spnas-train --config=configs/cifar10_train.py`` on the
   searched ``arch.json``, as many steps.
5. ``search_cost_fp32``: part 1 in float32 (single-path and multi-path only).

Report: images/s of every measurement; the paper's 8-epoch ImageNet search (8 x
1,281,167 images) projected at the measured single-path rate, beside the paper's
cost ("~10k steps (8 epochs with a batch size of 1024), which corresponds to total
wall-clock time of 3.75 hours on a TPUv2 ... 2 chips with 4 cores each, ... a total
of 30 TPU-hours", Stamoulis et al. 2019, Sec. 4); the multi-path / single-path
step-time ratio at 224x224; spnas-JAX / timm-PyTorch step time.

    KERAS_BACKEND=jax python bench/gpu_run.py --preset=gpu --out=OUT     # ~7 min, H200
    KERAS_BACKEND=jax JAX_PLATFORMS=cpu python bench/gpu_run.py --preset=tiny --out=OUT
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import datetime
import functools
import importlib.metadata
import importlib.util
import io
import json
import os
import pathlib
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: ``bench`` and ``spnas`` from the checkout
    sys.path.insert(0, str(REPO))

from bench import search_cost as sc  # noqa: E402  (stdlib-only at import)

FORMAT = "spnas.gpu_run/1"
TARBALL = "cifar10_train_jpg.tar.gz"  # train/<class>/<nnnn>.jpg, 5,000 per class
PIXEL1_TABLE = "pixel1_runtime_model.json"
# Where the shared data is: a shared/ folder carried into the checkout (device machine),
# else the one beside the checkout (this project's layout).
DATA_DIRS = (REPO / "shared" / "data", REPO.parent / "shared" / "data")
PAPER_SEARCH_COST = (
    "Stamoulis et al. 2019, Sec. 4: 'We search for ~10k steps (8 epochs with a batch size of "
    "1024), which corresponds to total wall-clock time of 3.75 hours on a TPUv2. In particular, "
    "given that a TPUv2 has 2 chips with 4 cores each, this corresponds to a total of 30 "
    "TPU-hours.'"
)
PARTS = ("search_cost_bf16", "timm", "cifar_search", "cifar_train", "search_cost_fp32")
TIMM_MODEL = "spnasnet_100"  # timm's copy of the paper's searched Pixel 1 net
MIN_START_S = 15.0  # a part is not started with less budget left (gpu); tiny: 5


@dataclasses.dataclass(frozen=True)
class Preset:
    """Sizes and time boxes (seconds) of one run."""

    budget_s: float  # the whole run; a part gets min(its box, what is left)
    min_start_s: float  # no part starts with less than this left
    sc_preset: str  # bench/search_cost.py preset (space, input size, batch)
    sc_steps: int
    sc_warmup: int
    sc_variants: tuple[str, ...]  # the mixed_bfloat16 run, in order of importance
    sc_fp32_variants: tuple[str, ...]
    sc_box_s: float
    sc_fp32_box_s: float
    timm_steps: int
    timm_warmup: int
    timm_box_s: float
    images_per_class: int  # extracted from the tarball; 0: all 5,000
    cifar_batch: int
    search_steps: int
    train_steps: int
    bn_batches: int  # BN recalibration batches before the final evaluations
    log_every: int
    jit_compile: bool
    search_box_s: float
    train_box_s: float


PRESETS = {
    # One H200, ~7 min with compiles: part 1 ~3 min (four 224x224 compiles), timm ~1 min,
    # each CIFAR CLI ~1.5 min (compile, 300 steps, evaluation); fp32 only if time is left.
    "gpu": Preset(
        budget_s=460, min_start_s=MIN_START_S, sc_preset="imagenet", sc_steps=30, sc_warmup=3,
        sc_variants=("single_path", "multi_path", "searched_net", "fixed"),
        sc_fp32_variants=("single_path", "multi_path"), sc_box_s=200, sc_fp32_box_s=150,
        timm_steps=30, timm_warmup=5, timm_box_s=70,
        images_per_class=0, cifar_batch=128, search_steps=300, train_steps=300, bn_batches=20,
        log_every=10, jit_compile=True, search_box_s=100, train_box_s=75,
    ),
    # CPU, a couple of minutes: the 6-layer smoke space for search_cost, a few CLI steps.
    "tiny": Preset(
        budget_s=900, min_start_s=5, sc_preset="tiny", sc_steps=3, sc_warmup=1,
        sc_variants=("single_path", "multi_path"),
        sc_fp32_variants=("searched_net",), sc_box_s=300, sc_fp32_box_s=120,
        timm_steps=2, timm_warmup=1, timm_box_s=60,
        images_per_class=12, cifar_batch=16, search_steps=4, train_steps=4, bn_batches=1,
        log_every=1, jit_compile=True, search_box_s=300, train_box_s=300,
    ),
}


# -- small helpers ------------------------------------------------------------------------
def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def find_data(name: str, explicit: str | None) -> pathlib.Path | None:
    """``explicit`` if given (it must exist), else the first shared data folder holding ``name``."""
    if explicit:
        return pathlib.Path(explicit)
    return next((d / name for d in DATA_DIRS if (d / name).is_file()), None)


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def importable(module: str) -> bool:
    """Whether ``import module`` would work, asked of a fresh interpreter (a module
    can be present and still refuse to import, as a blocked TensorFlow does)."""
    if importlib.util.find_spec(module) is None:
        return False
    r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                       timeout=120, env=child_env())
    return r.returncode == 0


def environment() -> dict:
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": {d: version(d) for d in ("jax", "jaxlib", "keras", "ml-collections", "torch",
                                             "timm", "numpy", "pillow", "tensorflow")},
        "tensorflow_importable": importable("tensorflow"),
        "env": {k: os.environ.get(k) for k in ("KERAS_BACKEND", "JAX_PLATFORMS",
                                               "XLA_PYTHON_CLIENT_PREALLOCATE",
                                               "CUDA_VISIBLE_DEVICES")},
    }
    if shutil.which("nvidia-smi"):
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        env["nvidia_smi"] = r.stdout.strip() or r.stderr.strip()
    return env


def child_env(scratch: pathlib.Path | None = None) -> dict:
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    if scratch is not None:
        env["SPNAS_CACHE_DIR"] = str(scratch / "cache")  # the folder-scan cache
    return env


def tail(path: pathlib.Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


ERROR_LINE = re.compile(r"^(\w+\.)*\w*(Error|Exception|Exit)\b.*|^spnas-\w+: .*|^FATAL .*")


def failure(rc: int | None, log: pathlib.Path) -> str:
    """The exit code and the log's last error line (a traceback's last line, or a CLI's
    one-line error), else the log's last characters."""
    lines = [ln for ln in tail(log, 20000).splitlines() if ERROR_LINE.match(ln.strip())]
    return f"exit code {rc}: " + (lines[-1].strip()[:600] if lines else tail(log, 600))


class Box:
    """A child process run with a deadline; killed with its whole process group (it has
    its own session, so :data:`LIVE` lets a terminated run take it down too)."""

    def __init__(self, cmd: list[str], log: pathlib.Path, env: dict, cwd: pathlib.Path = REPO):
        self.cmd = cmd
        self.log = log
        self._f = open(log, "w")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self._f, stderr=subprocess.STDOUT, env=env,
                                     cwd=cwd, start_new_session=True)
        LIVE.add(self)

    def wait(self, timeout_s: float, poll=None) -> tuple[int | None, bool]:
        """(exit code, timed out); ``poll()`` is called about 5 times a second."""
        deadline = self.t0 + timeout_s
        while self.proc.poll() is None:
            if poll is not None:
                poll()
            if time.monotonic() > deadline:
                self.kill()
                return self.proc.returncode, True
            time.sleep(0.2)
        if poll is not None:
            poll()
        self.kill()  # the group may still hold a worker the child left behind
        return self.proc.returncode, False

    def kill(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.5)  # the group's other members (spawned workers) get their signal too
        self._f.close()
        LIVE.discard(self)

    @property
    def wall_s(self) -> float:
        return time.monotonic() - self.t0


LIVE: set[Box] = set()


def _terminated(signum, frame):
    raise SystemExit(f"gpu_run: terminated by signal {signum}")


# -- the run ------------------------------------------------------------------------------
class Run:
    """The report, its files, and the budget."""

    def __init__(self, preset_name: str, args: argparse.Namespace):
        self.preset_name = preset_name
        self.p = PRESETS[preset_name]
        self.args = args
        self.out = pathlib.Path(args.out)
        self.logs = self.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.t0 = time.monotonic()
        self.budget_s = float(args.budget_s or self.p.budget_s)
        self.scratch: pathlib.Path | None = None  # set by main()
        self.report: dict = {
            "format": FORMAT,
            "preset": preset_name,
            "preset_values": dataclasses.asdict(self.p),
            "complete": False,
            "started": now_iso(),
            "budget_s": self.budget_s,
            "parts": {},
            "summary": {},
        }
        self.save()

    def left_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.t0)

    def save(self) -> None:
        self.report["updated"] = now_iso()
        self.report["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        self.report["summary"] = summarize(self.report["parts"])
        write_atomic(self.out / "gpu_run.json", json.dumps(self.report, indent=2, default=str))
        write_atomic(self.out / "gpu_run.md", markdown(self.report))

    def part(self, name: str, box_s: float, fn) -> dict:
        """Runs ``fn(box_s) -> dict`` within the budget; records whatever happens."""
        box = min(box_s, self.left_s())
        if name not in self.args.parts:
            result = {"status": "skipped", "reason": "not in --parts"}
        elif box < self.p.min_start_s:
            result = {"status": "skipped",
                      "reason": f"time budget spent ({self.left_s():.0f} s of {self.budget_s:.0f} s "
                                f"left, a part needs >= {self.p.min_start_s:.0f} s)"}
        else:
            print(f"[gpu_run] {name}: up to {box:.0f} s ({self.left_s():.0f} s of the budget left)",
                  file=sys.stderr, flush=True)
            self.report["parts"][name] = {"status": "running", "box_s": round(box, 1)}
            self.save()
            t = time.monotonic()
            try:
                result = fn(box)
            except Exception as e:  # a bug here must not cost the rest of a scarce GPU run
                traceback.print_exc()
                result = {"status": "failed", "reason": f"{type(e).__name__}: {e}",
                          "traceback": traceback.format_exc()[-3000:]}
            result.setdefault("wall_s", round(time.monotonic() - t, 1))
            result["box_s"] = round(box, 1)
        self.report["parts"][name] = result
        self.save()
        print(f"[gpu_run] {name}: {result['status']}"
              + (f" ({result['reason']})" if result.get("reason") else ""),
              file=sys.stderr, flush=True)
        return result


# -- part 1 and 5: bench/search_cost.py -----------------------------------------------------
def search_cost_part(run: Run, name: str, bf16: bool, variants: tuple[str, ...], box_s: float,
                     table: pathlib.Path | None) -> dict:
    p = run.p
    out = run.out / f"{name}.json"
    cmd = [sys.executable, str(REPO / "bench" / "search_cost.py"), f"--preset={p.sc_preset}",
           f"--variants={','.join(variants)}", f"--steps={p.sc_steps}", f"--warmup={p.sc_warmup}",
           "--rounds=1", f"--timeout={box_s:.0f}", f"--json={out}"]
    if bf16:
        cmd.append("--bf16")
    if table is not None:
        cmd.append(f"--table={table}")
    box = Box(cmd, run.logs / f"{name}.log", child_env())
    rc, timed_out = box.wait(box_s)
    result = {"command": cmd, "log": f"logs/{name}.log", "wall_s": round(box.wall_s, 1),
              "precision": "mixed_bfloat16" if bf16 else "float32", "variants_requested": list(variants),
              "runtime_loss": f"Pixel 1 table {table}" if table else "none"}
    report = json.loads(out.read_text()) if out.is_file() else None
    if report is not None:
        batch = report["config"]["batch"]
        result.update(
            backend=report.get("backend"), device=report.get("device"), batch=batch,
            input_size=report["config"]["input_size"], width=report["config"]["width"],
            step_ms={v: ms for v, ms in report["step_ms"].items() if ms},
            step_ms_min={v: ms for v, ms in report["step_ms_min"].items() if ms},
            first_step_s=report["first_step_s"], peak_mem_mb=report["peak_mem_mb"],
            peak_mem_kind=report.get("peak_mem_kind"), params=report["params"],
            errors=report["errors"], search_cost_json=out.name,
        )
        result["images_per_s"] = {v: batch / (ms / 1e3) for v, ms in result["step_ms"].items()}
    done = sorted(result.get("images_per_s", {}))
    if timed_out:
        result.update(status="partial" if done else "failed",
                      reason=f"time box of {box_s:.0f} s ran out; finished: {done or 'none'}")
    elif rc != 0 or not done:
        why = "; ".join(f"{v}: {e[:200]}" for v, e in (result.get("errors") or {}).items())
        result.update(status="failed",
                      reason=f"exit code {rc}; {why}" if why else failure(rc, box.log))
    else:
        missing = [v for v in variants if v not in done]
        result.update(status="partial" if missing else "ok")
        if missing:
            result["reason"] = f"no figures for {missing}: {result.get('errors')}"
    return result


# -- part 2: timm spnasnet_100 in PyTorch (its own process) --------------------------------
def timm_part(run: Run, box_s: float) -> dict:
    missing = [m for m in ("torch", "timm") if importlib.util.find_spec(m) is None]
    if missing:
        return {"status": "skipped", "reason": f"{' and '.join(missing)} not installed in this "
                                               f"environment ({sys.executable})"}
    cfg = sc.PRESETS[run.p.sc_preset]
    out = run.out / "timm.json"
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker=timm",
           f"--out={run.out}", f"--worker_json={out}", f"--batch={cfg['batch']}",
           f"--input_size={cfg['input_size']}", f"--num_classes={cfg['num_classes']}",
           f"--steps={run.p.timm_steps}", f"--warmup={run.p.timm_warmup}"]
    box = Box(cmd, run.logs / "timm.log", dict(os.environ))
    rc, timed_out = box.wait(box_s)
    result = {"command": cmd, "log": "logs/timm.log", "wall_s": round(box.wall_s, 1)}
    worker = json.loads(out.read_text()) if out.is_file() else {}
    result.update(worker)
    done = sorted(worker.get("images_per_s", {}))
    if timed_out:
        result.update(status="partial" if done else "failed",
                      reason=f"time box of {box_s:.0f} s ran out; finished: {done or 'none'}")
    elif rc != 0 or not done:
        result.update(status="failed", reason=failure(rc, box.log))
    else:
        result["status"] = "ok" if len(done) == 2 else "partial"
    return result


def _timm_step(model, opt, loss_fn, x, y, bf16: bool, device_type: str, sync) -> None:
    """One train step, run to completion (AMP bf16 when ``bf16``)."""
    import torch

    opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=bf16):
        loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    sync()


def timm_worker(args: argparse.Namespace) -> int:
    """Times timm's ``spnasnet_100`` train step, AMP bf16 then fp32 (in this process)."""
    import timm
    import torch

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    try:
        from timm.optim import RMSpropTF as rmsprop  # TF's epsilon placement, as MnasNet's
        optimizer_name = "timm.optim.RMSpropTF"
    except ImportError:
        rmsprop = torch.optim.RMSprop
        optimizer_name = "torch.optim.RMSprop"
    result: dict = {
        "model": f"timm {TIMM_MODEL}", "torch": torch.__version__, "timm": timm.__version__,
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else f"cpu ({os.cpu_count()})",
        "batch": args.batch, "input_size": args.input_size, "num_classes": args.num_classes,
        "optimizer": f"{optimizer_name}(alpha=0.9, momentum=0.9, eps=1e-3, weight_decay=1e-5)",
        "loss": "CrossEntropyLoss(label_smoothing=0.1)",
        "mode": "eager (no torch.compile), channels_last, cudnn.benchmark; no weight EMA",
        "data": "synthetic random tensors in device memory",
        "step_ms": {}, "step_ms_min": {}, "first_step_s": {}, "peak_mem_mb": {}, "params": None,
        "images_per_s": {},
    }
    out = pathlib.Path(args.worker_json)
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(args.batch, 3, args.input_size, args.input_size, generator=g)
    y = torch.randint(0, args.num_classes, (args.batch,), generator=g)
    x = x.to(dev).contiguous(memory_format=torch.channels_last)
    y = y.to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for precision in ("bf16", "fp32"):
        torch.manual_seed(0)
        model = timm.create_model(TIMM_MODEL, pretrained=False, num_classes=args.num_classes)
        model = model.to(dev).to(memory_format=torch.channels_last).train()
        result["params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        opt = rmsprop(model.parameters(), lr=sc.LR_PER_256 * args.batch / 256, alpha=0.9,
                      momentum=0.9, eps=1e-3, weight_decay=1e-5)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=sc.LABEL_SMOOTHING)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        step = functools.partial(_timm_step, model, opt, loss_fn, x, y,
                                 precision == "bf16", dev.type, sync)
        t = time.perf_counter()
        step()
        result["first_step_s"][precision] = time.perf_counter() - t
        for _ in range(args.warmup):
            step()
        times = []
        for _ in range(args.steps):
            t = time.perf_counter()
            step()
            times.append((time.perf_counter() - t) * 1e3)
        result["step_ms"][precision] = statistics.median(times)
        result["step_ms_min"][precision] = min(times)
        result["images_per_s"][precision] = args.batch / (result["step_ms"][precision] / 1e3)
        if dev.type == "cuda":
            result["peak_mem_mb"][precision] = torch.cuda.max_memory_allocated() / 2**20
        write_atomic(out, json.dumps(result, indent=2))
        del model, opt
    return 0


# -- parts 3 and 4: the CIFAR-10 CLIs -------------------------------------------------------
def extract_cifar(tarball: pathlib.Path, dest: pathlib.Path, per_class: int) -> dict:
    """``train/<class>/*.jpg`` from ``tarball`` into ``dest`` (``per_class`` of each, 0 = all);
    reused when ``dest`` already holds them."""
    marker = dest / f".extracted_{per_class}"
    if marker.is_file():
        return json.loads(marker.read_text())
    t = time.monotonic()
    counts: collections.Counter = collections.Counter()
    with tarfile.open(tarball, "r|gz") as tar:  # a stream: one pass over the archive
        for member in tar:
            parts = pathlib.PurePosixPath(member.name).parts
            if not member.isfile() or len(parts) != 3 or parts[0] != "train" or ".." in parts:
                continue
            if per_class and counts[parts[1]] >= per_class:
                continue
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
            counts[parts[1]] += 1
    info = {"tarball": str(tarball), "dir": str(dest), "images": sum(counts.values()),
            "classes": len(counts), "seconds": round(time.monotonic() - t, 1)}
    marker.write_text(json.dumps(info))
    return info


class LogWatch:
    """Follows a CSV log with a ``step`` column while its CLI runs: (seconds, step)
    whenever the last logged step changes, for the steady-state rate after compiling."""

    def __init__(self, path: pathlib.Path, t0: float):
        self.path = path
        self.t0 = t0
        self.points: list[tuple[float, int]] = []
        self._size = -1

    def poll(self) -> None:
        try:
            size = self.path.stat().st_size
            if size == self._size:
                return
            self._size = size
            lines = self.path.read_text().splitlines(keepends=True)
        except OSError:
            return
        complete = [ln for ln in lines if ln.endswith("\n")]
        if len(complete) < 2:
            return
        header = next(csv.reader(io.StringIO(complete[0])))
        last = next(csv.reader(io.StringIO(complete[-1])))
        try:
            step = int(float(last[header.index("step")]))
        except (ValueError, IndexError):
            return
        if not self.points or step != self.points[-1][1]:
            self.points.append((time.monotonic() - self.t0, step))

    def steady(self, batch: int) -> dict | None:
        """Images/s between the first and the last logged step seen (compile excluded)."""
        pts = [p for p in self.points if p[1] > 0]
        if len(pts) < 2 or pts[-1][1] <= pts[0][1] or pts[-1][0] <= pts[0][0]:
            return None
        (t_a, s_a), (t_b, s_b) = pts[0], pts[-1]
        return {"images_per_s": batch * (s_b - s_a) / (t_b - t_a), "from_step": s_a,
                "to_step": s_b, "seconds": round(t_b - t_a, 2), "first_log_s": round(t_a, 1)}


def cli_part(run: Run, name: str, box_s: float, module: str, config: str, workdir: pathlib.Path,
             log_csv: str, steps: int, overrides: list[str], report_file: str) -> dict:
    p = run.p
    cmd = [sys.executable, "-m", module, f"--config={REPO / config}", f"--workdir={workdir}",
           *overrides,
           f"--config.schedule.batch_size={p.cifar_batch}",
           f"--config.schedule.train_steps={steps}",
           f"--config.schedule.bn_recalibration_batches={p.bn_batches}",
           f"--config.execution.jit_compile={p.jit_compile}",
           f"--config.execution.log_every={p.log_every}"]
    box = Box(cmd, run.logs / f"{name}.log", child_env(run.scratch))
    watch = LogWatch(workdir / log_csv, box.t0)
    rc, timed_out = box.wait(box_s, poll=watch.poll)
    result: dict = {"command": cmd, "log": f"logs/{name}.log", "wall_s": round(box.wall_s, 1),
                    "steps": steps, "batch": p.cifar_batch, "jit_compile": p.jit_compile,
                    "log_points": watch.points[-3:]}
    steady = watch.steady(p.cifar_batch)
    if steady:
        result["steady"] = steady
        result["images_per_s"] = {"steady": steady["images_per_s"]}
    keep = run.out / name
    keep.mkdir(exist_ok=True)
    for f in sorted(workdir.glob("*")):  # the small hand-off files, not the checkpoints
        if f.is_file() and f.suffix in (".json", ".csv", ".png") and f.stat().st_size < 2**20:
            shutil.copy2(f, keep / f.name)
    report_path = workdir / report_file
    if report_path.is_file():
        rep = json.loads(report_path.read_text())
        fit_s = (rep.get("search") or {}).get("seconds", rep.get("seconds"))
        result["fit_seconds"] = fit_s  # includes the compile of the train step
        if fit_s:
            result.setdefault("images_per_s", {})["fit_incl_compile"] = steps * p.cifar_batch / fit_s
        for key in ("predicted_ms", "top1", "train_images", "eval_images"):
            if key in rep:
                result[key] = rep[key]
        if "search" in rep:
            result["supernet_val_accuracy_ema"] = rep["search"].get("supernet_val_accuracy_ema")
            result["layers"] = rep.get("layers")
    if timed_out:
        result.update(status="partial" if result.get("images_per_s") else "failed",
                      reason=f"time box of {box_s:.0f} s ran out at logged step "
                             f"{watch.points[-1][1] if watch.points else 'none'}")
    elif rc != 0 or not report_path.is_file():
        result.update(status="failed", reason=failure(rc, box.log), log_tail=tail(box.log))
    else:
        result["status"] = "ok" if result.get("images_per_s") else "partial"
        if result["status"] == "partial":
            result["reason"] = "finished, but no rate could be measured (too few log rows)"
    return result


def cifar_dir(run: Run) -> pathlib.Path:
    return run.scratch / f"cifar10_{run.p.images_per_class or 'all'}"


def cifar_search_part(run: Run, box_s: float) -> dict:
    tarball = find_data(TARBALL, run.args.tarball)
    if tarball is None or not tarball.is_file():
        return {"status": "skipped", "reason": f"no {TARBALL} (--tarball, or in "
                                               f"{' or '.join(map(str, DATA_DIRS))})"}
    t = time.monotonic()
    data = extract_cifar(tarball, cifar_dir(run), run.p.images_per_class)
    run.report["cifar_data"] = data
    steps = run.p.search_steps
    overrides = [f"--config.data.dataset=folder:{cifar_dir(run)}",
                 # The paper's 8 epochs (lambda warm-up 5 of them) compressed into ``steps``.
                 f"--config.schedule.steps_per_epoch={max(1, steps // 8)}"]
    result = cli_part(run, "cifar_search", box_s - (time.monotonic() - t), "spnas.search.main",
                      "configs/cifar10.py", run.scratch / "search", "search_log.csv", steps,
                      overrides, "arch.json")
    result["data"] = data
    return result


def cifar_train_part(run: Run, box_s: float) -> dict:
    arch = run.scratch / "search" / "arch.json"
    data_dir = cifar_dir(run)
    if not data_dir.is_dir():
        return {"status": "skipped", "reason": "no CIFAR-10 images (the search part did not run)"}
    if not arch.is_file():
        return {"status": "skipped", "reason": "the search wrote no arch.json"}
    steps = run.p.train_steps
    overrides = [f"--arch={arch}", f"--config.data.dataset=folder:{data_dir}",
                 # The config's 100 epochs (warm-up, x0.97 steps) compressed into ``steps``.
                 f"--config.schedule.steps_per_epoch={steps / 100.0}"]
    return cli_part(run, "cifar_train", box_s, "spnas.train.main", "configs/cifar10_train.py",
                    run.scratch / "train", "train_log.csv", steps, overrides,
                    "train_report.json")


# -- the summary --------------------------------------------------------------------------
def _ratio(a, b):
    return a / b if a and b else None


def summarize(parts: dict) -> dict:
    """The figures the issue asks for, from whatever parts have figures."""
    bf16, fp32 = parts.get("search_cost_bf16", {}), parts.get("search_cost_fp32", {})
    timm, search, train = parts.get("timm", {}), parts.get("cifar_search", {}), parts.get("cifar_train", {})
    images = {}
    for tag, part in (("bf16", bf16), ("fp32", fp32)):
        for v, ips in part.get("images_per_s", {}).items():
            images[f"{v}_{tag}"] = ips
    for prec, ips in timm.get("images_per_s", {}).items():
        images[f"timm_{TIMM_MODEL}_{prec}"] = ips
    for name, part in (("cifar_search", search), ("cifar_train", train)):
        for kind, ips in part.get("images_per_s", {}).items():
            images[f"{name}_{kind}"] = ips
    out: dict = {"images_per_s": images}

    # The projection: the faster measured single-path rate (bf16 where it helps).
    sp = {tag: part["images_per_s"]["single_path"] for tag, part in (("bf16", bf16), ("fp32", fp32))
          if "single_path" in part.get("images_per_s", {})}
    if sp:
        tag = max(sp, key=sp.get)
        part = bf16 if tag == "bf16" else fp32
        device = part.get("device") or ""
        paper_space = part.get("input_size") == 224 and part.get("width") == 1.0
        on_gpu = device.startswith(("gpu", "cuda"))
        hours = sc.SEARCH_EPOCHS * sc.IMAGENET_TRAIN_IMAGES / sp[tag] / 3600
        out["projection_8_epoch_search"] = {
            "images": sc.SEARCH_EPOCHS * sc.IMAGENET_TRAIN_IMAGES,
            "single_path_images_per_s": sp[tag], "precision": tag, "device": device,
            "device_hours": hours,
            "valid": paper_space and on_gpu,
            "note": ("train steps only (synthetic data: no input pipeline, no evaluation)"
                     if paper_space and on_gpu else
                     "NOT a projection to quote: " + ("not the paper's 224x224 width-1 space"
                                                       if not paper_space else "not a GPU")),
            "paper_wall_hours": sc.PAPER_SEARCH_WALL_HOURS,
            "paper_tpu_hours": sc.PAPER_TPU_HOURS,
            "paper_hardware": "one TPUv2 (the paper: 2 chips with 4 cores each), batch 1024",
            "paper_source": PAPER_SEARCH_COST,
            "over_paper_wall_hours": hours / sc.PAPER_SEARCH_WALL_HOURS,
        }
    for tag, part in (("bf16", bf16), ("fp32", fp32)):
        ms = part.get("step_ms", {})
        out.setdefault("mp_over_sp_step_time", {})[tag] = _ratio(ms.get("multi_path"),
                                                                  ms.get("single_path"))
        out.setdefault("sp_over_fixed_step_time", {})[tag] = _ratio(ms.get("single_path"),
                                                                    ms.get("fixed"))
    t_ms = timm.get("step_ms", {})
    out["spnas_jax_over_timm_torch_step_time"] = {
        # Like for like: the same (searched) network, the same batch and resolution.
        "searched_net_bf16": _ratio(bf16.get("step_ms", {}).get("searched_net"), t_ms.get("bf16")),
        "searched_net_fp32": _ratio(fp32.get("step_ms", {}).get("searched_net"), t_ms.get("fp32")),
        # One search step against one train step of the net it finds.
        "single_path_bf16": _ratio(bf16.get("step_ms", {}).get("single_path"), t_ms.get("bf16")),
    }
    return out


def _fmt(x, spec=".2f"):
    return "n/a" if x is None else format(x, spec)


def markdown(report: dict) -> str:
    parts, s = report["parts"], report["summary"]
    lines = [f"# gpu_run ({report['preset']} preset) — {report.get('updated', '')}", "",
             f"{'complete' if report['complete'] else 'INCOMPLETE (still running, or killed)'}; "
             f"{report.get('elapsed_s', 0):.0f} s of a {report['budget_s']:.0f} s budget.", "",
             "| part | status | wall s | measurement | images/s | step ms |",
             "|---|---|---:|---|---:|---:|"]
    for name in PARTS:
        part = parts.get(name)
        if part is None:
            lines.append(f"| {name} | not reached | | | | |")
            continue
        ips = part.get("images_per_s") or {}
        step_ms = part.get("step_ms") or {}
        if not ips:
            reason = (part.get("reason") or "").replace("|", "/").replace("\n", " ")[:200]
            lines.append(f"| {name} | {part['status']} | {_fmt(part.get('wall_s'), '.0f')} | "
                         f"{reason} | | |")
        for key, value in ips.items():
            rate = format(value, ",.0f" if value >= 100 else ".3g")
            lines.append(f"| {name} | {part['status']} | {_fmt(part.get('wall_s'), '.0f')} | "
                         f"{key} | {rate} | {_fmt(step_ms.get(key), '.1f')} |")
    proj = s.get("projection_8_epoch_search")
    lines.append("")
    if proj:
        lines.append(
            f"- Paper's 8-epoch ImageNet search ({proj['images']:,} images) at the single-path "
            f"rate ({proj['single_path_images_per_s']:,.0f} images/s, {proj['precision']}, "
            f"{proj['device']}): **{proj['device_hours']:.2f} "
            f"{'GPU' if proj['valid'] else 'device'}-hours** "
            f"({proj['over_paper_wall_hours']:.2f}x the paper's {proj['paper_wall_hours']} h "
            f"wall-clock on one TPUv2 = {proj['paper_tpu_hours']:.0f} TPU-hours); {proj['note']}.")
    for key, label in (("mp_over_sp_step_time", "multi-path / single-path step time"),
                       ("sp_over_fixed_step_time", "single-path / plain 5x5-e6 step time")):
        r = s.get(key, {})
        lines.append(f"- {label}: bf16 {_fmt(r.get('bf16'))}, fp32 {_fmt(r.get('fp32'))}")
    r = s.get("spnas_jax_over_timm_torch_step_time", {})
    lines.append(f"- spnas-JAX / timm-PyTorch step time, same net ({TIMM_MODEL}): bf16 "
                 f"{_fmt(r.get('searched_net_bf16'))}, fp32 {_fmt(r.get('searched_net_fp32'))}; "
                 f"a single-path search step / timm's train step of the found net (bf16): "
                 f"{_fmt(r.get('single_path_bf16'))}")
    return "\n".join(lines) + "\n"


# -- main ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="gpu")
    parser.add_argument("--out", required=True, help="results: gpu_run.json, gpu_run.md, logs/")
    parser.add_argument("--scratch", help="extracted images and the CLIs' workdirs "
                                          "(default: a new temporary folder, removed at the end)")
    parser.add_argument("--tarball", help=f"the CIFAR-10 JPEG tarball (default: {TARBALL} in "
                                          f"{' or '.join(map(str, DATA_DIRS))})")
    parser.add_argument("--table", help=f"the Pixel 1 table (default: {PIXEL1_TABLE} in the "
                                        "same folders; used only by the imagenet-sized parts)")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of "
                                                                 f"{', '.join(PARTS)}")
    parser.add_argument("--budget_s", type=float, help="override the preset's total budget")
    # The timm worker (run by the timm part in its own process).
    parser.add_argument("--worker", choices=("timm",), help=argparse.SUPPRESS)
    parser.add_argument("--worker_json", help=argparse.SUPPRESS)
    for flag in ("batch", "input_size", "num_classes", "steps", "warmup"):
        parser.add_argument(f"--{flag}", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "timm":
        return timm_worker(args)

    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"--parts: unknown {unknown}; choose from {PARTS}")
    run = Run(args.preset, args)
    created = args.scratch is None
    run.scratch = pathlib.Path(args.scratch or tempfile.mkdtemp(prefix="spnas_gpu_run_"))
    run.scratch.mkdir(parents=True, exist_ok=True)
    run.report["environment"] = environment()
    table = None
    if sc.PRESETS[run.p.sc_preset]["space"] == "paper":
        table = find_data(PIXEL1_TABLE, args.table)
        if table is not None and not table.is_file():
            parser.error(f"--table {table}: no such file")
    run.report["pixel1_table"] = str(table) if table else None
    run.save()
    p = run.p
    signal.signal(signal.SIGTERM, _terminated)  # a timeout's SIGTERM still saves and cleans up
    try:
        run.part("search_cost_bf16", p.sc_box_s, lambda box: search_cost_part(
            run, "search_cost_bf16", True, p.sc_variants, box, table))
        run.part("timm", p.timm_box_s, lambda box: timm_part(run, box))
        run.part("cifar_search", p.search_box_s, lambda box: cifar_search_part(run, box))
        run.part("cifar_train", p.train_box_s, lambda box: cifar_train_part(run, box))
        run.part("search_cost_fp32", p.sc_fp32_box_s, lambda box: search_cost_part(
            run, "search_cost_fp32", False, p.sc_fp32_variants, box, table))
        run.report["complete"] = True
    finally:
        for box in list(LIVE):
            box.kill()
        run.save()
        if created:
            shutil.rmtree(run.scratch, ignore_errors=True)
    print(markdown(run.report))
    return 1 if any(part["status"] == "failed" for part in run.report["parts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
