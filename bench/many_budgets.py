"""What one search decoded at many budgets is worth against a search per budget.

``config.targets`` (spnas/search/budgets.py) decodes one net per latency budget
from the supernet of one search, by a global shift of the indicators' margins,
as Once-for-All serves many targets from one training. This asks what those nets
are worth away from the searched target T0:

1. One search at T0 (latency-target mode) with ``--config.targets`` at K budgets:
   arch_<T>ms.json per budget.
2. One dedicated search per budget (target_ms = T), same config and seed.
3. Every net trained with the same recipe and seed (``spnas-train``'s library
   ``run``, as bench/table1.py does), and the T0 net too; validation top-1 of the
   EMA weights, BN statistics recomputed (the trainer's own evaluation).

Output: ``--results`` (JSON) and the same name with ``.md`` (a table per
budget: predicted latency, supernet accuracy, trained top-1 of the decoded and
of the dedicated net, and the search time each way). Every step leaves its
files in ``--out``; a rerun skips what is there (a killed run loses at most the
search or training it was in, which resumes from its checkpoint).

    python bench/many_budgets.py --preset=digits      # the embedded digits, ~50 min on 2 cores
    python bench/many_budgets.py --preset=digits --train_seeds=0,1   # + every net trained again
    python bench/many_budgets.py --preset=cifar10 --train=folder:/data/cifar10 --rerun_dedicated
    python bench/many_budgets.py --preset=tiny --out=/tmp/mb_tiny   # plumbing, ~3 min

Presets:

* ``digits`` (default): configs/default.py (the embedded digits, the paper's
  22-layer space at width 0.5, 200-step searches) at T0 = 0.32 ms (its default)
  and budgets at 20/35/65/80 % of the table's range (0.094-0.540 ms on
  ``embedded_cpu``); configs/train_default.py training (303 steps). 5 searches
  and 9 trainings of 3-4 min each. Results in bench/results/many_budgets_cpu.json.
* ``cifar10``: Table 1's CIFAR-10 CPU setting (bench/table1.py --preset=cpu, an image
  folder given by ``--train=folder:DIR``): its middle target is T0, its other targets the
  budgets, its held-out split the test set; the dedicated nets are Table 1's own, or with
  ``--rerun_dedicated`` searched and trained here with this code. Results in
  bench/results/many_budgets_cifar10_cpu.json (or ``--results``).
* ``tiny``: the 6-layer smoke space, 8-step searches, 3-step eager training.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import statistics
import sys
import time
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@dataclasses.dataclass(frozen=True)
class Preset:
    search_config: str
    train_config: str
    t0_fraction: float | None  # T0 as a fraction of the range (None: the config's target_ms)
    fractions: tuple[float, ...]  # the budgets, as fractions of the table's range
    train_steps: int = 0  # 0: the config's schedule
    eager: bool = False
    results: str = ""  # default --results ("" : OUT/many_budgets_<preset>.json)


PRESETS = {
    "digits": Preset("default.py", "train_default.py", None, (0.2, 0.35, 0.65, 0.8),
                     results=str(REPO / "bench" / "results" / "many_budgets_cpu.json")),
    "tiny": Preset("smoke.py", "train_default.py", 0.5, (0.25, 0.75), train_steps=3, eager=True),
    # Table 1's CIFAR-10 CPU setting (bench/table1.py --preset=cpu); T0 and the budgets are
    # Table 1's targets, whose dedicated searches and trained nets are its results.
    "cifar10": Preset("cifar10.py", "cifar10_train.py", None, (),
                      results=str(REPO / "bench" / "results" / "many_budgets_cifar10_cpu.json")),
}
TABLE1 = REPO / "bench" / "results" / "table1_cpu.json"
TABLE1_ARCHS = REPO / "bench" / "results" / "table1_cpu_archs"


def log(msg: str) -> None:
    print(f"[many_budgets {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="digits")
    p.add_argument("--out", default="", help="work (and resume) directory "
                   "(default: /tmp/spnas_many_budgets_<preset>)")
    p.add_argument("--results", default="", help="results JSON (a .md beside it)")
    p.add_argument("--seed", type=int, default=0, help="seed of every search and training")
    p.add_argument("--train_seeds", default="", help="comma-separated training seeds (default: "
                   "--seed): every net is trained once per seed; top-1 is their mean")
    p.add_argument("--train", default="", help="cifar10 preset: folder:PATH of the CIFAR-10 "
                   "training images (PATH/train/<class>/*.jpg), as given to bench/table1.py")
    p.add_argument("--table1", default=str(TABLE1), help="cifar10 preset: the Table 1 results "
                   "whose searches are the dedicated ones (their archs in ../table1_cpu_archs)")
    p.add_argument("--rerun_dedicated", action="store_true", help="cifar10 preset: search and "
                   "train the dedicated nets here instead of taking Table 1's")
    args = p.parse_args(argv)
    if args.preset == "cifar10" and not args.train:
        p.error("--preset=cifar10 needs --train=folder:PATH (the CIFAR-10 training images)")
    try:
        seeds = [int(x) for x in args.train_seeds.split(",") if x.strip()] or [args.seed]
    except ValueError:
        p.error(f"--train_seeds={args.train_seeds!r}: give integers, e.g. 0,1")
    if len(set(seeds)) != len(seeds):
        p.error(f"--train_seeds={args.train_seeds!r} repeats a seed")
    args.train_seeds = seeds
    return args


def _load(path: str):
    from spnas.fileio import read_json

    return read_json(path, SystemExit, "many_budgets: bench file")


def search_config(preset: Preset, target_ms: float, targets: tuple[float, ...], seed: int):
    from spnas.configs_path import load_config

    c = load_config(preset.search_config)
    c.seed = seed
    c.target_ms = float(target_ms)
    c.targets = ",".join(f"{t:g}" for t in targets)
    c.execution.run_eagerly = preset.eager
    return c


def train_config(preset: Preset, seed: int):
    from spnas.configs_path import load_config

    c = load_config(preset.train_config)
    c.seed = seed
    if preset.train_steps:  # the whole schedule compressed into the steps
        c.schedule.steps_per_epoch = preset.train_steps / c.schedule.epochs
        c.schedule.bn_recalibration_batches = 2
    c.execution.run_eagerly = preset.eager
    return c


def budgets_of(preset: Preset, seed: int) -> tuple[float, list[float], tuple[float, float]]:
    """T0, the budgets (4 significant digits) and the table's reachable range."""
    from spnas.search.run import load_search_table, space_from_config

    c = search_config(preset, 0.0, (), seed)
    space = space_from_config(c, 10)
    lo, hi = load_search_table(c, space).range_ms()
    t0 = (_default_target(preset) if preset.t0_fraction is None
          else round(lo + preset.t0_fraction * (hi - lo), 4))
    return t0, [round(lo + f * (hi - lo), 4) for f in preset.fractions], (lo, hi)


def _default_target(preset: Preset) -> float:
    from spnas.configs_path import load_config

    return float(load_config(preset.search_config).target_ms)


def run_search(preset: Preset, target: float, targets: tuple[float, ...], seed: int,
               workdir: str) -> dict:
    """One search (reused when its bench record is there); its arch.json's summary."""
    from spnas.fileio import atomic_write_json

    done = os.path.join(workdir, "bench_search.json")
    if os.path.exists(done):
        return _load(done)
    from spnas.search.run import run

    log(f"search at {target:g} ms" + (f" with budgets {targets}" if targets else "")
        + f" in {workdir}")
    t0 = time.time()
    arch = run(search_config(preset, target, targets, seed), workdir)
    result = {"target_ms": target, "arch": arch.path, "predicted_ms": arch["predicted_ms"],
              "within_tolerance": arch["target"]["within_tolerance"],
              "supernet_val_top1": 100 * arch["search"]["supernet_val_accuracy_ema"],
              "search_seconds": round(time.time() - t0, 1)}
    atomic_write_json(done, result)
    return result


def train_net(preset: Preset, arch_path: str, seed: int, workdir: str) -> dict:
    """Trains one net (reused when its bench record is there); its validation top-1."""
    from spnas.fileio import atomic_write_json

    done = os.path.join(workdir, "bench_row.json")
    if os.path.exists(done):
        return _load(done)
    from spnas.arch.handoff import load_arch
    from spnas.train.run import run

    log(f"training {arch_path} in {workdir}")
    t0 = time.time()
    report = run(train_config(preset, seed), workdir, arch=load_arch(arch_path))
    row = {"arch": arch_path, "top1": 100 * float(report["top1"]),
           "eval_images": report["eval_images"], "params": int(report["params"]),
           "steps": report["steps"], "train_seconds": round(time.time() - t0, 1)}
    atomic_write_json(done, row)
    return row


def check_out(out: str, preset_name: str, seed: int) -> None:
    """``OUT/bench.json`` names the preset and search seed of the records in ``out``; a
    rerun with others is refused (it would reuse searches made with another seed)."""
    from spnas.fileio import atomic_write_json

    path = os.path.join(out, "bench.json")
    mine = {"preset": preset_name, "seed": seed}
    if os.path.exists(path):
        theirs = _load(path)
        if theirs != mine:
            raise SystemExit(f"many_budgets: {out} holds the runs of {theirs}, not {mine}; "
                             "give another --out.")
        return
    os.makedirs(out, exist_ok=True)
    atomic_write_json(path, mine)


def trained(preset: Preset, arch_path: str, seed: int, seeds: Sequence[int], workdir: str) -> dict:
    """The net trained once per seed of ``seeds`` (with the search seed ``seed`` in
    ``workdir``, any other beside it with ``_trainseed<k>``); ``top1`` is the mean,
    ``top1_by_seed`` each."""
    rows = [train_net(preset, arch_path, k, workdir if k == seed else f"{workdir}_trainseed{k}")
            for k in seeds]
    return over_seeds(seeds, rows)


def over_seeds(seeds: Sequence[int], rows: Sequence[dict]) -> dict:
    """One net's training rows, one per seed, as one row: the first's fields, ``top1``
    their mean, ``top1_by_seed`` each, ``train_seconds`` their sum."""
    out = dict(rows[0])
    out["top1_by_seed"] = {str(k): r["top1"] for k, r in zip(seeds, rows)}
    out["top1"] = statistics.fmean(r["top1"] for r in rows)
    out["train_seconds"] = round(sum(r["train_seconds"] for r in rows), 1)
    return out


def seed_spread(nets: Sequence[dict]) -> dict:
    """How much one net's top-1 moves with the training seed alone, over the nets trained
    here (those with ``top1_by_seed``; 0 with one seed): the summary's two fields."""
    spreads = [max(n["top1_by_seed"].values()) - min(n["top1_by_seed"].values())
               for n in nets if "top1_by_seed" in n]
    return {"train_seed_spread_mean": statistics.fmean(spreads),
            "train_seed_spread_max": max(spreads)}


def collect(preset_name: str, out: str, seed: int, train_seeds: Sequence[int] = ()) -> dict:
    from spnas.fileio import read_json
    from spnas.search.budgets import BUDGETS_JSON, arch_filename

    train_seeds = list(train_seeds) or [seed]
    check_out(out, preset_name, seed)
    preset = PRESETS[preset_name]
    t0, targets, (lo, hi) = budgets_of(preset, seed)
    log(f"T0 = {t0:g} ms, budgets {targets} (reachable {lo:.3f}-{hi:.3f} ms)")
    main_dir = os.path.join(out, f"search_T0_{t0:g}ms")
    main = run_search(preset, t0, tuple(targets), seed, main_dir)
    table = read_json(os.path.join(main_dir, BUDGETS_JSON), SystemExit, "many_budgets: budgets")
    supernet = {r["file"]: r for r in table["budgets"]}
    main_train = trained(preset, main["arch"], seed, train_seeds,
                         os.path.join(out, "train", f"T0_{t0:g}ms"))
    rows = []
    for t in targets:
        decoded_arch = os.path.join(main_dir, arch_filename(t))
        dedicated = run_search(preset, t, (), seed, os.path.join(out, f"search_dedicated_{t:g}ms"))
        s = supernet[arch_filename(t)]
        rows.append({
            "budget_ms": t,
            "decoded": {"arch": decoded_arch, "predicted_ms": s["predicted_ms"],
                        "within_tolerance": s["within_tolerance"], "shift": s["shift"],
                        "layers": s["layers"],
                        "supernet_val_top1": 100 * s["supernet_val_accuracy_ema"],
                        **trained(preset, decoded_arch, seed, train_seeds,
                                  os.path.join(out, "train", f"decoded_{t:g}ms"))},
            "dedicated": {**dedicated, "layers": _load(dedicated["arch"])["layers"],
                          **trained(preset, dedicated["arch"], seed, train_seeds,
                                    os.path.join(out, "train", f"dedicated_{t:g}ms"))},
        })
    for r in rows:
        r["delta_top1"] = r["decoded"]["top1"] - r["dedicated"]["top1"]
        r["same_net"] = r["decoded"]["layers"] == r["dedicated"]["layers"]
    deltas = [r["delta_top1"] for r in rows]
    nets = [main_train] + [r[k] for r in rows for k in ("decoded", "dedicated")]
    return {
        "preset": preset_name, "seed": seed, "train_seeds": train_seeds, "t0_ms": t0,
        "range_ms": [lo, hi],
        "table": table["latency_table"].get("device"),
        "t0": {**main, **main_train},
        "budgets": rows,
        "summary": {
            "mean_delta_top1": statistics.fmean(deltas),
            "decoded_better_or_equal": sum(d >= 0 for d in deltas), "budgets": len(deltas),
            "one_search_seconds": main["search_seconds"],
            "dedicated_searches_seconds": sum(r["dedicated"]["search_seconds"] for r in rows),
            **seed_spread(nets),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def collect_table1(out: str, seed: int, train: str, table1_json: str,
                   rerun_dedicated: bool = False, train_seeds: Sequence[int] = ()) -> dict:
    """The cifar10 preset: one search at Table 1's middle target decoded at its other
    targets, the decoded nets trained and tested as Table 1 trains and tests (its
    held-out split, recipe and seed: bench/table1.py), against Table 1's own dedicated
    searches at those targets. The search at T0 is Table 1's (same config and seed) and
    the T0 net is trained again: both must reproduce Table 1 for the comparison to hold,
    and the result says whether they did. With ``train_seeds`` every net trained here is
    trained once per seed (top-1 their mean); Table 1's own nets have its one seed."""
    from bench import table1
    from spnas.fileio import read_json
    from spnas.search.budgets import BUDGETS_JSON, arch_filename
    from spnas.search.run import run

    train_seeds = list(train_seeds) or [seed]
    check_out(out, "cifar10", seed)
    ref = read_json(table1_json, SystemExit, "many_budgets: --table1")
    t1 = table1.PRESETS[ref["preset"]]
    data = table1.prepare_data(argparse.Namespace(train=train, test=""), out)
    _, table = table1.space_and_table(t1, data["fit"])
    targets = [t["target_ms"] for t in ref["targets"]]
    t0 = targets[len(targets) // 2]
    budgets = [t for t in targets if t != t0]
    log(f"T0 = {t0:g} ms (Table 1's middle target), budgets {budgets}")
    main_dir = os.path.join(out, f"search_T0_{t0:g}ms")
    done = os.path.join(main_dir, "bench_search.json")
    if os.path.exists(done):
        main = _load(done)
    else:
        from spnas.fileio import atomic_write_json

        log(f"search at {t0:g} ms with budgets {budgets} in {main_dir}")
        config = table1.search_config(t1, data["fit"], t0, "fan_in", seed)
        config.targets = ",".join(f"{t:g}" for t in budgets)
        start = time.time()
        arch = run(config, main_dir)
        main = {"target_ms": t0, "arch": arch.path, "predicted_ms": arch["predicted_ms"],
                "within_tolerance": arch["target"]["within_tolerance"], "layers": arch["layers"],
                "supernet_val_top1": 100 * arch["search"]["supernet_val_accuracy_ema"],
                "search_seconds": round(time.time() - start, 1)}
        atomic_write_json(done, main)
    supernet = {r["file"]: r for r in
                read_json(os.path.join(main_dir, BUDGETS_JSON), SystemExit, "budgets")["budgets"]}

    def reference(t: float) -> dict:
        entry = next(x for x in ref["targets"] if x["target_ms"] == t)
        row = next(r for r in entry["rows"] if r["family"] == "searched")
        layers = _load(str(TABLE1_ARCHS / f"searched_t{t:g}.json"))["layers"]
        return {"predicted_ms": row["predicted_ms"], "top1": row["top1"], "layers": layers,
                "search_seconds": entry["search_seconds"], "from": "bench/results/table1_cpu.json"}

    def trained_net(arch_path: str, key: str, predicted_ms: float) -> dict:
        net = {"family": "searched", "name": key, "key": key, "arch": arch_path,
               "predicted_ms": predicted_ms}
        runs = [table1.train_net(t1, data, net, k, out) for k in train_seeds]
        row = over_seeds(train_seeds, runs)
        return {k: row[k] for k in ("top1", "top1_by_seed", "test_images", "val_top1", "params",
                                    "steps", "train_seconds")}

    def dedicated(t: float) -> dict:
        if not rerun_dedicated:
            return reference(t)
        found = table1.run_search(t1, data["fit"], t, "fan_in",
                                  os.path.join(out, f"search_dedicated_{t:g}ms"))
        return {"predicted_ms": found["predicted_ms"], "layers": found["choices"],
                "search_seconds": found["search_seconds"], "from": "rerun here",
                **trained_net(found["arch"], f"dedicated_{t:g}ms", found["predicted_ms"])}

    t0_ref = reference(t0)
    main_train = trained_net(main["arch"], f"T0_{t0:g}ms", main["predicted_ms"])
    rows = []
    for t in budgets:
        s = supernet[arch_filename(t)]
        decoded_arch = os.path.join(main_dir, arch_filename(t))
        rows.append({"budget_ms": t,
                     "decoded": {"arch": decoded_arch, "predicted_ms": s["predicted_ms"],
                                 "within_tolerance": s["within_tolerance"], "shift": s["shift"],
                                 "layers": s["layers"],
                                 "supernet_val_top1": 100 * s["supernet_val_accuracy_ema"],
                                 **trained_net(decoded_arch, f"decoded_{t:g}ms", s["predicted_ms"])},
                     "dedicated": dedicated(t)})
    for r in rows:
        r["delta_top1"] = r["decoded"]["top1"] - r["dedicated"]["top1"]
        r["same_net"] = r["decoded"]["layers"] == r["dedicated"]["layers"]
    deltas = [r["delta_top1"] for r in rows]
    nets = [main_train] + [r[k] for r in rows for k in ("decoded", "dedicated")]
    return {
        "preset": "cifar10", "seed": seed, "train_seeds": train_seeds, "t0_ms": t0,
        "range_ms": list(table.range_ms()), "table": table.device,
        "eval": f"the {main_train['test_images']} test images Table 1 holds out",
        "t0": {**main, **main_train},
        "reproduces_table1": {
            "search_same_net": main["layers"] == t0_ref["layers"],
            "t0_top1": main_train["top1"], "table1_t0_top1": t0_ref["top1"]},
        "budgets": rows,
        "summary": {
            "mean_delta_top1": statistics.fmean(deltas),
            "decoded_better_or_equal": sum(d >= 0 for d in deltas), "budgets": len(deltas),
            "one_search_seconds": main["search_seconds"],
            "dedicated_searches_seconds": sum(r["dedicated"]["search_seconds"] for r in rows),
            **seed_spread(nets),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _top1(row: dict) -> str:
    by_seed = row.get("top1_by_seed") or {}
    extra = f" ({' / '.join(f'{v:.2f}' for v in by_seed.values())})" if len(by_seed) > 1 else ""
    return f"{row['top1']:.2f}{extra}"


def markdown(result: dict) -> str:
    s = result["summary"]
    lines = [f"# One search, many budgets (preset `{result['preset']}`, seed {result['seed']})", "",
             f"One search at T0 = {result['t0_ms']:g} ms decoded at each budget "
             f"(`--config.targets`), against a dedicated search per budget; every net trained "
             f"with the same recipe and seed. Top-1: "
             + result.get("eval", f"validation split ({result['t0'].get('eval_images')} images)")
             + ", EMA weights, BN statistics recomputed. "
             f"Table `{result['table']}` (reachable {result['range_ms'][0]:.3f}-"
             f"{result['range_ms'][1]:.3f} ms).", "",
             "| Budget ms | Decoded: predicted ms | shift | supernet top-1 | trained top-1 "
             "| Dedicated: predicted ms | trained top-1 | Δ top-1 (decoded − dedicated) | same net |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["budgets"]:
        d, e = r["decoded"], r["dedicated"]
        flag = "" if d["within_tolerance"] else " (outside tol.)"
        lines.append(f"| {r['budget_ms']:g} | {d['predicted_ms']:.4f}{flag} | {d['shift']:+.3f} | "
                     f"{d['supernet_val_top1']:.1f} | {_top1(d)} | {e['predicted_ms']:.4f} | "
                     f"{_top1(e)} | {r['delta_top1']:+.2f} | {'yes' if r['same_net'] else 'no'} |")
    t0 = result["t0"]
    seeds = result.get("train_seeds") or [result["seed"]]
    lines += [f"| T0 {result['t0_ms']:g} (arch.json) | {t0['predicted_ms']:.4f} | | "
              f"{t0['supernet_val_top1']:.1f} (unforced) | {_top1(t0)} | | | | |", "",
              f"Trained top-1: mean over training seeds {', '.join(map(str, seeds))}"
              + (f" (each in brackets); one net's top-1 moved by {s['train_seed_spread_mean']:.2f} "
                 f"points on average (at most {s['train_seed_spread_max']:.2f}) with the training "
                 f"seed alone." if len(seeds) > 1 else "; one training seed, so no noise estimate."),
              "",
              *([] if "reproduces_table1" not in result else [
                  "The search at T0 " + ("decoded the same net as" if
                                         result["reproduces_table1"]["search_same_net"]
                                         else "decoded ANOTHER net than")
                  + f" Table 1's search at that target; the T0 net trained to "
                  f"{result['reproduces_table1']['t0_top1']:.2f} % here and "
                  f"{result['reproduces_table1']['table1_t0_top1']:.2f} % in Table 1.", ""]),
              f"Decoded nets: mean Δ top-1 {s['mean_delta_top1']:+.2f} points; "
              f"{s['decoded_better_or_equal']} of {s['budgets']} at least as good as the "
              f"dedicated search's. Search time: one search {s['one_search_seconds'] / 60:.1f} min "
              f"(decoding and evaluating every budget included) against "
              f"{s['dedicated_searches_seconds'] / 60:.1f} min for the dedicated searches.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    from spnas.fileio import atomic_write_json, atomic_write_text

    out = os.path.abspath(args.out or f"/tmp/spnas_many_budgets_{args.preset}")
    results = args.results or PRESETS[args.preset].results or os.path.join(
        out, f"many_budgets_{args.preset}.json")
    if args.preset == "cifar10":
        result = collect_table1(out, args.seed, args.train, args.table1, args.rerun_dedicated,
                                args.train_seeds)
    else:
        result = collect(args.preset, out, args.seed, args.train_seeds)
    atomic_write_json(results, result)
    md = markdown(result)
    atomic_write_text(os.path.splitext(results)[0] + ".md", md)
    print(md)
    log(f"results: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
