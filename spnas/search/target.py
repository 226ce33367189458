"""Latency-target mode: search for a net *at* a budget, without a lambda sweep.

The paper tunes lambda by hand until the searched net lands near 80 ms. Here
lambda is the Lagrange multiplier of the equality constraint ``ln(R / T) = 0``
and is set by a PI controller on the error ``e = ln(R / T)`` after the warm-up,
in velocity form:

    lambda <- clip(lambda + eta * e_k + kp * (e_k - e_{k-1}), -lambda_max, lambda_max)

R is the predicted runtime of the current hard decisions. The integral part
(``eta``, plain dual ascent) finds the lambda at which the runtime loss balances
the pull of the cross-entropy towards bigger nets; the proportional part
(``kp``) reacts at once when R crosses the target, which damps the overshoot
that pure dual ascent shows with these all-or-nothing decisions (the integral
keeps pushing until R has gone well past T). This is the PID-Lagrangian idea
of Stooke et al., "Responsive Safety in Reinforcement Learning by PID Lagrangian
Methods", ICML 2020. Above the target lambda grows and the runtime loss pushes
thresholds up (fewer, smaller ops); below it lambda shrinks and may turn
negative, which rewards runtime and lets the net grow back to the budget: the
target is a point, not only a ceiling.

The velocity form needs no state beyond lambda (a model variable, so it is
checkpointed) and the previous error; after a resume the first update has no
previous error and applies the integral part only. Clipping the velocity form
is also its anti-windup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from spnas.choices import choice_from_decisions
from spnas.errors import UserError
from spnas.space import SearchSpace
from spnas.tables.cost import CostTable
from spnas.tables.runtime_model import bind
from spnas.tables.table import LatencyTable


class SearchConfigError(UserError):
    """The search configuration cannot work (before anything is trained).

    Defined here, the lowest search module that checks search settings (the
    controller's gains); :mod:`spnas.search.run` raises and re-exports it.
    """

# Indicator -> (norm key, threshold key) in Supernet.decisions().
INDICATORS = {"d5x5": ("norm5x5", "t5x5"), "d100c": ("norm100c", "t100c"),
              "d50c": ("norm50c", "t50c")}


def check_gains(prefix: str, limit: float, eta: float, kp: float, max_lambda: float) -> None:
    """One line for a controller's bad limit or gains (``prefix``: the config keys' stem,
    ``target`` or ``params``); shared by the latency and the parameter controllers."""
    key = "target_ms" if prefix == "target" else "max_params"
    if limit <= 0:
        raise SearchConfigError(f"{key} must be positive, got {limit}.")
    if eta < 0 or kp < 0 or max_lambda <= 0:
        raise SearchConfigError(
            f"Need {prefix}_lr >= 0, {prefix}_kp >= 0 and {prefix}_max_lambda > 0, got "
            f"{eta}, {kp} and {max_lambda}.")


class LambdaController:
    """PI control of lambda towards ``target_ms`` (``kp = 0``: plain dual ascent).

    Args:
      target_ms: the latency budget T (ms, on the search's table).
      eta: integral gain (dual step size) per optimizer step.
      initial_lambda: lambda when the warm-up ends.
      max_lambda: bound on |lambda|.
      kp: proportional gain.
    """

    def __init__(self, target_ms: float, eta: float, initial_lambda: float, max_lambda: float,
                 kp: float = 0.0):
        check_gains("target", target_ms, eta, kp, max_lambda)
        self.target_ms = float(target_ms)
        self.eta = float(eta)
        self.kp = float(kp)
        self.initial_lambda = float(initial_lambda)
        self.max_lambda = float(max_lambda)
        self._last_error: float | None = None

    def next_lambda(self, current: float, runtime_ms: float, first: bool = False) -> float:
        """Lambda for the next step, from the current one and the current runtime."""
        error = math.log(runtime_ms / self.target_ms)
        if first:
            lam, previous = self.initial_lambda, 0.0
        else:
            lam = current
            previous = error if self._last_error is None else self._last_error
        self._last_error = error
        lam += self.eta * error + self.kp * (error - previous)
        return max(-self.max_lambda, min(self.max_lambda, lam))


def budget_verdict(predicted: float, target: float, tolerance: float, unit: str = "ms") -> dict:
    """Whether the decoded net is within ``tolerance`` (fraction) of the target (both in
    ``unit``; a latency verdict also holds ``target_ms`` and ``predicted_ms``)."""
    error = predicted / target - 1.0
    ok = abs(error) <= tolerance
    message = (
        f"target {target:g} {unit}: predicted {predicted:.3f} {unit} ({100 * error:+.2f} %), "
        + ("within" if ok else "OUTSIDE")
        + f" the +-{100 * tolerance:g} % tolerance"
    )
    out = {"target": target, "predicted": predicted, "unit": unit, "error_pct": 100 * error,
           "tolerance_pct": 100 * tolerance, "within_tolerance": ok, "message": message}
    if unit == "ms":
        out.update(target_ms=target, predicted_ms=predicted)
    return out


def bound_cost(table: CostTable | LatencyTable, space: SearchSpace,
               strict_table: bool = True) -> CostTable:
    """``table`` as a cost table of ``space``: a latency table is bound (validated) here."""
    if isinstance(table, CostTable) and table.space == space:
        return table
    return bind(table, space, strict_table)


def relative_margins(decisions: Sequence[dict]) -> dict[tuple[int, str], float]:
    """(layer index, indicator) -> (norm - t) / norm: > 0 on, < 0 off, 1 when t = 0."""
    out = {}
    for d in decisions:
        for name, (norm_key, t_key) in INDICATORS.items():
            if d.get(t_key) is None:  # no such threshold (d50c where skip is not allowed)
                continue
            norm, t = float(d[norm_key]), float(d[t_key])
            out[(int(d["index"]), name)] = (norm - t) / norm if norm > 0 else -math.inf
    return out


def with_margins(decisions: Sequence[dict]) -> list[dict]:
    """The decisions with each indicator's relative margin ``(norm - t) / norm`` added
    (``margin5x5``, ``margin100c``, ``margin50c``): how close it came to flipping."""
    margins = relative_margins(decisions)
    out = []
    for d in decisions:
        d = dict(d)
        for name in INDICATORS:
            key = (int(d["index"]), name)
            d["margin" + name[1:]] = margins.get(key)
        out.append(d)
    return out


def closest_decisions(decisions: Sequence[dict], k: int = 3) -> list[dict]:
    """The ``k`` indicators nearest their thresholds (smallest |relative margin|)."""
    margins = relative_margins(decisions)
    rows = [{"layer": i, "indicator": name, "margin": m}
            for (i, name), m in margins.items() if math.isfinite(m)]
    return sorted(rows, key=lambda r: abs(r["margin"]))[:k]


def margin_decodes(decisions: Sequence[dict], base_choices: Sequence[str],
                   space: SearchSpace) -> list[tuple[float, list[str]]]:
    """Every net one global shift ``s`` of the decode's cut-off gives, as ``(s, choices)``
    in order of ``|s|`` (the first is ``s = 0``, the plain decode).

    The trained supernet decodes indicator ``i`` as on when its relative margin
    ``(norm_i - t_i) / norm_i`` is above 0; at shift ``s`` it is on when the margin
    is above ``s``. One shift per distinct net: 0, below every margin (everything
    on) and each margin (it and all below it off); each net is reached by the
    smallest ``|s|`` of its interval. Fixed layers keep ``base_choices``.
    """
    margins = relative_margins(decisions)
    by_index = {int(d["index"]): d for d in decisions}
    layers = space.layers()

    def choices_at(shift: float) -> list[str]:
        out = list(base_choices)
        for spec in space.layers():
            if not spec.searchable:
                continue
            d = by_index[spec.index]
            on = {name: (margins[(spec.index, name)] > shift
                         if (spec.index, name) in margins else float(d[name]) > 0.5)
                  for name in INDICATORS}
            out[spec.index] = choice_from_decisions(on["d5x5"], on["d100c"], on["d50c"],
                                                    layers[spec.index].candidates)
        return out

    values = sorted({v for v in margins.values() if math.isfinite(v)})
    shifts = sorted({0.0, (values[0] - 1.0) if values else -1.0, *values}, key=abs)
    return [(shift, choices_at(shift)) for shift in shifts]


def decode_at_budget(
    decisions: Sequence[dict],
    base_choices: Sequence[str],
    space: SearchSpace,
    table: CostTable | LatencyTable,
    target_ms: float,
    tolerance: float,
    strict_table: bool = True,
) -> dict:
    """The decoded net nearest to the trained decisions whose latency is at the target.

    The trained supernet decodes indicator ``i`` as on when ``norm_i > t_i``,
    i.e. when its relative margin ``(norm_i - t_i) / norm_i`` is above 0. This
    shifts that cut-off by one global ``s`` for every indicator (on when the
    margin is above ``s``): ``s > 0`` drops the least certain groups first,
    ``s < 0`` adds back the groups that came closest to their thresholds. The
    predicted latency falls step by step as ``s`` grows; among the shifts whose
    net is within ``tolerance`` of ``target_ms``, the one with the smallest
    ``|s|`` wins (``s = 0``, the plain decode, when it is already within). If
    none is within, the net nearest to the target is taken and the verdict says
    it is outside.

    The budget and the predictions are in the cost table's unit (ms for a
    latency table, MMAC for MACs, ...).

    Returns:
      A dict with ``choices``, ``shift``, ``predicted`` (paper model), the
      ``changed_layers`` and the plain decode's ``unshifted_choices`` and
      ``unshifted_predicted`` (a latency decode also under ``predicted_ms`` and
      ``unshifted_predicted_ms``).
    """
    bound = bound_cost(table, space, strict_table)
    decodes = margin_decodes(decisions, base_choices, space)
    best = None
    for shift, choices in decodes:
        ms = bound.predict(choices)
        error = abs(ms / target_ms - 1.0)
        key = (error > tolerance, error if error > tolerance else 0.0, abs(shift))
        if best is None or key < best[0]:
            best = (key, shift, choices, ms)
        if error <= tolerance:  # shifts are in order of |s|: the first hit is the nearest
            break
    _, shift, choices, ms = best
    plain = decodes[0][1]
    out = {
        "choices": choices,
        "shift": shift,
        "predicted": ms,
        "changed_layers": [i for i, (a, b) in enumerate(zip(plain, choices)) if a != b],
        "unshifted_choices": plain,
        "unshifted_predicted": bound.predict(plain),
    }
    if bound.unit == "ms":
        out.update(predicted_ms=out["predicted"],
                   unshifted_predicted_ms=out["unshifted_predicted"])
    return out
