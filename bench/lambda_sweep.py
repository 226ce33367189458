"""λ sweep of the embedded default: predicted latency should fall as λ grows.

  python bench/lambda_sweep.py --out=runs/lambda_sweep --lambdas=0.002,0.02,0.2 [--epochs=8]

Runs ``spnas-search`` once per λ (same seed, same data) in ``OUT/lambda_<λ>`` and
prints a Markdown table of λ, predicted latency (paper model and exact sum),
supernet validation accuracy, and the counts of each decoded choice; writes
``OUT/lambda_sweep.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--lambdas", default="0.002,0.02,0.2")
    p.add_argument("--epochs", type=float, default=None)
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "default.py"))
    p.add_argument("--extra", action="append", default=[], help="more --config.k=v overrides")
    args = p.parse_args()
    rows = []
    for lam in [float(x) for x in args.lambdas.split(",")]:
        workdir = os.path.join(args.out, f"lambda_{lam:g}")
        cmd = [sys.executable, "-m", "spnas.search.main", f"--config={args.config}",
               f"--workdir={workdir}", f"--config.lambda_={lam}", *args.extra]
        if args.epochs:
            cmd.append(f"--config.epochs={args.epochs}")
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        with open(os.path.join(workdir, "arch.json")) as f:
            arch = json.load(f)
        searchable = ("k3_e3", "k3_e6", "k5_e3", "k5_e6", "skip")
        counts = collections.Counter(c for c in arch["layers"] if c in searchable)
        rows.append({
            "lambda": lam,
            "predicted_ms": arch["predicted_ms"],
            "predicted_ms_exact": arch["predicted_ms_exact"],
            "supernet_val_accuracy_ema": arch["search"]["supernet_val_accuracy_ema"],
            "choices": dict(counts),
            "layers": arch["layers"],
        })
    print("\n| λ | predicted ms (paper) | exact ms | supernet val acc | choices |")
    print("|---|---|---|---|---|")
    for r in rows:
        ch = ", ".join(f"{k}:{v}" for k, v in sorted(r["choices"].items()))
        print(f"| {r['lambda']:g} | {r['predicted_ms']:.4f} | {r['predicted_ms_exact']:.4f} | "
              f"{r['supernet_val_accuracy_ema']:.3f} | {ch} |")
    monotone = all(a["predicted_ms"] >= b["predicted_ms"] for a, b in zip(rows, rows[1:]))
    print(f"\npredicted latency non-increasing in λ: {monotone}")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "lambda_sweep.json"), "w") as f:
        json.dump({"rows": rows, "monotone": monotone}, f, indent=2)


if __name__ == "__main__":
    main()
