"""Fig. 8-style benchmark: accuracy vs measured latency under width scaling.

The paper (Stamoulis et al., 2019, Sec. 4.2, Fig. 8) rescales its searched
network and MobileNetV2 with a width multiplier and shows that the searched net
is more accurate at every runtime (e.g. 1.56x faster than the MobileNetV2 of
similar accuracy). This script repeats that analysis on whatever data and host
it is given: it trains each network with ``spnas-train``'s library function
(:func:`spnas.train.run.run`, the MnasNet recipe with scaled-down epochs),
converts the EMA model to a float TFLite flatbuffer
(:func:`spnas.export.tflite.convert_float`) and times it on this host with the
LiteRT interpreter (:func:`spnas.export.litert.measure_latency`, batch 1).

Families: ``searched`` (the arch.json given with ``--arch``, or the paper's
Pixel 1 net ``spnas_pixel1`` without it) at each width, and MobileNetV2 and
MnasNet-B1 (the paper's Fig. 8 curves) at the same widths (registry
``mobilenetv2_035/050/075/100/130/140``, ``mnasnet_b1_050/075/-/130/140``).
``bench/table1.py`` draws the same curves on its CIFAR-10 setting. Latency rounds
alternate over all models so that other processes' load falls on all of them
alike. Writes ``fig8_scaling.png`` and ``fig8_scaling.json`` in ``--out``;
every trained model stays in ``--out/runs/<name>`` (a rerun reuses finished
ones and resumes interrupted ones).

    python bench/fig8_scaling.py --arch=/tmp/spnas/arch.json --out=/tmp/fig8
    python bench/fig8_scaling.py --widths=0.35,0.5,1.0 --epochs=8   # smaller

Not in CI. Measured on 2 busy CPU cores with the embedded digits at 32x32:
``--widths=0.35,0.5,1.0 --epochs=6`` (6 models, 151 steps each) took 26
minutes, 3-5 minutes per model, much of it building each training graph.
Latencies of sub-millisecond models on a shared host vary by 2x between
rounds: read the JSON's per-round medians before the plot.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MOBILENETV2_WIDTHS = {
    0.35: "mobilenetv2_035",
    0.5: "mobilenetv2_050",
    0.75: "mobilenetv2_075",
    1.0: "mobilenetv2_100",
    1.3: "mobilenetv2_130",
    1.4: "mobilenetv2_140",
}
MNASNET_WIDTHS = {
    0.5: "mnasnet_b1_050",
    0.75: "mnasnet_b1_075",
    1.0: "mnasnet_b1",
    1.3: "mnasnet_b1_130",
    1.4: "mnasnet_b1_140",
}
BASELINE_WIDTHS = {"mobilenetv2": MOBILENETV2_WIDTHS, "mnasnet": MNASNET_WIDTHS}
FAMILIES = ("searched", "mobilenetv2", "mnasnet")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--arch",
        default="",
        help="arch.json of the searched net "
        "(default: the paper's Pixel 1 net, registry spnas_pixel1)",
    )
    p.add_argument(
        "--widths",
        default="0.35,0.5,0.75,1.0",
        help=f"comma-separated width multipliers; MobileNetV2 has {sorted(MOBILENETV2_WIDTHS)}",
    )
    p.add_argument("--families", default=",".join(FAMILIES), help="which of searched,mobilenetv2")
    p.add_argument(
        "--config",
        default="train_default.py",
        help="training config under configs/ (the recipe and the data)",
    )
    p.add_argument("--dataset", default="", help="override the config's dataset")
    p.add_argument("--image_size", type=int, default=0, help="override the config's input size")
    p.add_argument("--epochs", type=float, default=0.0, help="override the config's epochs")
    p.add_argument("--batch_size", type=int, default=0, help="override the config's batch size")
    p.add_argument("--threads", type=int, default=1, help="LiteRT interpreter threads")
    p.add_argument("--rounds", type=int, default=5, help="latency rounds over all models")
    p.add_argument("--repeats", type=int, default=50, help="timed invokes per model and round")
    p.add_argument("--out", default="/tmp/spnas_fig8", help="output directory")
    return p.parse_args(argv)


def model_specs(args: argparse.Namespace) -> list[dict]:
    """The (family, name, arch, width) of every model to train."""
    widths = [float(w) for w in args.widths.split(",") if w.strip()]
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"fig8_scaling: unknown families {unknown}; expected {FAMILIES}")
    searched = os.path.abspath(args.arch) if args.arch else "spnas_pixel1"
    if args.arch and not os.path.isfile(searched):
        raise SystemExit(f"fig8_scaling: --arch {args.arch!r} is not a file")
    specs = []
    for w in widths:
        tag = f"{int(round(w * 100)):03d}"
        if "searched" in families:
            specs.append(dict(family="searched", name=f"searched_{tag}", arch=searched, width=w))
        for family, names in BASELINE_WIDTHS.items():
            if family not in families:
                continue
            if w not in names:  # the paper's Fig. 8 has no MnasNet at 0.35 either
                print(f"fig8_scaling: no {family} of width {w} in the registry "
                      f"(have {sorted(names)}); skipped", flush=True)
                continue
            specs.append(dict(family=family, name=names[w], arch=names[w], width=w))
    return specs


def train_config(args: argparse.Namespace, spec: dict):
    """The training config of one model: the chosen config plus the overrides."""
    from spnas.configs_path import load_config

    c = load_config(args.config)
    c.arch = spec["arch"]
    # Registry entries carry their own width; an arch.json is scaled explicitly.
    c.width = spec["width"] if spec["family"] == "searched" else 0.0
    if args.dataset:
        c.data.dataset = args.dataset
    if args.image_size:
        c.data.image_size = args.image_size
    if args.epochs:
        c.schedule.epochs = args.epochs
    if args.batch_size:
        c.schedule.batch_size = args.batch_size
    return c


def train_all(args, specs: list[dict]) -> list[dict]:
    from spnas.train.run import REPORT_FILE, run, schedule_lengths

    points = []
    for spec in specs:
        workdir = os.path.join(args.out, "runs", spec["name"])
        config = train_config(args, spec)
        report_path = os.path.join(workdir, REPORT_FILE)
        report = None
        if os.path.exists(report_path):
            with open(report_path) as f:
                report = json.load(f)
            from spnas.data import dataset_info

            info = dataset_info(
                config.data.dataset,
                "train",
                data_dir=config.data.data_dir or None,
                manual_dir=config.data.manual_dir or None,
                validation_fraction=config.data.validation_fraction,
                seed=config.seed,
            )
            if report.get("steps") != schedule_lengths(config.schedule, info.num_examples)[1]:
                report = None  # another schedule: train again (resumes if it can)
        if report is None:
            print(f"== training {spec['name']} (width {spec['width']:g})", flush=True)
            report = run(config, workdir)
        points.append(
            {
                **spec,
                "workdir": workdir,
                "top1": report["top1"],
                "top5": report["top5"],
                "top1_moving_stats": report.get("top1_moving_stats"),
                "params": report["params"],
                "steps": report["steps"],
                "train_seconds": report["seconds"],
            }
        )
    return points


def measure_all(args, points: list[dict]) -> str:
    """Adds each model's median invoke time (over interleaved rounds); returns the runtime."""
    import keras

    from spnas.export.litert import litert_version, measure_latency
    from spnas.export.tflite import convert_float

    flatbuffers = {}
    for p in points:
        model = keras.saving.load_model(os.path.join(p["workdir"], "model.keras"), compile=False)
        flatbuffers[p["name"]] = convert_float(model)
        p["input_shape"] = [1, *model.input_shape[1:]]
        p["tflite_bytes"] = len(flatbuffers[p["name"]])
    medians = {p["name"]: [] for p in points}
    for r in range(args.rounds):
        for p in points:
            stats = measure_latency(
                flatbuffers[p["name"]],
                p["input_shape"],
                threads=args.threads,
                warmup=10,
                repeats=args.repeats,
                seed=r,
            )
            medians[p["name"]].append(stats.median_ms)
    for p in points:
        p["latency_ms"] = statistics.median(medians[p["name"]])
        p["latency_round_medians_ms"] = [round(m, 5) for m in medians[p["name"]]]
    return f"ai-edge-litert {litert_version()}, {args.threads} thread(s)"


def plot(points: list[dict], path: str, title: str, searched_label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    styles = {
        "searched": dict(color="tab:red", marker="o", label=searched_label),
        "mobilenetv2": dict(color="tab:blue", marker="s", label="MobileNetV2"),
        "mnasnet": dict(color="tab:green", marker="^", label="MnasNet-B1"),
    }
    for family, style in styles.items():
        fam = sorted((p for p in points if p["family"] == family), key=lambda p: p["latency_ms"])
        if not fam:
            continue
        xs = [p["latency_ms"] for p in fam]
        ys = [100 * p["top1"] for p in fam]
        ax.plot(xs, ys, linestyle="-", **style)
        for p, x, y in zip(fam, xs, ys):
            ax.annotate(
                f"{p['width']:g}x",
                (x, y),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=8,
                color=style["color"],
            )
    ax.set_xlabel("latency on this host, LiteRT float, batch 1 (ms, median)")
    ax.set_ylabel("top-1 accuracy, EMA weights (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    from spnas.fileio import atomic_write_json, check_writable_dir

    args.out = check_writable_dir(args.out)
    specs = model_specs(args)
    points = train_all(args, specs)
    runtime = measure_all(args, points)
    config = train_config(args, specs[0])
    title = (
        f"Fig. 8 analogue: {config.data.dataset} {config.data.image_size}x"
        f"{config.data.image_size}, {config.schedule.epochs:g} epochs ({points[0]['steps']} steps)\n{runtime}"
    )
    png = os.path.join(args.out, "fig8_scaling.png")
    searched_label = (
        f"searched ({os.path.basename(args.arch)})"
        if args.arch
        else "Single-Path NAS Pixel 1 net (paper)"
    )
    plot(points, png, title, searched_label)
    result = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dataset": config.data.dataset,
        "image_size": config.data.image_size,
        "epochs": config.schedule.epochs,
        "batch_size": config.schedule.batch_size,
        "runtime": runtime,
        "host_cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "points": points,
    }
    atomic_write_json(os.path.join(args.out, "fig8_scaling.json"), result)
    print(f"{'model':<18} {'width':>5} {'params':>9} {'top-1 %':>8} {'latency ms':>11}")
    for p in sorted(points, key=lambda p: (p["family"], p["width"])):
        print(
            f"{p['name']:<18} {p['width']:>5g} {p['params']:>9,} {100 * p['top1']:>8.2f} "
            f"{p['latency_ms']:>11.4f}"
        )
    print(f"figure: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
