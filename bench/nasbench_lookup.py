"""Look-ups and baselines on NAS-Bench-Macro, the CIFAR-10 macro search-space benchmark.

NAS-Bench-Macro (Su et al., "Prioritized Architecture Sampling with Monte-Carlo Tree
Search", CVPR 2021; repository xiusu/NAS-Bench-Macro, ``data/nas-bench-macro_cifar10.json``,
Apache License 2.0) trained every network of a small macro space on CIFAR-10: three
stages of 2 / 3 / 3 searchable layers (64 / 128 / 256 channels, the first layer of each
stage with stride 2), each layer one of three choices, written as one digit per layer:

* ``0``: identity (at a stage's first layer, a 1x1 conv with stride 2 + BN, since the
  shape changes there),
* ``1``: MBConv with expansion 3 and a 3x3 kernel (``MB3_K3``),
* ``2``: MBConv with expansion 6 and a 5x5 kernel (``MB6_K5``).

The file maps each of the 3**8 = 6,561 8-digit codes to ``test_acc`` (three trainings,
seeds 0-2), ``mean_acc``, ``std``, ``params`` and ``flops`` (multiply-accumulates of the
conv and FC layers). The benchmark's trainer moves a stage's identities to the stage's
end, so codes that differ only in the order of the identities among a stage's non-first
layers are the same net and carry the same figures: 3,969 distinct nets
(:func:`canonical` gives a code's representative).

The functions here measure a searched architecture against the whole benchmark under
some cost model: ``costs`` maps every code to its cost (the benchmark's ``flops``, a
predicted latency, ...) and ``acc`` maps every code to its ``mean_acc``. They give the
random-search window of Single-Path NAS's Table 1 (:func:`window_stats`), the exact
expected best of ``n`` random draws under a budget (:func:`expected_best_of_n`), a
code's regret and percentile among the codes no more costly (:func:`regret`,
:func:`percentile`), the Pareto front (:func:`pareto_front`), budgets spread over the
reachable costs (:func:`budgets_at`), a figure (:func:`plot`) and Kendall's tau-b
(:func:`kendall_tau`). :class:`Baseline` bundles ``costs`` and ``acc`` for the same
calls as methods.

Every population here is the set of *codes*, not of canonical nets: a net with several
codes counts several times, as it does for a search that samples each layer's choice
uniformly and independently.

Only the standard library and numpy are needed; matplotlib is imported by :func:`plot`
alone.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

STAGES: tuple[int, ...] = (2, 3, 3)
"""Searchable layers per stage; a code has ``sum(STAGES)`` = 8 digits."""

NUM_LAYERS: int = sum(STAGES)

CHOICE_DIGITS: dict[str, str] = {"skip": "0", "k3_e3": "1", "k5_e6": "2"}
"""spnas layer choice -> benchmark digit. At a stage's first layer the benchmark's ``0``
is a 1x1 conv with stride 2 + BN rather than a plain identity."""

DIGIT_CHOICES: dict[str, str] = {digit: choice for choice, digit in CHOICE_DIGITS.items()}
"""Benchmark digit -> spnas layer choice (the inverse of :data:`CHOICE_DIGITS`)."""

NUMERIC_FIELDS: tuple[str, ...] = ("mean_acc", "params", "flops")
"""Fields every benchmark entry must carry as finite numbers."""

PLOT_MODES: dict[str, str] = {"dedicated": "o", "many_budgets": "s", "random": "^"}
"""Row mode accepted by :func:`plot` -> its marker shape."""

_CODE_RE = re.compile(rf"[{''.join(sorted(DIGIT_CHOICES))}]{{{NUM_LAYERS}}}")


# --------------------------------------------------------------------------- loading


class _DuplicateKey(Exception):
    """A JSON object repeats a key (raised by :func:`_no_duplicates`)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def load_bench(path: str | os.PathLike[str]) -> dict[str, dict]:
    """Reads and validates a NAS-Bench-Macro JSON file.

    Args:
        path: The JSON file: an object mapping 8-digit codes to entries.

    Returns:
        ``{code: entry}`` with every entry as stored (``test_acc``, ``mean_acc``,
        ``std``, ``params``, ``flops``).

    Raises:
        ValueError: One line naming the file, and where it applies the code and the
            field: the file is unreadable, is not JSON, is not an object, repeats a
            key or is empty; a code is not 8 digits in 0-2; an entry is not an object;
            ``mean_acc``, ``params`` or ``flops`` is missing or not a finite number;
            ``std`` (where present) is not a finite number; ``test_acc`` (where
            present) is not a non-empty list of finite numbers.
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            data = json.load(f, object_pairs_hook=_no_duplicates)
    except OSError as e:
        raise ValueError(f"{name}: cannot read the file: {e.strerror or e}") from e
    except _DuplicateKey as e:
        raise ValueError(f"{name}: key {e.args[0]!r} appears twice") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        message = str(e).replace("\n", " ")
        raise ValueError(f"{name}: not valid JSON: {message}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{name}: expected a JSON object of codes, got {type(data).__name__}")
    if not data:
        raise ValueError(f"{name}: no codes")
    for code, entry in data.items():
        if not _CODE_RE.fullmatch(code):
            raise ValueError(f"{name}: code {code!r}: not {NUM_LAYERS} digits in 0-2")
        if not isinstance(entry, dict):
            raise ValueError(f"{name}: code {code!r}: entry is not an object "
                             f"(got {type(entry).__name__})")
        for field in NUMERIC_FIELDS:
            if field not in entry:
                raise ValueError(f"{name}: code {code!r}: field {field!r} is missing")
            if not _is_number(entry[field]):
                raise ValueError(f"{name}: code {code!r}: field {field!r} is not a finite "
                                 f"number (got {entry[field]!r})")
        if "std" in entry and not _is_number(entry["std"]):
            raise ValueError(f"{name}: code {code!r}: field 'std' is not a finite number "
                             f"(got {entry['std']!r})")
        if "test_acc" in entry:
            runs = entry["test_acc"]
            if not (isinstance(runs, list) and runs and all(_is_number(a) for a in runs)):
                raise ValueError(f"{name}: code {code!r}: field 'test_acc' is not a "
                                 f"non-empty list of finite numbers (got {runs!r})")
    return data


def field_of(bench: Mapping[str, Mapping[str, Any]], field: str) -> dict[str, float]:
    """One numeric field of every entry, e.g. ``field_of(bench, "flops")`` as costs.

    Args:
        bench: As returned by :func:`load_bench`.
        field: ``mean_acc``, ``params``, ``flops``, ``std`` or another numeric field.

    Returns:
        ``{code: float(entry[field])}``.

    Raises:
        ValueError: An entry lacks the field (naming the code).
    """
    out: dict[str, float] = {}
    for code, entry in bench.items():
        if field not in entry:
            raise ValueError(f"code {code!r}: field {field!r} is missing")
        out[code] = float(entry[field])
    return out


# --------------------------------------------------------------------------- codes


def check_code(code: str) -> str:
    """``code`` if it is 8 digits in 0-2, else ValueError naming it."""
    if not isinstance(code, str) or not _CODE_RE.fullmatch(code):
        raise ValueError(f"code {code!r}: not {NUM_LAYERS} digits in 0-2")
    return code


def _layer_name(index: int) -> str:
    start = 0
    for stage, size in enumerate(STAGES):
        if index < start + size:
            return f"layer {index} (stage {stage}, position {index - start})"
        start += size
    return f"layer {index}"


def code_from_choices(choices: Sequence[str]) -> str:
    """The benchmark code of 8 searchable-layer choices in spnas spelling.

    Args:
        choices: One of ``skip``, ``k3_e3``, ``k5_e6`` per searchable layer, in order
            (2 + 3 + 3 layers, see :data:`STAGES`).

    Returns:
        The 8-digit code, e.g. ``["k3_e3", "skip", ...]`` -> ``"10..."``.

    Raises:
        ValueError: Not 8 choices, or a choice outside :data:`CHOICE_DIGITS` (naming
            the layer and the value).
    """
    if isinstance(choices, str) or len(choices) != NUM_LAYERS:
        got = repr(choices) if isinstance(choices, str) else f"{len(choices)}"
        raise ValueError(f"expected {NUM_LAYERS} layer choices, got {got}")
    digits = []
    for index, choice in enumerate(choices):
        if not isinstance(choice, str) or choice not in CHOICE_DIGITS:
            raise ValueError(f"{_layer_name(index)}: choice {choice!r} is not one of "
                             f"{', '.join(CHOICE_DIGITS)}")
        digits.append(CHOICE_DIGITS[choice])
    return "".join(digits)


def choices_from_code(code: str) -> list[str]:
    """The spnas layer choices of a code (the inverse of :func:`code_from_choices`).

    Raises:
        ValueError: ``code`` is not 8 digits in 0-2.
    """
    return [DIGIT_CHOICES[d] for d in check_code(code)]


def canonical(code: str) -> str:
    """The representative of a code's net: identities moved to each stage's end.

    Per stage: the first digit stays (there ``0`` is a strided 1x1 conv, not an
    identity), then the other digits that are not ``0`` in their order, then the
    ``0``s. E.g. ``"01002000"`` -> ``"01020000"``; ``"00000000"`` stays.

    Raises:
        ValueError: ``code`` is not 8 digits in 0-2.
    """
    check_code(code)
    parts = []
    start = 0
    for size in STAGES:
        stage = code[start:start + size]
        rest = stage[1:]
        parts.append(stage[0] + rest.replace("0", "") + "0" * rest.count("0"))
        start += size
    return "".join(parts)


def canonical_classes(codes: Iterable[str]) -> dict[str, list[str]]:
    """Groups codes by :func:`canonical`: ``{representative: [codes, sorted]}``."""
    classes: dict[str, list[str]] = {}
    for code in codes:
        classes.setdefault(canonical(code), []).append(code)
    return {rep: sorted(members) for rep, members in sorted(classes.items())}


# --------------------------------------------------------------------------- baselines


class WindowStats(NamedTuple):
    """Accuracy statistics of the codes inside a cost window."""

    mean: float
    """Mean ``mean_acc`` (NaN when ``count`` is 0)."""
    sd: float
    """Population standard deviation of ``mean_acc`` (NaN when ``count`` is 0)."""
    count: int
    """Number of codes in the window."""


def _pairs(costs: Mapping[str, float],
           acc: Mapping[str, float]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Codes of ``costs`` with their costs and accuracies as float arrays."""
    codes = list(costs)
    missing = [c for c in codes if c not in acc]
    if missing:
        raise ValueError(f"code {missing[0]!r}: no accuracy ({len(missing)} codes lack one)")
    c = np.fromiter((costs[k] for k in codes), dtype=np.float64, count=len(codes))
    a = np.fromiter((acc[k] for k in codes), dtype=np.float64, count=len(codes))
    return codes, c, a


def _cost_of(costs: Mapping[str, float], code: str) -> float:
    if code not in costs:
        raise ValueError(f"code {code!r}: no cost")
    return float(costs[code])


def window_stats(costs: Mapping[str, float], acc: Mapping[str, float], budget: float,
                 lo: float = 0.94) -> WindowStats:
    """Accuracy of the codes whose cost lies in ``[lo * budget, budget]``.

    Single-Path NAS's Table 1 reports random search as the nets of 75-80 ms under an
    80 ms target, i.e. ``lo`` = 0.94 of the budget.

    Args:
        costs: ``{code: cost}`` of every code.
        acc: ``{code: mean_acc}`` (at least the codes of ``costs``).
        budget: The window's upper end (inclusive).
        lo: The window's lower end as a fraction of ``budget`` (inclusive).

    Returns:
        Mean and population sd of ``mean_acc`` over the codes in the window, and their
        count; mean and sd are NaN for an empty window.
    """
    _, c, a = _pairs(costs, acc)
    inside = a[(c >= lo * budget) & (c <= budget)]
    if inside.size == 0:
        return WindowStats(math.nan, math.nan, 0)
    return WindowStats(float(inside.mean()), float(inside.std()), int(inside.size))


def expected_best_of_n(costs: Mapping[str, float], acc: Mapping[str, float], budget: float,
                       n: int) -> float:
    """Exact expected best ``mean_acc`` of ``n`` codes drawn within a budget.

    The ``n`` codes are drawn uniformly with replacement from the ``k`` codes whose
    cost is ``<= budget``: uniform over *codes*, which is what sampling each layer's
    choice uniformly gives after rejecting the codes over budget, not uniform over
    canonical nets. With the eligible accuracies sorted, ``a_(1) <= ... <= a_(k)``,
    ``P(max <= a_(i)) = (i / k) ** n`` position by position, so

        ``E[max] = sum_i a_(i) * ((i / k) ** n - ((i - 1) / k) ** n)``,

    which stays exact with ties (tied values only share their weights).

    Args:
        costs: ``{code: cost}`` of every code.
        acc: ``{code: mean_acc}`` (at least the codes of ``costs``).
        budget: Largest eligible cost (inclusive).
        n: Number of draws, >= 1.

    Returns:
        The expected best ``mean_acc`` (``n`` = 1: the plain mean over eligible codes).

    Raises:
        ValueError: ``n`` < 1 or not an int, or no code costs ``<= budget``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    _, c, a = _pairs(costs, acc)
    eligible = np.sort(a[c <= budget])
    k = eligible.size
    if k == 0:
        raise ValueError(f"no code costs <= budget {budget!r} (cheapest: {float(c.min())!r})")
    i = np.arange(1, k + 1, dtype=np.float64)
    weights = (i / k) ** int(n) - ((i - 1) / k) ** int(n)
    return math.fsum((eligible * weights).tolist())


def regret(costs: Mapping[str, float], acc: Mapping[str, float], code: str) -> float:
    """Best ``mean_acc`` among codes with cost ``<= costs[code]``, minus ``acc[code]``.

    Returns:
        Points of accuracy the code leaves on the table at its own cost (>= 0; 0 for a
        code on the Pareto front).
    """
    own = _cost_of(costs, code)
    _, c, a = _pairs(costs, acc)
    return float(a[c <= own].max() - float(acc[code]))


def percentile(costs: Mapping[str, float], acc: Mapping[str, float], code: str) -> float:
    """Mid-rank percentile (0-100) of a code among the other codes no more costly.

    Among the *other* codes with cost ``<= costs[code]``: the share with ``mean_acc``
    strictly below ``acc[code]`` plus half the share tied with it, in percent. 100
    means better than all of them, 0 worse than all, 50 the middle (or all tied). The
    code itself is left out, so that a strictly best code scores exactly 100; the
    other codes of its own net (same canonical class, same figures) count as ties. A
    code with no other code as cheap scores 100.

    Raises:
        ValueError: ``code`` has no cost or no accuracy.
    """
    own = _cost_of(costs, code)
    if code not in acc:
        raise ValueError(f"code {code!r}: no accuracy")
    codes, c, a = _pairs(costs, acc)
    mine = float(acc[code])
    others = c <= own
    others[codes.index(code)] = False
    pool = a[others]
    if pool.size == 0:
        return 100.0
    below = int(np.count_nonzero(pool < mine))
    ties = int(np.count_nonzero(pool == mine))
    return 100.0 * (below + 0.5 * ties) / pool.size


def top_fraction(costs: Mapping[str, float], acc: Mapping[str, float], code: str) -> float:
    """``100 - percentile(...)``: the code lies in the top this-many percent."""
    return 100.0 - percentile(costs, acc, code)


def pareto_front(costs: Mapping[str, float], acc: Mapping[str, float]) -> list[str]:
    """The codes no other code beats on both cost (lower) and ``mean_acc`` (higher).

    A code is on the front unless another code costs no more and is no less accurate,
    better in one of the two. Codes with the very same cost and accuracy (such as the
    codes of one net under ``flops``) are all kept.

    Returns:
        The front's codes sorted by cost (then by code).
    """
    codes, c, a = _pairs(costs, acc)
    order = sorted(range(len(codes)), key=lambda j: (c[j], -a[j], codes[j]))
    front: list[str] = []
    best_cheaper = -math.inf
    j = 0
    while j < len(order):
        group_cost = c[order[j]]
        group = []
        while j < len(order) and c[order[j]] == group_cost:
            group.append(order[j])
            j += 1
        top = a[group[0]]  # the group is sorted by accuracy, highest first
        if top > best_cheaper:
            front.extend(sorted(codes[g] for g in group if a[g] == top))
            best_cheaper = top
    return front


def reachable_range(costs: Mapping[str, float]) -> tuple[float, float]:
    """``(cheapest, most costly)`` cost over all codes."""
    if not costs:
        raise ValueError("no costs")
    values = [float(v) for v in costs.values()]
    return min(values), max(values)


def budgets_at(costs: Mapping[str, float],
               fractions: Sequence[float] = (0.25, 0.5, 0.75)) -> tuple[float, ...]:
    """Budgets spread over the reachable costs: ``lo + f * (hi - lo)`` for each ``f``.

    Raises:
        ValueError: A fraction outside [0, 1].
    """
    lo, hi = reachable_range(costs)
    for f in fractions:
        if not (_is_number(f) and 0.0 <= f <= 1.0):
            raise ValueError(f"fraction {f!r} is not in [0, 1]")
    return tuple(lo + float(f) * (hi - lo) for f in fractions)


@dataclass(frozen=True)
class Baseline:
    """``costs`` and ``acc`` bundled, with the module's baselines as methods.

    Attributes:
        costs: ``{code: cost}`` of every code under one cost model.
        acc: ``{code: mean_acc}`` of (at least) the same codes.
    """

    costs: Mapping[str, float]
    acc: Mapping[str, float]

    @classmethod
    def from_bench(cls, bench: Mapping[str, Mapping[str, Any]],
                   cost_field: str = "flops") -> Baseline:
        """Costs from one field of the benchmark (``flops`` or ``params``)."""
        return cls(field_of(bench, cost_field), field_of(bench, "mean_acc"))

    def window_stats(self, budget: float, lo: float = 0.94) -> WindowStats:
        """See :func:`window_stats`."""
        return window_stats(self.costs, self.acc, budget, lo)

    def expected_best_of_n(self, budget: float, n: int) -> float:
        """See :func:`expected_best_of_n`."""
        return expected_best_of_n(self.costs, self.acc, budget, n)

    def regret(self, code: str) -> float:
        """See :func:`regret`."""
        return regret(self.costs, self.acc, code)

    def percentile(self, code: str) -> float:
        """See :func:`percentile`."""
        return percentile(self.costs, self.acc, code)

    def top_fraction(self, code: str) -> float:
        """See :func:`top_fraction`."""
        return top_fraction(self.costs, self.acc, code)

    def pareto_front(self) -> list[str]:
        """See :func:`pareto_front`."""
        return pareto_front(self.costs, self.acc)

    def reachable_range(self) -> tuple[float, float]:
        """See :func:`reachable_range`."""
        return reachable_range(self.costs)

    def budgets_at(self, fractions: Sequence[float] = (0.25, 0.5, 0.75)) -> tuple[float, ...]:
        """See :func:`budgets_at`."""
        return budgets_at(self.costs, fractions)


# --------------------------------------------------------------------------- figure


def plot(path: str | os.PathLike[str], costs: Mapping[str, float], acc: Mapping[str, float],
         rows: Sequence[Mapping[str, Any]], budgets: Sequence[float], cost_label: str,
         title: str | None = None) -> str:
    """Writes a PNG of the benchmark with the searched codes on it.

    Every code is a small grey point (cost, ``mean_acc``), the Pareto front a staircase
    (the best accuracy reachable at each cost), each budget a vertical dashed line, and
    each row a marker: the shape by the row's mode, the colour by its search seed
    (random nets light grey).
    Drawn with matplotlib's Agg canvas (no pyplot state is touched) and written
    atomically: a temporary file in the same folder, then ``os.replace``.

    Args:
        path: The PNG to write (its folder is created if missing).
        costs: ``{code: cost}`` of every code, in the unit of ``cost_label``.
        acc: ``{code: mean_acc}``.
        rows: Searched results, dicts with ``code``, ``seed`` and ``mode``
            (a key of :data:`PLOT_MODES`: ``dedicated``, ``many_budgets``, ``random``).
        budgets: Costs to mark with dashed lines.
        cost_label: The x axis label, e.g. ``"FLOPs (M)"``.
        title: Optional figure title.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: A row lacks a key, has an unknown mode, or a code without a cost.
    """
    for r, row in enumerate(rows):
        for key in ("code", "seed", "mode"):
            if key not in row:
                raise ValueError(f"row {r}: key {key!r} is missing")
        if row["mode"] not in PLOT_MODES:
            raise ValueError(f"row {r}: mode {row['mode']!r} is not one of "
                             f"{', '.join(PLOT_MODES)}")
        if row["code"] not in costs or row["code"] not in acc:
            raise ValueError(f"row {r}: code {row['code']!r} has no cost or accuracy")

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    codes, c, a = _pairs(costs, acc)
    fig = Figure(figsize=(8, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(c, a, s=3, c="0.7", linewidths=0, label=f"all codes ({len(codes)})",
               zorder=1)
    front = pareto_front(costs, acc)
    ax.plot([costs[k] for k in front], [acc[k] for k in front], color="black", lw=1.2,
            drawstyle="steps-post", label="Pareto front", zorder=2)
    for i, budget in enumerate(budgets):
        ax.axvline(float(budget), color="0.35", ls="--", lw=0.9, zorder=1.5,
                   label="budgets" if i == 0 else None)

    # Colours tell the search seeds apart; random nets (their "seed" is a draw index) are
    # one light colour, drawn first, and each search's own decode last, on top.
    seeds = sorted({row["seed"] for row in rows if row["mode"] != "random"},
                   key=lambda s: (str(type(s)), s))
    palette = [f"C{i % 10}" for i in range(len(seeds))]
    colour = dict(zip(seeds, palette))
    order = ("random", "many_budgets", "dedicated")
    for z, mode in enumerate(sorted(PLOT_MODES, key=lambda m: order.index(m)
                                    if m in order else -1)):
        picked = [row for row in rows if row["mode"] == mode]
        if not picked:
            continue
        faces = ["0.85" if mode == "random" else colour[row["seed"]] for row in picked]
        ax.scatter([costs[row["code"]] for row in picked], [acc[row["code"]] for row in picked],
                   marker=PLOT_MODES[mode], s=70 if mode == "dedicated" else 40, c=faces,
                   edgecolors="black", linewidths=0.6, zorder=3 + z)

    handles, _ = ax.get_legend_handles_labels()
    modes_used = [m for m in PLOT_MODES if any(row["mode"] == m for row in rows)]
    handles += [Line2D([], [], ls="", marker=PLOT_MODES[m], color="white",
                       markeredgecolor="black", markersize=7, label=m) for m in modes_used]
    handles += [Line2D([], [], ls="", marker="o", color=colour[s], markersize=7,
                       label=f"seed {s}") for s in seeds]
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.9)
    ax.set_xlabel(cost_label)
    ax.set_ylabel("CIFAR-10 test accuracy, mean of 3 runs (%)")
    ax.set_title(title or "NAS-Bench-Macro: searched codes against the benchmark")
    ax.grid(True, lw=0.3, alpha=0.5)
    fig.tight_layout()

    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png")
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


# --------------------------------------------------------------------------- statistics


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two equal-length sequences (ties in either handled).

    ``tau_b = (n_c - n_d) / sqrt((n_0 - n_x) * (n_0 - n_y))`` with ``n_c`` / ``n_d``
    the concordant / discordant pairs, ``n_0`` all pairs and ``n_x`` / ``n_y`` the
    pairs tied in ``x`` / ``y``. Counted exactly over all pairs (O(n^2) time,
    O(n) memory: about 0.2 s for the 6,561 codes).

    Returns:
        tau-b in [-1, 1]; NaN when undefined (fewer than 2 values, or either sequence
        constant).

    Raises:
        ValueError: Lengths differ, or a value is not finite.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.ndim != 1 or ys.ndim != 1 or xs.size != ys.size:
        raise ValueError(f"kendall_tau needs two 1-D sequences of one length, got shapes "
                         f"{xs.shape} and {ys.shape}")
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise ValueError("kendall_tau: values must be finite")
    n = xs.size
    score = 0  # n_c - n_d
    untied_x = 0  # n_0 - n_x
    untied_y = 0  # n_0 - n_y
    for i in range(n - 1):
        sx = np.sign(xs[i + 1:] - xs[i]).astype(np.int64)
        sy = np.sign(ys[i + 1:] - ys[i]).astype(np.int64)
        score += int(np.dot(sx, sy))
        untied_x += int(np.count_nonzero(sx))
        untied_y += int(np.count_nonzero(sy))
    if untied_x == 0 or untied_y == 0:
        return math.nan
    return score / math.sqrt(untied_x * untied_y)
