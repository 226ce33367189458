"""Does the search beat random sampling? Single-Path NAS against NAS-Bench-Macro's trained nets.

NAS-Bench-Macro (Su et al., CVPR 2021, Apache-2.0) trained every net of an 8-layer
MBConv space (identity / MB3_K3 / MB6_K5 per layer) three times on CIFAR-10 (50
epochs, SGD, cosine), so the true accuracy of a searched net is a lookup. This
script searches that space with spnas (``configs/nasbench_macro.py``) on a folder of
CIFAR-10 training JPEGs (the search's own validation split; the benchmark's
accuracies are never read by a search), maps every decoded net onto its benchmark
code and compares it with what random sampling gets at the same cost:

1. Searches in target mode at three budgets (25 / 50 / 75 % of the reachable range)
   on the MACs table with ``seeds`` search seeds each, and at the same three
   budgets on the host latency table (``nasbench_macro_cpu``) with
   ``latency_seeds`` seeds; the middle MACs search of every seed also decodes the
   other two budgets (``--config.targets``: the ``many_budgets`` rows).
2. Per budget and cost: the searched nets' benchmark accuracy (mean, sd over
   seeds), regret to the best net at or under the searched net's cost, its
   percentile among those nets, Table 1's random-search window ([0.94 c, c]: mean
   and sd), the exact expected best of N random nets under the budget (N = 1, 10,
   50), and spnas' own random search (``spnas.search.random_search``, ``random_n``
   nets in the window). A figure: every benchmark net, the Pareto front, the
   searched nets by seed, the budgets.
3. The search's cost: wall time, steps, images seen, the fraction of the paper's 8
   epochs, and what the same compute buys a random search in trainings of the
   benchmark's recipe (50 epochs of 50,000 images).
4. A rank check of spnas' trainer: ``rank_nets`` benchmark nets spread over its
   accuracy range trained with ``spnas-train`` on the same folder for a short
   schedule; Kendall's tau between their top-1 and the benchmark's.

Resumable stage by stage: every search, random search and training leaves its
result in ``OUT`` and a rerun reuses it (a killed search or training resumes from
its last checkpoint); the report (``nasbench_macro.{json,md,png}``) is rewritten
after every finished stage, so partial results are readable at any time.

    python bench/nasbench_macro.py --preset=cpu --train=folder:/data/cifar10 \\
        --bench=../shared/data/nas-bench-macro_cifar10.json --out=runs/macro

Presets:

* ``cpu``: the search steps are chosen from the step time measured first (two
  short probe searches; ``OUT/step_time.json``) so that all searches fit
  ``search_hours``; batch 64; 3 MACs seeds, 1 latency seed; 10 random nets per
  window; 8 rank-check nets of 800 training steps each.
* ``full``: the paper's 8 epochs per search at batch 128 (an accelerator), 3 seeds
  for both costs, rank-check nets trained for the config's epochs.
* ``tiny``: plumbing (a few steps, eager; used by tests/test_bench_nasbench.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import nasbench_lookup as lookup  # noqa: E402  (bench/, beside this script)

FORMAT = "spnas.nasbench_macro/1"
FRACTIONS = (0.25, 0.5, 0.75)
WINDOW_LO = 0.94  # Table 1's random-search window: 75-80 ms is 0.94-1 of 80
BEST_OF = (1, 10, 50)
PAPER_SEARCH_EPOCHS = 8.0
BENCH_TRAINING_IMAGES = 50 * 50_000  # the benchmark's recipe: 50 epochs of 50,000 images
LATENCY_TABLE = "nasbench_macro_cpu"


@dataclasses.dataclass(frozen=True)
class Preset:
    search_batch: int
    search_steps: int  # 0: from the measured step time (cpu) or the config's epochs (full)
    search_hours: float  # the cpu preset's time for all searches
    seeds: int  # MACs searches per budget
    latency_seeds: int
    random_n: int
    rank_nets: int
    rank_steps: int  # 0: the training config's epochs
    rank_batch: int
    probe_steps: tuple[int, int] = (8, 32)  # multiples of the 8 epochs
    eager: bool = False


PRESETS = {
    "cpu": Preset(search_batch=64, search_steps=0, search_hours=2.25, seeds=3, latency_seeds=1,
                  random_n=10, rank_nets=8, rank_steps=800, rank_batch=64),
    "full": Preset(search_batch=128, search_steps=0, search_hours=0.0, seeds=3, latency_seeds=3,
                   random_n=10, rank_nets=16, rank_steps=0, rank_batch=128),
    "tiny": Preset(search_batch=8, search_steps=8, search_hours=0.0, seeds=1, latency_seeds=1,
                   random_n=3, rank_nets=2, rank_steps=2, rank_batch=8, eager=True),
}


def log(msg: str) -> None:
    print(f"[nasbench_macro {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--train", required=True, help="folder:PATH with PATH/train/<class>/*.jpg")
    p.add_argument("--bench", required=True, help="nas-bench-macro_cifar10.json")
    p.add_argument("--out", required=True, help="output (and resume) directory")
    p.add_argument("--stages", default="macs,latency,random,rank",
                   help="which stages to run, in order (the report covers what is done)")
    return p.parse_args(argv)


def _load(path: str):
    from spnas.fileio import read_json

    return read_json(path, SystemExit, "nasbench_macro: bench file")


def check_out(out: str, args, preset: Preset) -> None:
    """One preset and one data folder per output directory."""
    from spnas.fileio import atomic_write_json

    path = os.path.join(out, "bench.json")
    record = {"preset": args.preset, "train": args.train}
    if os.path.exists(path):
        have = _load(path)
        if {k: have.get(k) for k in record} != record:
            raise SystemExit(f"nasbench_macro: {out} holds a run of {have}, not {record}; "
                             "use another --out")
        return
    atomic_write_json(path, {**record, "settings": dataclasses.asdict(preset)})


# --- configs and tables ------------------------------------------------------------------


def search_config(preset: Preset, train: str, cost: str, budget: float, seed: int,
                  steps: int, targets: tuple[float, ...] = ()):
    from spnas.configs_path import load_config

    c = load_config("nasbench_macro.py")
    c.data.dataset = train
    c.seed = seed
    c.schedule.batch_size = preset.search_batch
    if steps:  # the paper's 8 epochs (5 of warm-up) compressed into the steps
        if steps % int(c.schedule.epochs):
            raise SystemExit(f"nasbench_macro: {steps} search steps are not a whole number "
                             f"of steps for each of the {c.schedule.epochs:g} epochs")
        c.schedule.steps_per_epoch = steps // int(c.schedule.epochs)
    c.cost = cost
    c.latency_table = LATENCY_TABLE
    if cost == "latency":
        c.target, c.target_ms = 0.0, float(budget)
    else:
        c.target, c.target_ms = float(budget), 0.0
    c.targets = ",".join(f"{t:.6g}" for t in targets)
    c.execution.run_eagerly = preset.eager
    if preset.eager:
        c.schedule.bn_recalibration_batches = 2
        c.execution.checkpoint_every = 4
    return c


def tables():
    """The space, its MACs table and its latency table (bound)."""
    from spnas.arch.params import MacsTable
    from spnas.space import nasbench_macro_space
    from spnas.tables import bind, load_table

    space = nasbench_macro_space()
    return space, {"macs": MacsTable.from_space(space),
                   "latency": bind(load_table(LATENCY_TABLE), space)}


def code_costs(table, codes) -> dict[str, float]:
    """Every benchmark code's cost on ``table`` (the search's paper model)."""
    return {code: table.predict(lookup.choices_from_code(code)) for code in codes}


# --- step time and searches --------------------------------------------------------------


def search_steps(preset: Preset, train: str, out: str) -> dict:
    """The steps per search: the preset's, or (cpu) from two probe searches' wall times,
    so that every search of the preset fits ``search_hours``."""
    from spnas.fileio import atomic_write_json

    path = os.path.join(out, "step_time.json")
    if os.path.exists(path):
        return _load(path)
    searches = 3 * (preset.seeds + preset.latency_seeds)
    if preset.search_steps or not preset.search_hours:
        record = {"steps": preset.search_steps, "searches": searches, "measured": False}
    else:
        from spnas.search.run import run

        seconds = []
        for steps in preset.probe_steps:
            workdir = os.path.join(out, "probe", f"steps{steps}")
            c = search_config(preset, train, "macs", 56.69, 0, steps)
            t0 = time.time()
            run(c, workdir)
            seconds.append(time.time() - t0)
        (s1, s2), (n1, n2) = seconds, preset.probe_steps
        per_step = (s2 - s1) / (n2 - n1)
        overhead = s1 - n1 * per_step
        budget = preset.search_hours * 3600 / searches - overhead
        steps = max(40, int(budget / per_step) // 8 * 8)
        record = {"steps": steps, "searches": searches, "measured": True,
                  "seconds_per_step": round(per_step, 4), "overhead_seconds": round(overhead, 1),
                  "probe_steps": list(preset.probe_steps),
                  "probe_seconds": [round(s, 1) for s in seconds],
                  "load_average": os.getloadavg()}
        log(f"step time {per_step:.3f} s at batch {preset.search_batch} (+{overhead:.0f} s per "
            f"search); {searches} searches of {steps} steps fit {preset.search_hours} h")
    atomic_write_json(path, record)
    return record


def run_search(preset: Preset, train: str, cost: str, budget: float, seed: int, steps: int,
               out: str, targets: tuple[float, ...] = (), start: bool = True) -> dict | None:
    """One search (resumed or reused); its arch.json and budget files in its workdir.
    With ``start`` False only a finished one is returned (else None)."""
    from spnas.fileio import atomic_write_json

    workdir = os.path.join(out, "search", f"{cost}_{budget:.6g}_s{seed}")
    done = os.path.join(workdir, "bench_search.json")
    if os.path.exists(done):
        return _load(done)
    if not start:
        return None
    from spnas.search.run import run

    log(f"search: {cost} budget {budget:.6g}, seed {seed}, {steps or 'config'} steps"
        + (f", also decoding {list(targets)}" if targets else ""))
    t0 = time.time()
    arch = run(search_config(preset, train, cost, budget, seed, steps, targets), workdir)
    result = {"cost": cost, "budget": budget, "seed": seed, "workdir": workdir,
              "arch": arch.path, "layers": list(arch["layers"]),
              "steps": arch["search"]["steps"], "batch": preset.search_batch,
              "train_images": arch["search"]["train_images"],
              "search_seconds": arch["search"]["seconds"],
              "wall_seconds": round(time.time() - t0, 1),
              "supernet_val_top1": 100 * arch["search"]["supernet_val_accuracy_ema"],
              "budgets_file": os.path.join(workdir, "budgets.json") if targets else None}
    atomic_write_json(done, result)
    return result


def search_rows(search: dict, costs: dict, acc: dict, cost_table) -> list[dict]:
    """The search's own decode (``dedicated``) and, for a many-budgets search, every
    budget's decode (``many_budgets``), each looked up."""
    rows = [_row(search["cost"], search["budget"], search["seed"], "dedicated",
                 search["layers"], costs, acc, cost_table)]
    if search.get("budgets_file") and os.path.exists(search["budgets_file"]):
        for b in _load(search["budgets_file"])["budgets"]:
            rows.append(_row(search["cost"], float(b["target"]), search["seed"], "many_budgets",
                             b["layers"], costs, acc, cost_table))
    return rows


def _row(cost: str, budget: float, seed: int, mode: str, layers, costs, acc, table) -> dict:
    code = lookup.code_from_choices(layers)
    return {"cost": cost, "budget": budget, "seed": seed, "mode": mode, "layers": list(layers),
            "code": code, "canonical": lookup.canonical(code),
            "predicted_cost": table.predict(layers), "bench_mean_acc": acc[code],
            "regret": lookup.regret(costs, acc, code),
            "percentile": lookup.percentile(costs, acc, code)}


def random_rows(preset: Preset, space, cost: str, table, budgets, costs, acc,
                out: str) -> list[dict]:
    """spnas' random search (Table 1's baseline): ``random_n`` nets in [0.94 b, b]."""
    from spnas.fileio import atomic_write_json
    from spnas.search.random_search import random_search

    path = os.path.join(out, f"random_{cost}.json")
    if os.path.exists(path):
        return _load(path)
    rows = []
    for i, b in enumerate(budgets):
        kept, _ = random_search(table, space, n=preset.random_n, window=(WINDOW_LO * b, b),
                                seed=1000 + i)
        rows += [_row(cost, b, k, "random", choices, costs, acc, table)
                 for k, (choices, _) in enumerate(kept)]
    atomic_write_json(path, rows)
    return rows


# --- the rank check ----------------------------------------------------------------------


def rank_codes(bench: dict, n: int) -> list[str]:
    """``n`` canonical nets at evenly spread quantiles of the benchmark's accuracy."""
    nets = sorted({lookup.canonical(c) for c in bench}, key=lambda c: (bench[c]["mean_acc"], c))
    return [nets[min(len(nets) - 1, int((i + 0.5) * len(nets) / n))] for i in range(n)]


def rank_train(preset: Preset, train: str, code: str, space, out: str) -> dict:
    """Trains the benchmark net ``code`` with spnas-train's CIFAR-10 recipe; its top-1 on
    the training folder's validation split (EMA weights, BN recomputed)."""
    from spnas.arch.handoff import make_arch, write_arch
    from spnas.configs_path import load_config
    from spnas.fileio import atomic_write_json

    workdir = os.path.join(out, "rank", code)
    done = os.path.join(workdir, "bench_row.json")
    if os.path.exists(done):
        return _load(done)
    from spnas.train.run import run

    arch_path = os.path.join(workdir, "arch_input.json")
    os.makedirs(workdir, exist_ok=True)
    write_arch(arch_path, make_arch(space, lookup.choices_from_code(code)))
    c = load_config("cifar10_train.py")
    c.data.dataset = train
    c.schedule.batch_size = preset.rank_batch
    if preset.rank_steps:  # the recipe's schedule compressed into the steps
        c.schedule.steps_per_epoch = preset.rank_steps / c.schedule.epochs
    c.execution.run_eagerly = preset.eager
    if preset.eager:
        c.schedule.bn_recalibration_batches = 2
    log(f"rank check: training {code} ({preset.rank_steps or 'config'} steps)")
    t0 = time.time()
    report = run(c, os.path.join(workdir, "train"), arch=arch_path)
    row = {"code": code, "top1": 100 * float(report["top1"]),
           "steps": int(report["steps"]), "seconds": round(time.time() - t0, 1)}
    atomic_write_json(done, row)
    return row


# --- the report --------------------------------------------------------------------------


def _mean_sd(values):
    values = list(values)
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def baselines(cost: str, budgets, costs, acc) -> list[dict]:
    out = []
    for b in budgets:
        w = lookup.window_stats(costs, acc, b, WINDOW_LO)
        out.append({"cost": cost, "budget": b, "window_mean": w.mean, "window_sd": w.sd,
                    "window_count": w.count,
                    "expected_best": {str(n): lookup.expected_best_of_n(costs, acc, b, n)
                                      for n in BEST_OF}})
    return out


def verdicts(rows: list[dict], base: list[dict]) -> list[dict]:
    """Per budget and cost: the searched (dedicated) nets against the goal: mean
    percentile in the top 10 % and mean accuracy above the expected best of 10."""
    out = []
    for b in base:
        mine = [r for r in rows if r["mode"] == "dedicated" and r["cost"] == b["cost"]
                and abs(r["budget"] - b["budget"]) < 1e-9]
        if not mine:
            continue
        acc_mean, acc_sd = _mean_sd(r["bench_mean_acc"] for r in mine)
        pct_mean, _ = _mean_sd(r["percentile"] for r in mine)
        best10 = b["expected_best"]["10"]
        out.append({"cost": b["cost"], "budget": b["budget"], "seeds": len(mine),
                    "acc_mean": acc_mean, "acc_sd": acc_sd, "percentile_mean": pct_mean,
                    "regret_mean": _mean_sd(r["regret"] for r in mine)[0],
                    "beats_window_mean": acc_mean > b["window_mean"],
                    "beats_best_of_10": acc_mean > best10,
                    "top_10_percent": pct_mean >= 90.0,
                    "goal_met": pct_mean >= 90.0 and acc_mean > best10})
    return out


def search_cost(searches: list[dict]) -> dict:
    if not searches:
        return {}
    images = [s["steps"] * s["batch"] for s in searches]
    fit = searches[0]["train_images"]
    return {"searches": len(searches),
            "wall_seconds_mean": statistics.fmean(s["search_seconds"] for s in searches),
            "steps": searches[0]["steps"], "batch": searches[0]["batch"],
            "images_seen_mean": statistics.fmean(images),
            "paper_epochs_fraction": statistics.fmean(images) / (PAPER_SEARCH_EPOCHS * fit),
            "bench_trainings_equivalent": statistics.fmean(images) / BENCH_TRAINING_IMAGES,
            "note": ("a search sees images_seen images through the supernet (about the cost of "
                     "its largest net); one benchmark training sees 50 x 50,000; the ratio is "
                     "what the same compute buys a random search in the benchmark's trainings")}


def markdown(result: dict) -> str:
    lines = [f"# Single-Path NAS on NAS-Bench-Macro ({result['preset']} preset)", "",
             result["setting"], ""]
    for cost in ("macs", "latency"):
        base = [b for b in result["baselines"] if b["cost"] == cost]
        if not base:
            continue
        unit = result["units"][cost]
        lines += [f"## Budgets on {cost} ({unit})", "",
                  "| budget | searched (mean ± sd, seeds) | percentile | regret | window mean ± sd "
                  "(n) | E[best of 1 / 10 / 50] | spnas random (mean ± sd) | many-budgets decodes |"
                  " goal |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for b in base:
            v = next((x for x in result["verdicts"] if x["cost"] == cost
                      and abs(x["budget"] - b["budget"]) < 1e-9), None)
            rnd = [r["bench_mean_acc"] for r in result["rows"] if r["mode"] == "random"
                   and r["cost"] == cost and abs(r["budget"] - b["budget"]) < 1e-9]
            many = [r["bench_mean_acc"] for r in result["rows"] if r["mode"] == "many_budgets"
                    and r["cost"] == cost and abs(r["budget"] - b["budget"]) < 1e-6]
            rm, rs = _mean_sd(rnd)
            mm, ms = _mean_sd(many)
            e = b["expected_best"]
            searched = "not run yet" if v is None else (
                f"{v['acc_mean']:.2f}" + (f" ± {v['acc_sd']:.2f}" if v["acc_sd"] else "")
                + f" ({v['seeds']})")
            lines.append(
                f"| {b['budget']:.4g} | {searched} | "
                + ("-" if v is None else f"{v['percentile_mean']:.1f}") + " | "
                + ("-" if v is None else f"{v['regret_mean']:.2f}") + " | "
                + f"{b['window_mean']:.2f} ± {b['window_sd']:.2f} ({b['window_count']}) | "
                + f"{e['1']:.2f} / {e['10']:.2f} / {e['50']:.2f} | "
                + ("-" if rm is None else f"{rm:.2f}" + (f" ± {rs:.2f}" if rs else "")) + " | "
                + ("-" if mm is None else f"{mm:.2f}" + (f" ± {ms:.2f}" if ms else "")
                   + f" ({len(many)})") + " | "
                + ("-" if v is None else ("met" if v["goal_met"] else "missed")) + " |")
        lines.append("")
    if result.get("search_cost"):
        sc = result["search_cost"]
        lines += ["## Search cost", "",
                  f"{sc['searches']} searches of {sc['steps']} steps at batch {sc['batch']}: "
                  f"{sc['wall_seconds_mean']:.0f} s each, {sc['images_seen_mean']:,.0f} images "
                  f"seen = {100 * sc['paper_epochs_fraction']:.1f} % of the paper's 8 epochs "
                  f"(of this split) = {sc['bench_trainings_equivalent']:.3f} of one benchmark "
                  "training (50 epochs).", ""]
    rank = result.get("rank_check")
    if rank and rank.get("rows"):
        lines += ["## Rank check of spnas-train's short schedule", "",
                  "| code | benchmark mean acc | spnas top-1 (validation) | steps |", "|---|---|---|---|"]
        for r in rank["rows"]:
            lines.append(f"| {r['code']} | {r['bench_mean_acc']:.2f} | {r['top1']:.2f} | {r['steps']} |")
        if rank.get("kendall_tau") is not None:
            lines += ["", f"Kendall's tau-b: {rank['kendall_tau']:.3f} over {len(rank['rows'])} nets."]
        lines.append("")
    return "\n".join(lines)


def report(out: str, args, preset: Preset, bench: dict, steps: dict, searches: list[dict],
           randoms: list[dict], ranks: list[dict], tabs: dict, budgets: dict,
           code_cost: dict, acc: dict, t_start: float) -> dict:
    from spnas.fileio import atomic_write_json, atomic_write_text

    rows = [row for s in searches for row in search_rows(s, code_cost[s["cost"]], acc,
                                                        tabs[s["cost"]])] + randoms
    base = [b for cost in budgets for b in baselines(cost, budgets[cost], code_cost[cost], acc)]
    rank = {"rows": [{**r, "bench_mean_acc": bench[r["code"]]["mean_acc"]} for r in ranks]}
    if len(ranks) >= 2:
        rank["kendall_tau"] = lookup.kendall_tau([r["top1"] for r in ranks],
                                                 [bench[r["code"]]["mean_acc"] for r in ranks])
    result = {
        "format": FORMAT, "preset": args.preset, "settings": dataclasses.asdict(preset),
        "setting": (f"Data: {args.train} (the search's own 10 % validation split). Space: "
                    "NAS-Bench-Macro's (configs/nasbench_macro.py). Searches: "
                    f"{steps['steps'] or 'the config'} steps at batch {preset.search_batch}, "
                    "target mode; accuracies are the benchmark's mean over its 3 trainings "
                    "(CIFAR-10 test set, 50 epochs)."),
        "units": {cost: tabs[cost].unit for cost in tabs},
        "step_time": steps, "rows": rows, "baselines": base,
        "verdicts": verdicts(rows, base),
        "search_cost": search_cost(searches), "rank_check": rank,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_minutes_this_run": round((time.time() - t_start) / 60, 1),
        "load_average": os.getloadavg(),
    }
    atomic_write_json(os.path.join(out, "nasbench_macro.json"), result)
    atomic_write_text(os.path.join(out, "nasbench_macro.md"), markdown(result) + "\n")
    plot_rows = [r for r in rows if r["cost"] == "macs"]
    lookup.plot(os.path.join(out, "nasbench_macro.png"), code_cost["macs"], acc, plot_rows,
                budgets["macs"], "MACs (millions, the benchmark's FLOPs)",
                title="spnas searches on NAS-Bench-Macro (MACs budgets)")
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    preset = PRESETS[args.preset]
    from spnas.fileio import check_writable_dir

    out = check_writable_dir(args.out)
    check_out(out, args, preset)
    t_start = time.time()
    bench = lookup.load_bench(args.bench)  # the report's ground truth; no search reads it
    acc = {code: v["mean_acc"] for code, v in bench.items()}
    space, tabs = tables()
    code_cost = {cost: code_costs(t, bench) for cost, t in tabs.items()}
    budgets = {cost: [round(b, 4) for b in lookup.budgets_at(code_cost[cost], FRACTIONS)]
               for cost in tabs}
    stages = [s for s in args.stages.split(",") if s]
    searches, randoms, ranks = [], [], []
    steps = {"steps": preset.search_steps}

    def write():
        return report(out, args, preset, bench, steps, searches, randoms, ranks, tabs, budgets,
                      code_cost, acc, t_start)

    if "macs" in stages or "latency" in stages or os.path.exists(
            os.path.join(out, "step_time.json")):
        steps = search_steps(preset, args.train, out)
    # The middle budgets first (the MACs one also decodes the others), so that a partial
    # run already answers for both costs; then the other budgets, then more seeds.
    middle = len(FRACTIONS) // 2
    order = [(seed, cost, i) for seed in range(max(preset.seeds, preset.latency_seeds))
             for i in [middle] + [j for j in range(len(FRACTIONS)) if j != middle]
             for cost in ("macs", "latency")
             if seed < (preset.seeds if cost == "macs" else preset.latency_seeds)]
    for seed, cost, i in order:  # a stage left out still reports its finished searches
        b = budgets[cost][i]
        many = tuple(budgets[cost]) if (cost == "macs" and i == middle) else ()
        found = run_search(preset, args.train, cost, b, seed, steps["steps"], out,
                           targets=many, start=cost in stages)
        if found is not None:
            searches.append(found)
            write()
    if "random" in stages:
        for cost in tabs:
            randoms += random_rows(preset, space, cost, tabs[cost], budgets[cost],
                                   code_cost[cost], acc, out)
        write()
    if "rank" in stages:
        for code in rank_codes(bench, preset.rank_nets):
            ranks.append(rank_train(preset, args.train, code, space, out))
            write()
    result = write()
    print(markdown(result))
    log(f"wrote {out}/nasbench_macro.json, .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
