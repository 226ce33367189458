"""Many latency budgets from one search (``config.targets``).

Single-Path NAS (Stamoulis et al., 2019) searches one net per latency
constraint: the paper tunes lambda until the decoded net lands near 80 ms, and
another budget means another search. One trained supernet holds more than its
own decode, though: every indicator's relative margin ``(norm - t) / norm``
says how sure it is, and one global shift of the cut-off moves the decoded net
along the latency axis (:func:`spnas.search.target.decode_at_budget`, the
decode of latency-target mode). As Once-for-All (Cai et al., ICLR 2020) trains
once and serves many targets, this decodes one net per budget of
``config.targets`` from the same supernet after the search and tells how good
the supernet thinks each one is:

* ``arch_<T>ms.json``: one arch.json per budget (same schema, its ``target``
  verdict and ``decode`` record), for ``spnas-train --arch=``;
* ``budgets.json`` / ``budgets.csv``: the small Pareto table (budget, predicted
  latency, shift, changed layers, supernet accuracy of the decoded net);
* ``fig_budgets.png``: predicted latency against that accuracy, arch.json's net marked.

The supernet accuracy of a decoded net is that of the EMA weights, BN
statistics recomputed, as the search's own evaluation
(:func:`spnas.train.recipe.ema_evaluation`), with every searchable layer's
indicators forced to the net's choices (:func:`forced_choices`). It ranks nets
of one supernet by its shared weights; a net trained alone can rank otherwise
(bench/many_budgets.py measures that).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np
from matplotlib.figure import Figure

from spnas.arch.costs import cost_records
from spnas.arch.handoff import make_arch, write_arch
from spnas.arch.memory import ActivationTable
from spnas.arch.params import ParamsTable
from spnas.choices import decisions_from_choice
from spnas.config_check import parse_targets
from spnas.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from spnas.search.limits import constraints_record, decode_under_limit
from spnas.search.target import SearchConfigError, budget_verdict, decode_at_budget
from spnas.space import SearchSpace, validate_choices
from spnas.tables.cost import CostTable
from spnas.train.recipe import ema_evaluation

__all__ = [
    "BUDGETS_CSV",
    "BUDGETS_FORMAT",
    "BUDGETS_JSON",
    "FIG_BUDGETS",
    "arch_filename",
    "budget_archs",
    "checked_targets",
    "decode_budgets",
    "forced_choices",
    "forced_evaluation",
    "many_budgets",
    "summary_lines",
    "write_budgets",
]

BUDGETS_FORMAT = "spnas.budgets/1"
BUDGETS_JSON, BUDGETS_CSV, FIG_BUDGETS = "budgets.json", "budgets.csv", "fig_budgets.png"
# A threshold that keeps an indicator 1(norm > t) on: every group norm is > 0. One that
# keeps it off is the whole kernel's norm + 1 (a group is a masked part of the kernel),
# small enough that the threshold's weight decay in an evaluation's loss stays finite.
FORCE_ON = -1.0
ACCURACY_OF = ("this net: the EMA supernet, BN statistics recomputed, with its indicators "
               "forced to this net's choices (spnas/search/budgets.py)")
CSV_COLUMNS = ("target_ms", "predicted_ms", "target", "predicted", "unit", "params",
               "activation_kib", "error_pct",
               "within_tolerance", "shift", "changed_layers", "supernet_val_accuracy_ema", "file")


def target_label(target: float, unit: str = "ms") -> str:
    """``0.25`` -> ``"0.25ms"`` (6 significant digits, as config_check tells budgets apart)."""
    return f"{target:.6g}{unit}"


def arch_filename(target: float, unit: str = "ms") -> str:
    """``arch_0.25ms.json``: the arch.json of the net decoded at budget ``target``
    (in the search cost's unit: ``arch_20MMAC.json`` for a MACs budget)."""
    return f"arch_{target_label(target, unit)}.json"


def checked_targets(config, table: CostTable) -> tuple[float, ...]:
    """``config.targets`` as floats, each checked against the table's reachable range
    (budgets are in the unit of the search's cost table).

    Raises:
      SearchConfigError: naming the first budget outside ``lo-hi`` (the syntax is
        :func:`spnas.config_check.check`'s, done before).
    """
    try:
        targets = parse_targets(config.get("targets", ""))
    except ValueError as e:  # an API caller that skipped the config check
        raise SearchConfigError(f"config: targets: {e}.") from None
    lo, hi = table.range()
    for t in targets:
        if not lo <= t <= hi:
            raise SearchConfigError(
                f"targets: {t:g} {table.unit} is outside the reachable range of this space on "
                f"{table.label}: {table.fmt(lo)}-{table.fmt(hi)} {table.unit}.")
    return targets


# -- decoding ---------------------------------------------------------------------------


def decode_budgets(decisions: Sequence[dict], base_choices: Sequence[str], space: SearchSpace,
                   table: CostTable, targets: Sequence[float], tolerance: float,
                   strict_table: bool = True, max_params: int = 0) -> list[dict]:
    """One :func:`decode_at_budget` per budget, each with its ``target_ms`` and verdict.

    With ``max_params`` each budget's net is then moved under the parameter limit as
    arch.json's is (:func:`spnas.search.limits.decode_under_limit`, recorded under
    ``params_limit``), so every decoded net meets both constraints the search had.
    """
    params = ParamsTable.from_space(space) if max_params else None
    out = []
    for t in targets:
        decoded = decode_at_budget(decisions, base_choices, space, table, t, tolerance,
                                   strict_table=strict_table)
        if params is not None:
            limit = decode_under_limit(decisions, decoded["choices"], space, table, params,
                                       max_params, t, tolerance)
            predicted = float(table.predict(limit["choices"]))
            decoded = {**decoded, "choices": limit["choices"], "predicted": predicted,
                       **({"predicted_ms": predicted} if table.unit == "ms" else {}),
                       "params_limit": {k: v for k, v in limit.items() if k != "choices"}}
        verdict = budget_verdict(decoded["predicted"], t, tolerance, table.unit)
        target = {"target": float(t), "unit": table.unit}
        if table.unit == "ms":
            target["target_ms"] = float(t)
        out.append({**target, **decoded, "verdict": verdict})
    return out


# -- the supernet's accuracy of one decoded net -------------------------------------------


def _searchable(model) -> list[tuple[int, Any]]:
    return [(spec.index, block.conv_dw) for block, spec in zip(model.mbconv, model.space.layers())
            if spec.searchable]


@contextlib.contextmanager
def forced_choices(model, choices: Sequence[str]) -> Iterator[None]:
    """Forces every searchable layer of the supernet ``model`` to ``choices``; the
    thresholds it changes come back on exit.

    A threshold below every group norm keeps its indicator on, one above keeps it
    off; the hard step of Eq. 2-3 then decodes exactly ``choices`` and the
    forward pass is the one of the net those indicators encode (the supernet's own
    masks; the norms are left as trained).
    """
    choices = validate_choices(model.space, choices)
    saved = []
    try:
        for index, conv in _searchable(model):
            forced = dict(zip(("t5x5", "t100c", "t50c"), decisions_from_choice(choices[index])))
            kernel = keras.ops.convert_to_numpy(conv.depthwise_kernel)
            force_off = float(np.sqrt(np.sum(np.square(kernel, dtype="float64")))) + 1.0
            for name, on in forced.items():
                variable = getattr(conv, name)
                if variable is None:  # no t50c: the layer cannot be skipped (validated)
                    continue
                saved.append((variable, keras.ops.convert_to_numpy(variable)))
                variable.assign(FORCE_ON if on else force_off)
        yield
    finally:
        for variable, value in reversed(saved):
            variable.assign(value)


def forced_evaluation(model, datasets, bn_batches: int, choices: Sequence[str]) -> dict:
    """Validation metrics of the EMA supernet forced to ``choices``: the trainer's
    :func:`spnas.train.recipe.ema_evaluation` with the indicators forced after the EMA
    weights (thresholds included) are loaded and before the BN statistics are
    recomputed. Everything comes back on exit.
    """
    with ema_evaluation(model, datasets, bn_batches,
                        inside=lambda: forced_choices(model, choices)) as ev:
        return ev.result


# -- the files --------------------------------------------------------------------------


def budget_archs(main_arch: dict, space: SearchSpace, table: CostTable, decoded: Sequence[dict],
                 accuracies: Sequence[float], method: str, strict_table: bool = True,
                 tolerance: float = 0.05, max_params: int = 0,
                 latency: CostTable | None = None) -> list[dict]:
    """The arch.json dictionary of each decoded net: arch.json's search record, decisions
    and config, its own layers, latency (``latency``: the latency table when ``table``, the
    search's cost, is another one), ``target`` verdict, ``decode`` record, ``costs`` and
    ``constraints`` (both costs; the multipliers are the search's)."""
    params, activation = ParamsTable.from_space(space), ActivationTable.from_space(space)
    latency = table if table.kind == "latency" else latency
    lambdas = main_arch.get("constraints") or {}
    kind = lambdas.get("cost", "latency")
    lam = (float((lambdas.get(kind) or {}).get("lambda", main_arch["search"].get("lambda", 0.0))),
           float((lambdas.get("params") or {}).get("lambda", 0.0)))
    out = []
    for d, accuracy in zip(decoded, accuracies):
        search = {**main_arch.get("search", {}), "supernet_val_accuracy_ema": float(accuracy),
                  "supernet_val_accuracy_ema_of": ACCURACY_OF}
        target = {"target_ms": d["target"]} if table.unit == "ms" else {}
        arch = make_arch(space, d["choices"], latency, strict_table=strict_table,
                         search=search, costs=cost_records(space, d["choices"], latency),
                         **target,
                         **{k: main_arch[k] for k in ("reproducibility", "decisions", "config")
                            if k in main_arch})
        arch["target"] = dict(d["verdict"])  # of d["predicted"], the same paper model
        arch["target"]["decode"] = {"method": method, **{
            k: v for k, v in d.items()
            if k not in ("choices", "verdict", "target_ms", "target", "unit", "params_limit")}}
        arch["constraints"] = constraints_record(
            d["predicted"], params.count(d["choices"]), d["target"], tolerance,
            max_params or None, *lam, d.get("params_limit"), activation.record(d["choices"]),
            kind=table.kind, unit=table.unit)
        out.append(arch)
    return out


def _kib(n: int | None) -> float | None:
    return None if n is None else round(n / 1024, 1)


def _row(arch: dict, file: str) -> dict:
    target = arch.get("target") or {}
    decode = target.get("decode") or {}
    constraints = arch.get("constraints") or {}
    cost = constraints.get(constraints.get("cost", "latency")) or {}
    return {"target_ms": arch.get("target_ms"), "predicted_ms": arch["predicted_ms"],
            "target": cost.get("target", arch.get("target_ms")),
            "predicted": cost.get("value", arch["predicted_ms"]), "unit": cost.get("unit", "ms"),
            "error_pct": target.get("error_pct"), "within_tolerance": target.get("within_tolerance"),
            "shift": decode.get("shift"), "changed_layers": decode.get("changed_layers"),
            "params": ((arch.get("constraints") or {}).get("params") or {}).get("value"),
            "activation_kib": _kib(((arch.get("constraints") or {}).get("activation") or {})
                                   .get("float32_bytes")),
            "supernet_val_accuracy_ema": arch["search"]["supernet_val_accuracy_ema"],
            "layers": list(arch["layers"]), "stages": list(arch["stages"]), "file": file}


def many_budgets(config, model, datasets, space: SearchSpace, table: CostTable, main_arch: dict,
                 targets: Sequence[float], method: str,
                 latency: CostTable | None = None) -> dict | None:
    """Decodes and evaluates one net per budget (every host: the evaluation is collective).

    Returns None without budgets, else ``{"archs": [...], "table": {...}}`` for
    :func:`write_budgets`; the table also holds arch.json's net evaluated the same way.
    """
    if not targets:
        return None
    strict = not config.get("table_proxy", False)
    bn = int(config.schedule.bn_recalibration_batches)
    tolerance, max_params = float(config.target_tolerance), int(config.get("max_params", 0))
    decoded = decode_budgets(model.decisions(), model.choices(), space, table, targets,
                             tolerance, strict_table=strict, max_params=max_params)
    accuracies = [float(forced_evaluation(model, datasets, bn, d["choices"])["accuracy"])
                  for d in decoded]
    main_forced = float(forced_evaluation(model, datasets, bn, main_arch["layers"])["accuracy"])
    archs = budget_archs(main_arch, space, table, decoded, accuracies, method, strict_table=strict,
                         tolerance=tolerance, max_params=max_params, latency=latency)
    main_row = _row({**main_arch, "search": {
        **main_arch["search"], "supernet_val_accuracy_ema": main_forced}}, "arch.json")
    return {"archs": archs, "table": {
        "format": BUDGETS_FORMAT,
        "latency_table": latency.summary() if latency is not None else (
            table.summary() if table.kind == "latency" else None),
        "cost": {"kind": table.kind, "unit": table.unit},
        "tolerance_pct": 100 * float(config.target_tolerance),
        "method": method,
        "accuracy_of": ACCURACY_OF,
        "supernet_val_images": main_arch["search"].get("supernet_val_images"),
        "main": {**main_row, "unforced_supernet_val_accuracy_ema":
                 main_arch["search"]["supernet_val_accuracy_ema"]},
        "budgets": [_row(a, arch_filename(d["target"], table.unit))
                    for a, d in zip(archs, decoded)],
    }}


def write_budgets(workdir: str, result: dict) -> list[str]:
    """Writes every arch_<T>ms.json, budgets.json, budgets.csv and fig_budgets.png
    (atomically, chief only); returns their paths."""
    paths = []
    table = result["table"]
    for arch, row in zip(result["archs"], table["budgets"]):
        path = os.path.join(workdir, row["file"])
        write_arch(path, arch)
        paths.append(path)
    path = os.path.join(workdir, BUDGETS_JSON)
    atomic_write_json(path, table)
    paths.append(path)
    path = os.path.join(workdir, BUDGETS_CSV)
    atomic_write_text(path, _csv(table))
    paths.append(path)
    path = os.path.join(workdir, FIG_BUDGETS)
    plot_budgets(table, path)
    paths.append(path)
    return paths


def _csv(table: dict) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in [*table["budgets"], table["main"]]:
        writer.writerow({**row, "changed_layers": " ".join(map(str, row["changed_layers"] or []))})
    return buffer.getvalue()


def plot_budgets(table: dict, out_png: str) -> str:
    """Predicted latency against supernet accuracy of each decoded net; arch.json starred."""
    rows = sorted(table["budgets"], key=lambda r: r["predicted"])
    cost = table.get("cost") or {"kind": "latency", "unit": "ms"}
    fig = Figure(figsize=(6.0, 4.2))
    ax = fig.add_subplot()
    xs = [r["predicted"] for r in rows]
    ys = [100 * r["supernet_val_accuracy_ema"] for r in rows]
    ax.plot(xs, ys, "o-", color="tab:blue", label="decoded at a budget")
    for r, x, y in zip(rows, xs, ys):
        ax.annotate(f"{r['target']:g}", (x, y), textcoords="offset points", xytext=(4, 4),
                    fontsize=7)
    main = table["main"]
    ax.plot([main["predicted"]], [100 * main["supernet_val_accuracy_ema"]], "*", ms=14,
            color="tab:red", label="arch.json (the search's decode)")
    where = (table.get("latency_table") or {}).get("device", "?") \
        if cost["kind"] == "latency" else "analytic"
    ax.set_xlabel(f"predicted {cost['kind']} ({cost['unit']}, {where})")
    ax.set_ylabel("supernet validation top-1 (%, EMA, forced)")
    ax.set_title(f"One search, many budgets (labels: budget in {cost['unit']})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(out_png, buffer.getvalue())
    return out_png


def summary_lines(table: dict) -> list[str]:
    """The budgets as a short table for the search's summary."""
    lines = [f"{'budget':>9} {'predicted':>9} {'error':>8} {'params':>10} {'shift':>7} "
             f"{'top1':>6}  {'changed layers':<16} file"]
    for r in [*table["budgets"], table["main"]]:
        budget = f"{r['target']:.4g}" if r.get("target") is not None else "-"
        error = f"{r['error_pct']:+.1f}%" if r["error_pct"] is not None else "-"
        shift = f"{r['shift']:+.3f}" if r["shift"] is not None and math.isfinite(r["shift"]) else "-"
        changed = ",".join(map(str, r["changed_layers"])) if r["changed_layers"] else "-"
        flag = "" if r["within_tolerance"] in (True, None) else "  OUTSIDE tolerance"
        params = f"{r['params']:,}" if r.get("params") is not None else "-"
        lines.append(f"{budget:>9} {r['predicted']:>9.4g} {error:>8} {params:>10} {shift:>7} "
                     f"{100 * r['supernet_val_accuracy_ema']:>5.1f}%  {changed:<16} {r['file']}{flag}")
    return lines
