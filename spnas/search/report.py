"""Figures of a search, like the paper's Fig. 4 and Fig. 6, and ``spnas-report``.

* ``fig4_ce_runtime.png``: cross-entropy and predicted runtime R (ms) over the
  search steps, with lambda and the end of the warm-up marked (paper Fig. 4).
* ``fig6_kernel_std.png``: per searchable layer, the standard deviation of the
  superkernel weights across channels at each 5x5 position, log scale (paper
  Fig. 6); the 3x3 core is outlined and the decoded choice is in the title.

Everything is read from files in the work directory (``search_log.csv``,
``kernel_std.json``, ``arch.json``), so ``spnas-report WORKDIR``
(:mod:`spnas.search.report_main`) redraws them without TensorFlow.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

FIG4 = "fig4_ce_runtime.png"
FIG6 = "fig6_kernel_std.png"


def _read_log(path: str) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no rows.")

    def col(name):
        return np.array([float(r[name]) if r.get(name) not in ("", None) else np.nan for r in rows])

    return {k: col(k) for k in ("step", "ce", "runtime_ms", "lambda", "keep_prob", "loss")}


SMOOTH_POINTS = 9  # Fig. 4's smoothing, in logged windows (stated in the legend)


def _moving_average(values: np.ndarray, points: int) -> np.ndarray | None:
    """Centred moving average ignoring NaNs (shorter at the ends); None if too short."""
    ok = np.isfinite(values)
    if ok.sum() < points:
        return None
    filled = np.where(ok, values, 0.0)
    kernel = np.ones(points)
    num = np.convolve(filled, kernel, mode="same")
    den = np.convolve(ok.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def plot_fig4(log_csv: str, out_png: str, target_ms: float | None = None,
              decoded_ms: float | None = None) -> str:
    """CE, R and lambda over the search; ``decoded_ms`` marks the decoded net's latency."""
    log = _read_log(log_csv)
    step = log["step"]
    # A Figure without pyplot: no global state, no GUI backend (headless machines).
    fig = Figure(figsize=(7, 6))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    every = int(np.median(np.diff(step))) if len(step) > 2 else 1
    ax1.plot(step, log["ce"], color="tab:blue", lw=0.8, alpha=0.45,
             label=f"cross-entropy (mean of each {every}-step window)")
    smooth = _moving_average(log["ce"], SMOOTH_POINTS)
    if smooth is not None:
        ax1.plot(step, smooth, color="tab:blue", lw=2,
                 label=f"smoothed: centred mean of {SMOOTH_POINTS} windows")
    ax1.set_ylabel("CE")
    ax1.grid(alpha=0.3)
    ax2.plot(step, log["runtime_ms"], color="tab:red", label="predicted runtime R")
    if target_ms:
        ax2.axhline(target_ms, color="k", ls=":", label=f"target {target_ms:g} ms")
    if decoded_ms:
        ax2.plot([step[-1]], [decoded_ms], marker="*", ms=12, color="tab:purple", ls="none",
                 label=f"decoded net {decoded_ms:.4g} ms")
    ax2.set_ylabel("R (ms)")
    ax2.set_xlabel("search step")
    ax2.grid(alpha=0.3)
    warm = step[np.argmax(log["keep_prob"] >= 1.0)] if np.any(log["keep_prob"] >= 1.0) else None
    for ax in (ax1, ax2):
        if warm is not None and warm > step[0]:
            ax.axvline(warm, color="gray", ls="--", lw=1, label="end of warm-up (lambda on)")
    lam = ax2.twinx()
    lam.plot(step, log["lambda"], color="tab:green", lw=1, alpha=0.7, label="lambda")
    lam.set_ylabel("lambda", color="tab:green")
    h1, l1 = ax2.get_legend_handles_labels()
    h2, l2 = lam.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, loc="best", fontsize=8, framealpha=0.8)
    ax1.legend(loc="upper right", fontsize=8)
    fig.suptitle("Single-Path NAS search: CE and runtime (cf. paper Fig. 4)")
    fig.tight_layout()
    _save(fig, out_png)
    return out_png


def plot_fig6(kernel_std_json: str, out_png: str, choices: list[str] | None = None) -> str:
    with open(kernel_std_json) as f:
        stds = {int(k): np.asarray(v) for k, v in json.load(f).items()}
    ids = sorted(stds)
    cols = 4
    rows = int(np.ceil(len(ids) / cols))
    values = np.concatenate([s.ravel() for s in stds.values()])
    positive = values[values > 0]
    vmin = max(float(positive.min()) if positive.size else 1e-6, 1e-8)
    norm = LogNorm(vmin=vmin, vmax=max(float(values.max()), vmin * 10))
    fig = Figure(figsize=(cols * 1.9, rows * 2.0))
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), ids):
        image = ax.imshow(np.maximum(stds[i], vmin), cmap="viridis", norm=norm)
        ax.add_patch(Rectangle((0.5, 0.5), 3, 3, fill=False, ec="white", lw=1))
        title = f"layer {i}"
        if choices:
            title += f"\n{choices[i]}"
        ax.set_title(title, fontsize=8)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="std across channels (log)")
    fig.suptitle("Superkernel weight std across channels (cf. paper Fig. 6)")
    _save(fig, out_png)
    return out_png


def _save(fig, path: str) -> None:
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), "." + os.path.basename(path) + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def make_figures(workdir: str) -> list[str]:
    """Draws every figure whose inputs exist in ``workdir``; returns their paths."""
    out = []
    arch = {}
    arch_path = os.path.join(workdir, "arch.json")
    if os.path.exists(arch_path):
        with open(arch_path) as f:
            arch = json.load(f)
    log_csv = os.path.join(workdir, "search_log.csv")
    if os.path.exists(log_csv):
        out.append(plot_fig4(log_csv, os.path.join(workdir, FIG4), arch.get("target_ms"),
                             arch.get("predicted_ms")))
    std_json = os.path.join(workdir, "kernel_std.json")
    if os.path.exists(std_json):
        out.append(plot_fig6(std_json, os.path.join(workdir, FIG6), arch.get("layers")))
    return out
