"""Table 1 on real data: the searched net vs random nets vs MobileNetV2 / MnasNet at equal latency.

The paper's Table 1 (Stamoulis et al., 2019) compares, at ~75-80 ms on a Pixel 1,
the searched net (74.96 % top-1) with ten random nets of the space whose predicted
latency lies in 75-80 ms (73.78 +- 0.85 %) and with hand-designed nets
(MobileNetV2 72.0 %); its Fig. 8 shows the searched net ahead at every width.
This script asks the same question on a folder of images (CIFAR-10 in
``configs/cifar10.py``'s setting) and on this host:

1. The data: ``--train=folder:PATH``; the test set is ``--test=folder:PATH`` or,
   by default, 10 % of each class of the training folder held out (seeded) into
   ``OUT/data/heldout`` and never seen by a search or a training run (symlinks;
   the rest is ``OUT/data/fit``, whose own 10 % is the runs' validation split).
2. K latency targets spread over the space's predicted range (its 25/50/75 %
   points for K = 3). One search per target in latency-target mode
   (``configs/cifar10.py``), and at the middle target a second search with the
   release's fan-out superkernel init (does the init change what is picked?).
3. Random search as Table 1: ``random_n`` nets sampled uniformly from the space
   whose predicted latency is in ``[0.94 t, t]`` (75-80 ms is 0.94-1 of 80).
4. MobileNetV2 and MnasNet-B1 with the space's downsampling (registry
   ``mobilenetv2_cifar``, ``mnasnet_b1_cifar``) at the width, among ``widths``,
   whose measured float TFLite latency is nearest the searched net's.
5. Every net trained with the same recipe (``configs/cifar10_train.py``) and
   seeds, evaluated on the test set (EMA weights, BN statistics recomputed),
   and all timed on this host interleaved (LiteRT, float, 1 thread, batch 1;
   minimum over interleaved rounds, the statistic of the shipped tables).

Output in ``--out``: ``table1.json`` (format below), ``table1.md`` (one Table
1-style table per target and the verdicts), ``table1.png`` (Fig. 8 style: top-1
vs measured latency per family, the baselines' width curves, the Pareto front).
Every stage leaves files in ``OUT/`` and a rerun reuses them: a killed run
loses at most the net it was training (and resumes that one from its last
checkpoint).

    python bench/table1.py --preset=cpu --train=folder:/data/cifar10 --out=runs/table1
    python bench/table1.py --preset=full --train=folder:/data/cifar10 --out=runs/table1_full

Presets (the ``cpu`` one cuts the schedule by ~100x and the seeds and random
nets; its verdicts are about short training, not about the method at full length):

* ``cpu``: 3 targets; searches of 480 steps at batch 64 (8 "epochs" of 60 steps, the
  first 5 the lambda = 0 warm-up); 2 random nets per target; training 1,000
  steps at batch 64 (1.4 passes over the 40,500 images) with the recipe's
  schedule compressed into them; 1 seed; widths 0.35-1.0. About 1.5-2 h on 2 CPU cores.
* ``full``: 3 targets; 8-epoch searches at batch 128; 10 random nets; 100-epoch
  training at batch 128; 3 seeds; widths 0.35-1.4. For an accelerator: about
  (3 + 30 + <= 6) x 3 = <= 117 trainings of 35,200 steps plus 3 + 1 searches of
  2,800 steps (README, "Table 1").
* ``tiny``: seconds-scale plumbing check (the 6-layer smoke space, eager steps).

``table1.json``: ``{"preset", "targets": [{"target_ms", "rows": [{"family":
"searched"|"random"|"mobilenetv2"|"mnasnet", "name", "seed", "top1" (percent),
"predicted_ms" (null for the baselines), "measured_ms", "params", ...}], "verdict"}],
"init_check", ...}``.
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
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FAMILIES = ("searched", "random", "mobilenetv2", "mnasnet")
BASELINES = {"mobilenetv2": "mobilenetv2_cifar", "mnasnet": "mnasnet_b1_cifar"}
HELDOUT_FRACTION = 0.1
SPLIT_SEED = 20190402  # the held-out test split; fixed so that every run shares it
WINDOW_LO = 0.94  # random nets: predicted latency in [0.94 t, t] (Table 1: 75-80 ms)


@dataclasses.dataclass(frozen=True)
class Preset:
    search_config: str
    train_config: str
    targets: int
    seeds: int
    random_n: int
    search_batch: int
    search_steps: int  # 0: the config's epochs over the whole training split
    train_batch: int
    train_steps: int  # 0: the config's epochs
    train_epochs: float
    widths: tuple[float, ...]
    init_check: bool
    eager: bool = False
    latency_repeats: int = 1000
    jit_compile: bool = False


PRESETS = {
    "cpu": Preset("cifar10.py", "cifar10_train.py", targets=3, seeds=1, random_n=2,
                  search_batch=64, search_steps=480, train_batch=64, train_steps=1000,
                  train_epochs=100.0, widths=(0.35, 0.5, 0.75, 1.0), init_check=True),
    "full": Preset("cifar10.py", "cifar10_train.py", targets=3, seeds=3, random_n=10,
                   search_batch=128, search_steps=0, train_batch=128, train_steps=0,
                   train_epochs=100.0,
                   widths=(0.35, 0.45, 0.5, 0.6, 0.75, 0.9, 1.0, 1.25, 1.4), init_check=True),
    "tiny": Preset("smoke.py", "cifar10_train.py", targets=1, seeds=1, random_n=1,
                   search_batch=8, search_steps=8, train_batch=8, train_steps=3,
                   train_epochs=100.0, widths=(0.35,), init_check=True, eager=True,
                   latency_repeats=20),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--train", required=True, help="folder:PATH with PATH/train/<class>/*.jpg")
    p.add_argument("--test", default="",
                   help="folder:PATH of the test images (default: a held-out split of --train)")
    p.add_argument("--out", required=True, help="output (and resume) directory")
    p.add_argument("--targets", default="",
                   help="comma-separated targets in ms (default: K spread over the space's range)")
    p.add_argument("--seeds", type=int, default=0, help="override the preset's seeds")
    p.add_argument("--random_n", type=int, default=0, help="override the preset's random nets")
    p.add_argument("--jit_compile", action="store_true",
                   help="XLA for every search and training step (GPU/TPU; slower on a CPU)")
    return p.parse_args(argv)


def _load(path: str):
    """A JSON file an earlier stage wrote; a damaged one ends the run with one line."""
    from spnas.fileio import read_json

    return read_json(path, SystemExit, "table1: bench file")


def log(msg: str) -> None:
    print(f"[table1 {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _folder_root(spec: str, flag: str) -> str:
    if not spec.startswith("folder:"):
        raise SystemExit(f"table1: {flag} must be folder:PATH, got {spec!r}")
    root = os.path.abspath(os.path.expanduser(spec[len("folder:"):]))
    if not os.path.isdir(os.path.join(root, "train")):
        raise SystemExit(f"table1: {flag} {root} has no train/<class>/ folders")
    return root


# --- data --------------------------------------------------------------------------------


def prepare_data(args, out: str) -> dict:
    """The fit and test folders; without --test, a held-out split made of symlinks."""
    root = _folder_root(args.train, "--train")
    if args.test:
        test_root = _folder_root(args.test, "--test")
        return {"fit": f"folder:{root}", "test": f"folder:{test_root}", "split": None}
    from spnas.data import list_class_images
    from spnas.data.splits import stratified_split
    from spnas.fileio import atomic_write_json

    data_dir = os.path.join(out, "data")
    record = os.path.join(data_dir, "split.json")
    if os.path.exists(record):
        split = _load(record)
        if split.get("source") == root:
            return {"fit": f"folder:{data_dir}/fit", "test": f"folder:{data_dir}/heldout",
                    "split": split}
        raise SystemExit(f"table1: {data_dir} holds a split of {split.get('source')}, not {root}; "
                         "use another --out")
    listing = list_class_images(os.path.join(root, "train"))
    classes = list(listing)
    files, labels = [], []
    for label, name in enumerate(classes):
        found = listing[name]
        files += found
        labels += [label] * len(found)
    fit_idx, test_idx = stratified_split(labels, HELDOUT_FRACTION, SPLIT_SEED, classes)
    for part, idx in (("fit", fit_idx), ("heldout", test_idx)):
        for i in idx:
            cls = classes[labels[i]]
            dest = os.path.join(data_dir, part, "train", cls)
            os.makedirs(dest, exist_ok=True)
            link = os.path.join(dest, os.path.basename(files[i]))
            if not os.path.lexists(link):
                os.symlink(files[i], link)
    split = {"source": root, "seed": SPLIT_SEED, "fraction": HELDOUT_FRACTION,
             "fit_images": int(len(fit_idx)), "test_images": int(len(test_idx)),
             "classes": classes}
    atomic_write_json(record, split)  # written last: its presence means the split is whole
    log(f"held out {len(test_idx)} of {len(files)} images as the test set ({data_dir}/heldout)")
    return {"fit": f"folder:{data_dir}/fit", "test": f"folder:{data_dir}/heldout", "split": split}


# --- configs -----------------------------------------------------------------------------


def search_config(preset: Preset, dataset: str, target_ms: float, init: str, seed: int = 0):
    from spnas.configs_path import load_config

    c = load_config(preset.search_config)
    c.data.dataset = dataset
    c.data.augment = "cifar"
    c.seed = seed
    c.schedule.batch_size = preset.search_batch
    if preset.search_steps:  # the paper's 8 epochs (5 of warm-up) compressed into the steps
        c.schedule.steps_per_epoch = preset.search_steps / c.schedule.epochs
    c.target_ms = float(target_ms)
    c.superkernel_init = init
    c.execution.run_eagerly = preset.eager
    c.execution.jit_compile = preset.jit_compile
    return c


def train_config(preset: Preset, dataset: str, seed: int):
    from spnas.configs_path import load_config

    c = load_config(preset.train_config)
    c.data.dataset = dataset
    c.seed = seed
    c.schedule.batch_size = preset.train_batch
    c.schedule.epochs = preset.train_epochs
    if preset.train_steps:  # the whole schedule (warm-up, decay) compressed into the steps
        c.schedule.steps_per_epoch = preset.train_steps / preset.train_epochs
    c.execution.run_eagerly = preset.eager
    c.execution.jit_compile = preset.jit_compile
    if preset.eager:
        c.schedule.bn_recalibration_batches = 2
    return c


# --- searches, random nets, baselines ----------------------------------------------------


def space_and_table(preset: Preset, dataset: str):
    from spnas.search.run import load_search_table, space_from_config

    c = search_config(preset, dataset, 0.0, "fan_in")
    space = space_from_config(c, 10)
    return space, load_search_table(c, space)


def default_targets(table, k: int) -> list[float]:
    lo, hi = table.range_ms()
    return [round(lo + (hi - lo) * (i + 1) / (k + 1), 4) for i in range(k)]


def run_search(preset: Preset, dataset: str, target: float, init: str, workdir: str) -> dict:
    from spnas.fileio import atomic_write_json

    done = os.path.join(workdir, "bench_search.json")
    if os.path.exists(done):
        return _load(done)
    from spnas.search.run import run

    log(f"search for {target:g} ms ({init} init) in {workdir}")
    t0 = time.time()
    arch = run(search_config(preset, dataset, target, init), workdir)
    result = {"target_ms": target, "init": init, "arch": arch.path,
              "choices": list(arch["layers"]), "predicted_ms": arch["predicted_ms"],
              "search_seconds": round(time.time() - t0, 1),
              "supernet_val_top1": 100 * arch["search"]["supernet_val_accuracy_ema"]}
    atomic_write_json(done, result)
    return result


def search_dynamics(search: dict) -> dict:
    """What moved the indicators, from the search's log: when they first changed, how
    far lambda and the predicted runtime went, how many decisions flipped."""
    import csv

    path = os.path.join(os.path.dirname(search["arch"]), "search_log.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keys = [k for k in rows[0] if k.startswith("L") and k[-4:] in ("d5x5", "100c", "d50c")]
    states = [tuple(r[k] for k in keys) for r in rows]
    flips = sum(sum(a != b for a, b in zip(s0, s1)) for s0, s1 in zip(states, states[1:]))
    changed = next((int(r["step"]) for r, st in zip(rows, states) if st != states[0]), None)
    lam = [float(r["lambda"]) for r in rows if r["lambda"] not in ("", None)]
    runtime = [float(r["runtime_ms"]) for r in rows if r["runtime_ms"] not in ("", None)]
    return {"first_change_step": changed, "decision_flips": flips,
            "indicators_on_at_end": sum(v == "1" for v in states[-1]), "indicators": len(keys),
            "lambda_max": max(lam) if lam else None,
            "runtime_min_ms": min(runtime) if runtime else None,
            "runtime_end_ms": runtime[-1] if runtime else None,
            "steps": int(rows[-1]["step"])}


def random_nets(table, space, target: float, n: int, out: str, seed: int) -> list[dict]:
    from spnas.arch.handoff import make_arch, write_arch
    from spnas.search.random_search import random_search

    kept, tries = random_search(table, space, n=n, window=(WINDOW_LO * target, target),
                                seed=seed)
    nets = []
    for i, (choices, ms) in enumerate(kept):
        path = os.path.join(out, "random", f"t{target:g}", f"random_{i:02d}", "arch.json")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_arch(path, make_arch(space, choices, table))
        nets.append({"name": f"random_{i:02d}", "arch": path, "predicted_ms": ms,
                     "choices": list(choices)})
    log(f"{len(nets)} random nets in [{WINDOW_LO * target:.4f}, {target:.4f}] ms "
        f"({tries} samples drawn)")
    return nets


def _flatbuffer(model) -> bytes:
    from spnas.export.tflite import convert_float

    return convert_float(model)


def time_flatbuffers(flatbuffers: list[bytes], repeats: int) -> list[dict]:
    from spnas.latency.timing import time_interleaved

    stats = time_interleaved(flatbuffers, threads=1, warmup=20, repeats=repeats)
    return [{"min_ms": s.min_ms, "median_ms": s.median_ms} for s in stats]


def pick_widths(preset: Preset, searched: list[dict], out: str) -> dict:
    """Measures the untrained baselines at every width with the searched nets; per
    target, the width of each family nearest the searched net in measured latency."""
    from spnas.fileio import atomic_write_json

    path = os.path.join(out, "baseline_widths.json")
    if os.path.exists(path):
        return _load(path)
    from spnas.models.builder import build_model

    log("timing the baselines' widths against the searched nets (untrained, float TFLite)")
    items = [("searched", s["target_ms"], s["arch"], None) for s in searched]
    items += [(f, None, BASELINES[f], w) for f in BASELINES for w in preset.widths]
    fbs = [_flatbuffer(build_model(arch, num_classes=10, width=w)) for _, _, arch, w in items]
    times = time_flatbuffers(fbs, preset.latency_repeats)
    result = {"candidates": [], "choice": {}}
    for (family, target, arch, w), t in zip(items, times):
        result["candidates"].append({"family": family, "target_ms": target, "arch": arch,
                                     "width": w, **t})
    for s, t in zip(searched, times):
        for family in BASELINES:
            cands = [c for c in result["candidates"] if c["family"] == family]
            best = min(cands, key=lambda c: abs(c["min_ms"] - t["min_ms"]))
            result["choice"].setdefault(f"{s['target_ms']:g}", {})[family] = best["width"]
    atomic_write_json(path, result)
    return result


# --- training and evaluation ---------------------------------------------------------------


def top1_on(model, dataset: str, split: str, config) -> tuple[float, int]:
    """Top-1 (%) of a Keras model on ``split`` of ``dataset``, preprocessed as the
    training config evaluates (its ``data.augment``; the test folder is read whole)."""
    import keras
    import numpy as np

    from spnas.data import build_dataset

    fraction = config.data.validation_fraction if split == "validation" else 0.0
    ds, _ = build_dataset(dataset, split, 250, int(config.data.image_size), training=False,
                          augment=config.data.augment or None, validation_fraction=fraction,
                          seed=int(config.seed))
    correct = total = 0
    for images, labels in ds:
        logits = keras.ops.convert_to_numpy(model(images, training=False))
        correct += int(np.sum(np.argmax(logits, -1) == np.argmax(labels.numpy(), -1)))
        total += int(labels.shape[0])
    return 100.0 * correct / total, total


def evaluate_row(row: dict, data: dict, config) -> dict:
    """Test (and validation) top-1 of a trained net's model.keras (EMA weights, BN
    statistics recomputed); recorded with the preprocessing used."""
    import keras

    from spnas.train.run import MODEL_FILE

    model = keras.saving.load_model(os.path.join(row["workdir"], MODEL_FILE), compile=False)
    row["top1"], row["test_images"] = top1_on(model, data["test"], "train", config)
    row["val_top1"], row["val_images"] = top1_on(model, data["fit"], "validation", config)
    row["eval_augment"] = config.data.augment
    return row


def train_net(preset: Preset, data: dict, net: dict, seed: int, out: str) -> dict:
    """Trains one net (resuming or reusing a finished run); returns its row."""
    from spnas.fileio import atomic_write_json

    workdir = os.path.join(out, "runs", f"{net['key']}_s{seed}")
    done = os.path.join(workdir, "bench_row.json")
    config = train_config(preset, data["fit"], seed)
    if os.path.exists(done):
        row = _load(done)
        if row.get("eval_augment") != config.data.augment:  # evaluated another way: again
            row = evaluate_row({**row, "workdir": workdir}, data, config)
            atomic_write_json(done, row)
        return row
    from spnas.arch.plan import plan_model
    from spnas.train.run import run

    if net.get("width"):
        config.width = float(net["width"])
    t0 = time.time()
    report = run(config, workdir, arch=net["arch"])
    plan = plan_model(net["arch"], num_classes=10, width=net.get("width"))
    row = {"family": net["family"], "name": net["name"], "seed": seed,
           "predicted_ms": net.get("predicted_ms"), "measured_ms": None,
           "params": int(report["params"]), "macs": int(plan.count_macs()),
           "width": net.get("width"), "steps": report["steps"],
           "train_seconds": round(time.time() - t0, 1), "workdir": workdir}
    row = evaluate_row(row, data, config)
    atomic_write_json(done, row)
    return row


def measure_trained(rows: list[dict], repeats: int, out: str) -> None:
    """Times every trained model interleaved; fills ``measured_ms`` (minimum)."""
    import keras

    from spnas.fileio import atomic_write_json
    from spnas.train.run import MODEL_FILE

    log(f"timing {len(rows)} trained models interleaved")
    fbs = [_flatbuffer(keras.saving.load_model(os.path.join(r["workdir"], MODEL_FILE),
                                               compile=False)) for r in rows]
    for r, t in zip(rows, time_flatbuffers(fbs, repeats)):
        r["measured_ms"] = t["min_ms"]
        r["measured_median_ms"] = t["median_ms"]
    atomic_write_json(os.path.join(out, "latency.json"),
                      {r["workdir"]: [r["measured_ms"], r["measured_median_ms"]] for r in rows})


# --- summary -------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _fmt(mean: float, std: float | None) -> str:
    return f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def verdict(rows: list[dict]) -> dict:
    """Searched mean top-1 against each other family's mean, at one target."""
    by = {f: [r["top1"] for r in rows if r["family"] == f] for f in FAMILIES}
    if not by["searched"]:
        return {}
    s = statistics.fmean(by["searched"])
    out = {"searched_top1": s}
    for f in FAMILIES[1:]:
        if by[f]:
            m = statistics.fmean(by[f])
            out[f] = {"top1": m, "delta": s - m, "searched_better": s > m}
    return out


def _step(step: int | None) -> str:
    return "never (no change)" if step is None else str(step)


def markdown(result: dict) -> str:
    lines = [f"# Table 1 on {result['dataset_note']} (preset `{result['preset']}`)", "",
             result["setting"], ""]
    for t in result["targets"]:
        lines += [f"## Target {t['target_ms']:.4f} ms (predicted, table `{result['table']}`)", "",
                  "| Model | Family | Top-1 (%) | Predicted ms | Measured ms | Params | MMACs "
                  "| Search cost |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        groups: dict[tuple, list] = {}
        for r in t["rows"]:
            key = (r["family"], "random search" if r["family"] == "random" else r["name"])
            groups.setdefault(key, []).append(r)
        for (family, name), rs in sorted(groups.items(), key=lambda kv: FAMILIES.index(kv[0][0])):
            mean, std = _mean_std([r["top1"] for r in rs])
            pred = [r["predicted_ms"] for r in rs if r["predicted_ms"] is not None]
            meas = [r["measured_ms"] for r in rs if r["measured_ms"] is not None]
            label = name + (f" ({len(rs)} nets)" if family == "random" else "")
            if family != "random" and rs[0].get("width"):
                label += f" {rs[0]['width']:g}x"
            cost = f"{t['search_seconds'] / 60:.1f} min" if family == "searched" else (
                "—" if family != "random" else "sampling only")
            pred_s = f"{statistics.fmean(pred):.4f}" if pred else "—"
            meas_s = f"{statistics.fmean(meas):.4f}" if meas else "—"
            params = int(statistics.fmean(r["params"] for r in rs))
            macs = statistics.fmean(r["macs"] for r in rs) / 1e6
            lines.append(f"| {label} | {family} | {_fmt(mean, std)} | {pred_s} | {meas_s} | "
                         f"{params:,} | {macs:.1f} | {cost} |")
        v = t.get("verdict", {})
        if v:
            words = []
            for f in FAMILIES[1:]:
                if f in v:
                    words.append(f"{'beats' if v[f]['searched_better'] else 'does not beat'} "
                                 f"{f} ({v[f]['delta']:+.2f} points)")
            lines += ["", f"Searched net: {'; '.join(words)}."]
        d = t.get("search_dynamics")
        if d:
            lines += ["", f"Search dynamics: the indicators first changed at step "
                      f"{_step(d['first_change_step'])} of {d['steps']}; {d['decision_flips']} decision "
                      f"flips; lambda peaked at {d['lambda_max']:.3g}; the predicted runtime of the "
                      f"hard decisions fell to {d['runtime_min_ms']:.4f} ms and ended at "
                      f"{d['runtime_end_ms']:.4f} ms; {d['indicators_on_at_end']} of "
                      f"{d['indicators']} indicators on at the end."]
        lines.append("")
    ic = result.get("init_check")
    if ic:
        lines += ["## Superkernel init: fan-in (ours) vs fan-out (the release's)", "",
                  f"At {ic['target_ms']:.4f} ms: {ic['differing_layers']} of "
                  f"{ic['searchable_layers']} searchable layers decoded differently; predicted "
                  f"{ic['fan_in']['predicted_ms']:.4f} vs {ic['fan_out']['predicted_ms']:.4f} ms.",
                  "",
                  f"- fan_in:  {' '.join(ic['fan_in']['choices'])}",
                  f"- fan_out: {' '.join(ic['fan_out']['choices'])}", ""]
        for mode in ("fan_in", "fan_out"):
            d = ic["dynamics"][mode]
            lines.append(f"- {mode}: indicators first changed at step "
                         f"{_step(d['first_change_step'])}; "
                         f"{d['decision_flips']} flips during the search; "
                         f"{d['indicators_on_at_end']} of {d['indicators']} on at its end "
                         "(the budget decode then moves the net to the target).")
        lines.append("")
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"searched": ("tab:red", "o", "searched (Single-Path NAS)"),
              "random": ("tab:gray", "x", "random search"),
              "mobilenetv2": ("tab:blue", "s", "MobileNetV2"),
              "mnasnet": ("tab:green", "^", "MnasNet-B1")}
    fig, ax = plt.subplots(figsize=(7.0, 4.8))
    rows = [r for t in result["targets"] for r in t["rows"] if r["measured_ms"] is not None]
    # One point per net (its run directory without the seed): mean over seeds.
    points: dict[tuple, list] = {}
    for r in rows:
        net = re.sub(r"_s\d+$", "", r["workdir"])
        points.setdefault((r["family"], net, r.get("width")), []).append(r)
    pts = []
    for (family, name, width), rs in points.items():
        x = statistics.fmean(r["measured_ms"] for r in rs)
        y = statistics.fmean(r["top1"] for r in rs)
        pts.append((family, name, width, x, y))
    for family, (color, marker, label) in styles.items():
        fam = sorted((p for p in pts if p[0] == family), key=lambda p: p[3])
        if not fam:
            continue
        line = "-" if family in BASELINES else "none"  # the baselines' width curves (Fig. 8)
        ax.plot([p[3] for p in fam], [p[4] for p in fam], linestyle=line, marker=marker,
                color=color, label=label)
        if family in BASELINES:
            for p in fam:
                ax.annotate(f"{p[2]:g}x", (p[3], p[4]), textcoords="offset points",
                            xytext=(4, -10), fontsize=7, color=color)
    front, best = [], -1.0
    for p in sorted(pts, key=lambda p: p[3]):
        if p[4] > best:
            front.append(p)
            best = p[4]
    if len(front) > 1:
        ax.step([p[3] for p in front], [p[4] for p in front], where="post", color="black",
                alpha=0.35, linestyle="--", label="Pareto front")
    for t in result["targets"]:
        ax.axvline(t["target_ms"], color="tab:red", alpha=0.15, linewidth=4)
    ax.set_xlabel("measured latency on this host, LiteRT float, 1 thread, batch 1 (ms, min)")
    ax.set_ylabel("top-1 on the held-out test set (%)")
    ax.set_title(f"Table 1 / Fig. 8 analogue: {result['dataset_note']}, preset "
                 f"{result['preset']}\n(shaded: the search targets, predicted ms)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def init_check(searches: dict, target: float) -> dict | None:
    a, b = searches.get(("fan_in", target)), searches.get(("fan_out", target))
    if not a or not b:
        return None
    diff = sum(x != y for x, y in zip(a["choices"], b["choices"]))
    return {"target_ms": target, "searchable_layers": len(a["choices"]) - 2,
            "dynamics": {"fan_in": search_dynamics(a), "fan_out": search_dynamics(b)},
            "differing_layers": diff,
            "fan_in": {k: a[k] for k in ("choices", "predicted_ms", "search_seconds")},
            "fan_out": {k: b[k] for k in ("choices", "predicted_ms", "search_seconds")}}


def main(argv=None) -> int:
    args = parse_args(argv)
    preset = PRESETS[args.preset]
    if args.seeds:
        preset = dataclasses.replace(preset, seeds=args.seeds)
    if args.random_n:
        preset = dataclasses.replace(preset, random_n=args.random_n)
    if args.jit_compile:
        preset = dataclasses.replace(preset, jit_compile=True)
    from spnas.fileio import atomic_write_json, atomic_write_text, check_writable_dir

    out = check_writable_dir(args.out)
    t_start = time.time()
    data = prepare_data(args, out)
    space, table = space_and_table(preset, data["fit"])
    targets = ([float(t) for t in args.targets.split(",") if t.strip()] if args.targets
               else default_targets(table, preset.targets))
    log(f"preset {args.preset}; targets {targets} ms (table range "
        f"{table.range_ms()[0]:.4f}-{table.range_ms()[1]:.4f} ms)")

    searches = {}
    for t in targets:
        searches[("fan_in", t)] = run_search(preset, data["fit"], t, "fan_in",
                                             os.path.join(out, "search", f"t{t:g}"))
    middle = targets[len(targets) // 2]
    if preset.init_check:
        searches[("fan_out", middle)] = run_search(
            preset, data["fit"], middle, "fan_out", os.path.join(out, "search", f"t{middle:g}_fanout"))
    searched = [searches[("fan_in", t)] for t in targets]
    widths = pick_widths(preset, searched, out)

    nets_by_target = {}
    for i, t in enumerate(targets):
        s = searches[("fan_in", t)]
        nets = [{"family": "searched", "name": f"searched_t{t:g}", "key": f"searched_t{t:g}",
                 "arch": s["arch"], "predicted_ms": s["predicted_ms"]}]
        for family, w in widths["choice"][f"{t:g}"].items():
            tag = f"{int(round(w * 100)):03d}"
            nets.append({"family": family, "name": f"{BASELINES[family]}_{tag}",
                         "key": f"{BASELINES[family]}_{tag}", "arch": BASELINES[family],
                         "width": w, "predicted_ms": None})
        for r in random_nets(table, space, t, preset.random_n, out, seed=1000 + i):
            nets.append({**r, "family": "random", "key": f"random_t{t:g}_{r['name'][-2:]}"})
        nets_by_target[t] = nets

    jobs = [(t, net, seed) for seed in range(preset.seeds) for t in targets
            for net in nets_by_target[t]]
    unique = {(net["key"], seed) for _, net, seed in jobs}
    rows_by_key = {}
    for t, net, seed in jobs:
        key = (net["key"], seed)
        if key in rows_by_key:
            continue
        log(f"[{len(rows_by_key) + 1}/{len(unique)}] {net['name']} seed {seed} (target {t:g} ms)"
            f", {(time.time() - t_start) / 60:.0f} min so far")
        rows_by_key[key] = train_net(preset, data, net, seed, out)
        atomic_write_json(os.path.join(out, "progress.json"),
                          {"done": len(rows_by_key), "of": len(unique),
                           "rows": list(rows_by_key.values())})
    rows = list(rows_by_key.values())
    measure_trained(rows, preset.latency_repeats, out)

    result = {
        "format": "spnas.table1/1",
        "preset": args.preset,
        "preset_settings": dataclasses.asdict(preset),
        "dataset_note": (f"{data['fit']} ({data['split']['fit_images']} images; test: "
                         f"{data['split']['test_images']} held out)" if data["split"]
                         else f"{data['fit']} (test: {data['test']})"),
        "table": table.device,
        "setting": (f"Space: {len(space.layers())} layers, width {space.width:g}, stem stride "
                    f"{space.stem_stride}, block strides {list(space.block_strides or [])}. "
                    f"Search: {preset.search_steps or 'full'} steps at batch {preset.search_batch}."
                    f" Training: {preset.train_steps or 'full'} steps at batch "
                    f"{preset.train_batch}, {preset.seeds} seed(s). Top-1 on the test set, EMA "
                    "weights, BN statistics recomputed; latency: LiteRT float, 1 thread, min over "
                    "interleaved rounds."),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host_cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "wall_minutes": round((time.time() - t_start) / 60, 1),
        "targets": [],
        "baseline_widths": widths,
        "init_check": init_check(searches, middle),
    }
    for t in targets:
        keys = {net["key"] for net in nets_by_target[t]}
        t_rows = [{**r, "workdir": os.path.relpath(r["workdir"], out)}  # relative to --out
                  for (k, _), r in rows_by_key.items() if k in keys]
        result["targets"].append({"target_ms": t,
                                  "search_seconds": searches[("fan_in", t)]["search_seconds"],
                                  "search_dynamics": search_dynamics(searches[("fan_in", t)]),
                                  "rows": t_rows, "verdict": verdict(t_rows)})
    atomic_write_json(os.path.join(out, "table1.json"), result)
    md = markdown(result)
    atomic_write_text(os.path.join(out, "table1.md"), md + "\n")
    plot(result, os.path.join(out, "table1.png"))
    print(md)
    log(f"wrote {out}/table1.json, table1.md, table1.png in {result['wall_minutes']} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
