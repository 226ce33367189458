"""Sweeps of the search on one config: over λ (paper mode) or over latency targets.

  python bench/search_sweep.py --out=runs/lambda_sweep --lambdas=0.002,0.02,0.2 [--epochs=8]
  python bench/search_sweep.py --out=runs/targets --targets=0.2,0.35,0.5
  python bench/search_sweep.py --out=runs/pixel1 --config=configs/pixel1_proxy.py \
      --targets=60,80,100

Runs ``spnas-search`` once per value (same seed, same data) in ``OUT/lambda_<λ>`` or
``OUT/target_<ms>`` and prints a Markdown table: the value, predicted latency (paper
model and exact sum), for targets the relative error and whether it is within the
config's tolerance, supernet validation accuracy, and the counts of each decoded
choice. Writes ``OUT/sweep.json``. λ sweeps also report whether predicted latency
falls as λ grows; target sweeps whether every net is within tolerance.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEARCHABLE = ("k3_e3", "k3_e6", "k5_e3", "k5_e6", "skip")


def run_one(args, name: str, override: str) -> dict:
    workdir = os.path.join(args.out, name)
    cmd = [sys.executable, "-m", "spnas.search.main", f"--config={args.config}",
           f"--workdir={workdir}", override, *args.extra]
    if args.epochs:
        cmd.append(f"--config.schedule.epochs={args.epochs}")
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    with open(os.path.join(workdir, "arch.json")) as f:
        arch = json.load(f)
    counts = collections.Counter(c for c in arch["layers"] if c in SEARCHABLE)
    return {
        "predicted_ms": arch["predicted_ms"],
        "predicted_ms_exact": arch["predicted_ms_exact"],
        "target": arch.get("target"),
        "final_lambda": arch["search"]["lambda"],
        "supernet_val_accuracy_ema": arch["search"]["supernet_val_accuracy_ema"],
        "seconds": arch["search"]["seconds"],
        "choices": dict(counts),
        "layers": arch["layers"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--lambdas", help="comma-separated λ values (paper mode)")
    group.add_argument("--targets", help="comma-separated latency targets in ms (target mode)")
    p.add_argument("--epochs", type=float, default=None)
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "default.py"))
    p.add_argument("--extra", action="append", default=[], help="more --config.k=v overrides")
    args = p.parse_args()
    by_target = args.targets is not None
    values = [float(x) for x in (args.targets if by_target else args.lambdas).split(",")]
    rows = []
    for v in values:
        if by_target:
            row = run_one(args, f"target_{v:g}", f"--config.target_ms={v}")
        else:
            row = run_one(args, f"lambda_{v:g}", f"--config.lambda_={v}")
        rows.append({"target_ms" if by_target else "lambda": v, **row})

    def choices(r):
        return ", ".join(f"{k}:{n}" for k, n in sorted(r["choices"].items()))

    if by_target:
        print("\n| target ms | predicted ms (paper) | exact ms | error | within tol. | final λ "
              "| supernet val acc | choices |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            t = r["target"]
            print(f"| {r['target_ms']:g} | {r['predicted_ms']:.4f} | {r['predicted_ms_exact']:.4f} "
                  f"| {t['error_pct']:+.2f} % | {'yes' if t['within_tolerance'] else 'NO'} "
                  f"(±{t['tolerance_pct']:g} %) | {r['final_lambda']:.4f} "
                  f"| {r['supernet_val_accuracy_ema']:.3f} | {choices(r)} |")
        verdict = {"all_within_tolerance": all(r["target"]["within_tolerance"] for r in rows)}
    else:
        print("\n| λ | predicted ms (paper) | exact ms | supernet val acc | choices |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['lambda']:g} | {r['predicted_ms']:.4f} | {r['predicted_ms_exact']:.4f} | "
                  f"{r['supernet_val_accuracy_ema']:.3f} | {choices(r)} |")
        verdict = {"monotone": all(a["predicted_ms"] >= b["predicted_ms"]
                                   for a, b in zip(rows, rows[1:]))}
    print("\n" + ", ".join(f"{k}: {v}" for k, v in verdict.items()))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "sweep.json"), "w") as f:
        json.dump({"rows": rows, **verdict}, f, indent=2)


if __name__ == "__main__":
    main()
