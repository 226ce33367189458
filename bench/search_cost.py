"""Search-cost benchmark: single-path vs fixed vs multi-path supernet train steps.

The paper's efficiency claim (Stamoulis et al., 2019, Sec. 3.3 and 4): a
single-path supernet costs about as much per step as the plain MBConv-5x5-6
network it over-parameterises, and far less than a multi-path supernet (Eq. 5)
with a separate path per candidate; the whole search is 8 epochs (30 TPU-hours).

For one configuration it builds and times, each in its own spawned process
(:mod:`bench.step_worker`, so peak memory is isolated):

* ``single_path``: :func:`spnas.search.supernet.build_supernet` (with the runtime
  loss when ``--table`` is given),
* ``fixed``: the same network with plain Keras MBConv-5x5-6 searchable layers
  (:mod:`spnas.models.blocks`),
* ``multi_path``: :mod:`bench.multipath`, four candidate paths plus skip per layer,
* ``searched_net`` (on request, not by default): the paper's searched network
  (registry ``spnas_pixel1``, the net timm ships as ``spnasnet_100``) as a plain
  Keras model, so that ``bench/gpu_run.py`` can set spnas' train step of the final
  net beside timm's PyTorch one.

Each step is one train step with the search's optimizer (RMSProp 0.9/0.9/1e-3 with
the weight EMA, :class:`spnas.train.optim.MnasRMSprop`) on a synthetic batch
already in device memory: a speed benchmark, not a dataset. On a CPU the timed
steps alternate between the variants' live processes in rounds (``--rounds``),
so that other processes' load falls on all of them alike. With one round
(``--preset=imagenet``) ``--json`` is rewritten after every variant, so a run
killed in the middle keeps the variants it finished. On the JAX backend nothing
here imports TensorFlow (``tests/test_bench_gpu.py`` runs it with TensorFlow
made unimportable).

    python bench/search_cost.py --preset=cpu-small --json=out.json
    KERAS_BACKEND=jax python bench/search_cost.py --preset=imagenet \
        --table=/work/shared/data/pixel1_runtime_model.json --bf16
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import pathlib
import re
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Run as a script, this file's directory is on sys.path but the repository root
# (for ``bench.multipath``) is not.
REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

VARIANTS = ("single_path", "fixed", "multi_path")  # the default set, and the report's
EXTRA_VARIANTS = ("searched_net",)  # only when named in --variants
IMAGENET_TRAIN_IMAGES = 1_281_167  # ILSVRC-2012 train split
SEARCH_EPOCHS = 8  # paper, Sec. 4
PAPER_TPU_HOURS = 30.0  # paper, Sec. 4: 3.75 h on a TPUv2 (8 cores)
PAPER_SEARCH_WALL_HOURS = 3.75  # paper, Sec. 4: "total wall-clock time of 3.75 hours on a TPUv2"
LR_PER_256 = 0.016  # the release's search, scaled linearly with the batch
LABEL_SMOOTHING = 0.1  # the release's search
RUNTIME_LAMBDA = 0.020  # the release's search run; only scales the runtime loss
PRESETS = {
    # Fits 2 CPU cores: the embedded space (width 0.5, 22 layers) at 32x32.
    "cpu-small": dict(space="embedded", input_size=32, width=0.5, batch=32, num_classes=10,
                      steps=30, warmup=3, rounds=5),
    # The paper's search space at 224, batch 256 (for a GPU).
    "imagenet": dict(space="paper", input_size=224, width=1.0, batch=256, num_classes=1000,
                     steps=50, warmup=5, rounds=1),
    # Seconds on a CPU (bench/gpu_run.py --preset=tiny, tests): the 6-layer smoke space.
    "tiny": dict(space="smoke", input_size=32, width=0.25, batch=8, num_classes=10,
                 steps=4, warmup=1, rounds=1),
}


class BenchConfigError(ValueError):
    """The benchmark configuration is inconsistent."""


# -- configuration ----------------------------------------------------------------------
def make_space(cfg: dict):
    """The search space of a resolved config."""
    from spnas.space import SearchSpace, embedded_space, smoke_space

    spaces = {"embedded": embedded_space, "smoke": smoke_space}
    base = spaces[cfg["space"]](cfg["num_classes"]) if cfg["space"] in spaces else SearchSpace()
    return dataclasses.replace(
        base, input_size=cfg["input_size"], width=cfg["width"], num_classes=cfg["num_classes"]
    )


def load_benchmark_table(path: str | None, space):
    """The Pixel 1 table, only for the paper's 224 space at width 1.0 (else None).

    A table measured for another space would make the runtime loss meaningless,
    and we never synthesise one: other spaces run without a table.
    """
    if path is None:
        return None
    from spnas.latency import load_table
    from spnas.space import SearchSpace

    paper = SearchSpace(num_classes=space.num_classes, dropout=space.dropout)
    if space != paper:
        raise BenchConfigError(
            f"--table {path!r}: the Pixel 1 table describes the paper's 224x224 space at width "
            f"1.0; this run uses input {space.input_size}, width {space.width}, blocks "
            f"{space.block_strides or 'default strides'}. Drop --table or use --preset=imagenet."
        )
    return load_table(path, space)


def resolve_config(args: argparse.Namespace) -> dict:
    """Preset values overridden by the explicit flags."""
    cfg = dict(PRESETS[args.preset], preset=args.preset)
    for key in ("batch", "input_size", "width", "steps", "warmup", "rounds"):
        value = getattr(args, key)
        if value is not None:
            cfg[key] = value
    if cfg["batch"] < 1 or cfg["steps"] < 1 or cfg["rounds"] < 1 or cfg["warmup"] < 0:
        raise BenchConfigError("--batch, --steps and --rounds must be >= 1, --warmup >= 0.")
    cfg.update(table=args.table, bf16=bool(args.bf16), loop=args.loop, jit=args.jit)
    make_space(cfg)  # validates the size and width early
    return cfg


def parse_variants(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    known = VARIANTS + EXTRA_VARIANTS
    bad = [v for v in names if v not in known]
    if bad or not names:
        raise BenchConfigError(f"--variants: unknown {bad or 'empty list'}; choose from {known}.")
    return names


# -- the worker (one variant, in its own process) -----------------------------------------
def build_fixed(space, weight_decay: float):
    """The supernet's network with a plain MBConv-5x5-6 at every searchable layer."""
    import keras

    from spnas.models.blocks import head, mbconv, stem

    inputs = keras.Input((space.input_size, space.input_size, 3))
    x = stem(inputs, space.stem_filters, space.stem_stride, weight_decay)
    for spec in space.layers():
        kernel, expansion = (5, 6) if spec.searchable else (spec.kernel, spec.expansion)
        x = mbconv(x, spec.out_ch, kernel, spec.stride, expansion, spec.residual,
                   name=f"layer{spec.index:02d}", weight_decay=weight_decay)
    logits = head(x, space.head_filters, space.num_classes, space.dropout, weight_decay)
    return keras.Model(inputs, logits, name="fixed_k5e6")


def build_searched_net(space, weight_decay: float):
    """The paper's searched net (``spnas_pixel1`` = timm ``spnasnet_100``) at the space's
    input size, width and classes: a plain network, no search machinery."""
    from spnas.models import build_model

    return build_model("spnas_pixel1", num_classes=space.num_classes, input_size=space.input_size,
                       width=space.width, dropout=space.dropout, weight_decay=weight_decay,
                       name="searched_net")


def build_variant(name: str, space, table):
    """One of :data:`VARIANTS` or :data:`EXTRA_VARIANTS`; the supernets get the runtime
    loss when ``table`` is set."""
    from spnas.search.supernet import WEIGHT_DECAY, build_supernet

    if name == "single_path":
        model = build_supernet(space, table)
    elif name == "fixed":
        return build_fixed(space, WEIGHT_DECAY)
    elif name == "searched_net":
        return build_searched_net(space, WEIGHT_DECAY)
    elif name == "multi_path":
        from bench.multipath import build_multipath_supernet

        model = build_multipath_supernet(space, table)
    else:
        raise BenchConfigError(f"Unknown variant {name!r}.")
    if table is not None:
        model.runtime_lambda.assign(RUNTIME_LAMBDA)
    return model


def searchable_layer_params(model, space) -> int:
    """Trainable parameters inside the searchable layers (variables under ``layerNN``)."""
    import numpy as np

    searchable = {s.index for s in space.layers() if s.searchable}
    total = 0
    for v in model.trainable_variables:
        m = re.search(r"layer(\d\d)", v.path)
        if m and int(m.group(1)) in searchable:
            total += int(np.prod(v.shape))
    return total


def _add_step_stats(result: dict, ts: list[float]) -> None:
    if ts and "error" not in result:
        ts = sorted(ts)
        result.update(step_ms=statistics.median(ts), step_ms_min=ts[0],
                      step_ms_p10=ts[len(ts) // 10], step_ms_p90=ts[(len(ts) * 9) // 10])


def run_variants(variants: list[str], cfg: dict, timeout_s: float,
                 on_variant=None) -> dict[str, dict]:
    """Times each variant in its own process; ``cfg["rounds"]`` > 1 interleaves them.

    With rounds, every variant's process stays alive and the timed steps are
    split into rounds, each variant taking its turn in every round (one at a
    time), so that a shared machine's changing load hits all variants alike.
    With one round the processes run one after the other (needed on a GPU,
    where live processes would share its memory), and ``on_variant(results)``,
    if given, is called with the results so far after each one.
    """
    from bench.step_worker import Worker

    rounds = max(1, min(cfg["rounds"], cfg["steps"]))
    per_round = [cfg["steps"] // rounds + (r < cfg["steps"] % rounds) for r in range(rounds)]
    times: dict[str, list[float]] = {v: [] for v in variants}
    results: dict[str, dict] = {}
    if rounds == 1:
        for v in variants:
            print(f"[search_cost] {v}: build, compile, time", file=sys.stderr, flush=True)
            worker = Worker(v, cfg, timeout_s)
            times[v] = worker.time_steps(per_round[0])
            results[v] = worker.finish()
            _add_step_stats(results[v], times[v])
            if on_variant is not None:
                on_variant(dict(results))
        return results
    else:
        workers = {}
        for v in variants:
            print(f"[search_cost] {v}: build and compile", file=sys.stderr, flush=True)
            workers[v] = Worker(v, cfg, timeout_s)
        for r, n in enumerate(per_round):
            print(f"[search_cost] round {r + 1}/{rounds}", file=sys.stderr, flush=True)
            for v, worker in workers.items():
                times[v] += worker.time_steps(n)
        results = {v: w.finish() for v, w in workers.items()}
    for v, ts in times.items():
        _add_step_stats(results[v], ts)
    return results


# -- the report ---------------------------------------------------------------------------
def expected_threshold_params(space) -> int:
    """Thresholds the superkernel adds: 3 per skippable, 2 per other searchable layer."""
    return sum((3 if s.skippable else 2) for s in space.layers() if s.searchable)


def _ratio(a, b):
    return a / b if a is not None and b else None


def summarize(results: dict[str, dict], cfg: dict) -> dict:
    """The JSON report: per-variant figures, ratios, projection, config."""
    space = make_space(cfg)

    def get(key):
        return {v: r.get(key) for v, r in results.items()}

    params, step_ms = get("params"), get("step_ms")
    first = next((r for r in results.values() if "backend" in r), {})
    sp, fx, mp = (params.get(v) for v in VARIANTS)
    projection = {}
    if space.input_size == 224 and space.width == 1.0:
        for v, ms in step_ms.items():
            if ms and v in VARIANTS:  # a search's cost: the supernets (and their plain twin)
                ips = cfg["batch"] / (ms / 1e3)
                projection[v] = {"images_per_s": ips,
                                 "hours": SEARCH_EPOCHS * IMAGENET_TRAIN_IMAGES / ips / 3600}
    return {
        "params": params,
        "step_ms": step_ms,
        "step_ms_min": get("step_ms_min"),
        "step_ms_p10": get("step_ms_p10"),
        "step_ms_p90": get("step_ms_p90"),
        "first_step_s": get("first_step_s"),
        "peak_mem_mb": get("peak_mem_mb"),
        "peak_mem_kind": first.get("peak_mem_kind"),
        "errors": {v: r["error"] for v, r in results.items() if "error" in r},
        "sp_over_fixed_time": _ratio(step_ms.get("single_path"), step_ms.get("fixed")),
        "mp_over_sp_time": _ratio(step_ms.get("multi_path"), step_ms.get("single_path")),
        "mp_over_sp_params": _ratio(mp, sp),
        "searchable_layer_params": get("searchable_layer_params"),
        "mp_over_sp_searchable_layer_params": _ratio(
            get("searchable_layer_params").get("multi_path"),
            get("searchable_layer_params").get("single_path")),
        # Minima resist the load of other processes on a shared machine.
        "sp_over_fixed_time_min": _ratio(get("step_ms_min").get("single_path"),
                                         get("step_ms_min").get("fixed")),
        "mp_over_sp_time_min": _ratio(get("step_ms_min").get("multi_path"),
                                      get("step_ms_min").get("single_path")),
        "sp_minus_fixed_params": sp - fx if sp is not None and fx is not None else None,
        "expected_sp_minus_fixed_params": expected_threshold_params(space),
        "projection_8_epochs": projection,
        "paper_tpu_hours": PAPER_TPU_HOURS,
        "paper_search_wall_hours": PAPER_SEARCH_WALL_HOURS,
        "variants_done": [v for v in results if "error" not in results[v]],
        "runtime_loss": (f"Pixel 1 table {cfg['table']} (lambda={RUNTIME_LAMBDA})"
                         if cfg["table"] else "none (no latency table for this space)"),
        "data": "synthetic random tensors in device memory (speed benchmark only)",
        "config": dict(cfg, space_dict=space.to_dict()),
        "backend": first.get("backend"),
        "device": first.get("device"),
        "jit_compile": first.get("jit_compile"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def markdown(report: dict) -> str:
    """The report as Markdown: the table, the ratios against targets, the projection."""

    def num(x, fmt):
        return "n/a" if x is None else format(x, fmt)

    cfg = report["config"]
    lines = [
        f"Backend {report['backend']}, {report['device']}, jit_compile={report['jit_compile']}, "
        f"input {cfg['input_size']}, width {cfg['width']}, batch {cfg['batch']}, "
        f"{cfg['steps']} timed steps in {cfg['rounds']} round(s) after {cfg['warmup']} warm-up, "
        f"bf16={cfg['bf16']}, "
        f"loop={cfg['loop']}. Runtime loss: {report['runtime_loss']}. Data: {report['data']}.",
        "",
        f"| variant | trainable params | step ms (median) | min ms | p10-p90 ms | first step s "
        f"| peak mem MB ({report['peak_mem_kind']}) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v in report["params"]:
        if v in report["errors"]:
            lines.append(f"| {v} | error: {report['errors'][v]} | | | | | |")
            continue
        lines.append(
            f"| {v} | {report['params'][v]:,} | {report['step_ms'][v]:.1f} "
            f"| {report['step_ms_min'][v]:.1f} "
            f"| {report['step_ms_p10'][v]:.1f}-{report['step_ms_p90'][v]:.1f} "
            f"| {report['first_step_s'][v]:.1f} | {report['peak_mem_mb'][v]:.0f} |"
        )
    diff, want = report["sp_minus_fixed_params"], report["expected_sp_minus_fixed_params"]
    lines += [
        "",
        f"- single-path / fixed step time: {num(report['sp_over_fixed_time'], '.3f')} "
        f"(ratio of minima {num(report['sp_over_fixed_time_min'], '.3f')}; target <= 1.10)",
        f"- multi-path / single-path step time: {num(report['mp_over_sp_time'], '.2f')} "
        f"(ratio of minima {num(report['mp_over_sp_time_min'], '.2f')}; target >= 2.5)",
        f"- multi-path / single-path params: {num(report['mp_over_sp_params'], '.2f')} (target >= 2.5); "
        f"searchable layers only: {num(report['mp_over_sp_searchable_layer_params'], '.2f')}",
        f"- single-path - fixed params: {num(diff, 'd')} (expected {want} = 3 per skippable + "
        f"2 per other searchable layer{'' if diff is None else ': ok' if diff == want else ': MISMATCH'})",
    ]
    if report["projection_8_epochs"]:
        unit = "GPU-hours" if report["device"] and report["device"].startswith(("gpu", "cuda")) else (
            "device-hours on this device (not a GPU: a dry run, not a projection to quote)")
        lines += ["", f"Projected search cost, {SEARCH_EPOCHS} epochs x {IMAGENET_TRAIN_IMAGES:,} "
                  f"images at this throughput ({unit}); paper: {PAPER_TPU_HOURS:.0f} TPU-hours:"]
        for v, p in report["projection_8_epochs"].items():
            lines.append(f"- {v}: {p['images_per_s']:.0f} images/s -> {p['hours']:.1f} h")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--input_size", type=int)
    parser.add_argument("--width", type=float)
    parser.add_argument("--steps", type=int, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, help="untimed steps after the first (compiling) one")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, of {', '.join(VARIANTS + EXTRA_VARIANTS)}")
    parser.add_argument("--table", help="Pixel 1 latency table (only the paper's 224 space)")
    parser.add_argument("--bf16", action="store_true", help="mixed_bfloat16 policy (GPU)")
    parser.add_argument("--loop", choices=("tight", "train_on_batch"), default="tight",
                        help="JAX: 'tight' keeps the state in the loop (TF always uses train_on_batch)")
    parser.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                        help="auto: on for JAX and for TF on a GPU, off for TF on a CPU")
    parser.add_argument("--rounds", type=int,
                        help="split the timed steps into rounds alternating between the variants' "
                             "live processes (1: one process after the other, as on a GPU)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds to wait for any one answer of a worker (compile included)")
    parser.add_argument("--json", help="write the report here (atomically)")
    args = parser.parse_args(argv)

    try:
        cfg = resolve_config(args)
        variants = parse_variants(args.variants)
        load_benchmark_table(cfg["table"], make_space(cfg))  # fail before any subprocess
    except (BenchConfigError, ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    from spnas.fileio import atomic_write_json

    def write_partial(results: dict[str, dict]) -> None:
        report = dict(summarize(results, cfg), complete=False, variants_requested=variants)
        atomic_write_json(args.json, report)

    results = run_variants(variants, cfg, args.timeout, on_variant=write_partial if args.json else None)
    report = dict(summarize(results, cfg), complete=True, variants_requested=variants)
    print(markdown(report))
    if args.json:
        atomic_write_json(args.json, report)
    return 1 if len(report["errors"]) == len(variants) else 0


if __name__ == "__main__":
    sys.exit(main())
