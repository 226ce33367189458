"""A parameter limit beside the latency target: ``P <= max_params`` during the search.

Multi-objective NAS frameworks constrain latency and memory together; here the
second constraint is the parameter count of the decoded net. The supernet
predicts it from the same thresholded group-Lasso indicators as its runtime
(Eq. 11-12 form, :func:`spnas.arch.params.layer_params`) and adds the loss term
``lambda_p * 1e3 * ln(P)``. ``lambda_p`` is the Lagrange multiplier of the
inequality ``ln(P / max_params) <= 0``, set after the warm-up by projected dual
ascent (the integral ``I``) with a proportional part (Stooke et al., "Responsive
Safety in Reinforcement Learning by PID Lagrangian Methods", ICML 2020):

    e_k = ln(P_k / max_params)
    I <- clip(I + eta * e_k, 0, lambda_p_max)
    lambda_p <- clip(I + kp * e_k, 0, lambda_p_max)     (over the limit, e_k > 0)
    lambda_p <- min(lambda_p, clip(I + kp * e_k, 0, ...)) (at or under it)

lambda_p grows only over the limit (at once by ``kp * e``, then by ``eta * e`` per
step); at or under it lambda_p never grows, falls as the net goes further under,
and the integral decays back to 0 (an inequality, not a point). The signed
proportional part matters on the way down: with a proportional part on the
excess only, lambda_p stayed at 0.05-0.2 for the 50 steps after the net went
under a 600,000 limit on the embedded default, which ended at 466,000 (545,000
with the signed part). It runs jointly
with the latency controller of :mod:`spnas.search.target` or the fixed lambda.

After the search the decoded net is moved under the limit by the global margin
shift of :func:`spnas.search.target.decode_at_budget` (:func:`decode_under_limit`),
and combinations no net reaches are rejected before training (:func:`check_limits`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from spnas.arch.params import ParamsTable
from spnas.search.target import SearchConfigError, check_gains, margin_decodes
from spnas.space import SearchSpace
from spnas.tables.cost import CostTable


class ParamsLimitController:
    """PI control of lambda_p on ``ln(P / max_params) <= 0`` (projected dual ascent).

    Args:
      max_params: the limit N (parameters of the decoded net).
      eta: integral gain (dual step size) per optimizer step.
      max_lambda: upper bound of lambda_p (the lower one is 0).
      kp: proportional gain.
    """

    def __init__(self, max_params: int, eta: float, max_lambda: float, kp: float = 0.0):
        check_gains("params", max_params, eta, kp, max_lambda)
        self.max_params = int(max_params)
        self.eta = float(eta)
        self.kp = float(kp)
        self.max_lambda = float(max_lambda)
        self._integral: float | None = None

    def next_lambda(self, current: float, params: float, first: bool = False) -> float:
        """lambda_p for the next step, from the current one and the current count."""
        error = math.log(params / self.max_params)
        if first:
            current, integral = 0.0, 0.0
        else:  # after a resume without state, the multiplier stands for the integral
            integral = current if self._integral is None else self._integral
        self._integral = max(0.0, min(self.max_lambda, integral + self.eta * error))
        lam = max(0.0, min(self.max_lambda, self._integral + self.kp * error))
        return lam if error > 0 else min(lam, current)

    def state(self) -> dict:
        return {"integral": self._integral}

    def restore(self, state: dict) -> None:
        self._integral = state.get("integral")


def latency_frontier(table: CostTable, params: ParamsTable) -> list[tuple[int, float]]:
    """The dearest net of each parameter count on the search's cost table: ``(params,
    cost)`` points, params rising, cost strictly rising; every net of the space has a
    point with no more params and at least its predicted cost (the search's paper model).

    Exact, by dynamic programming over the layers with dominated partial nets dropped
    (the costs are additive over layers).
    """
    points = [(params.constant, table.constant)]
    for index in params.layers:
        options = [(p, table.layer_cost(index, c)) for c, p in params.options(index).items()]
        merged = sorted(((p + dp, m + dm) for p, m in points for dp, dm in options),
                        key=lambda x: (x[0], -x[1]))
        points, best = [], -math.inf
        for p, m in merged:
            if m > best:
                points.append((p, m))
                best = m
    return points


def check_limits(space: SearchSpace, table: CostTable, max_params: int,
                 target_ms: float | None, tolerance: float, what: str = "target_ms") -> ParamsTable:
    """Rejects a ``max_params`` no net reaches, alone or with ``target_ms``; returns the
    space's :class:`ParamsTable`. ``what`` names the latency key in the message
    (``targets`` for the many-budgets decodes).

    Raises:
      SearchConfigError: one line naming the reachable range.
    """
    params = ParamsTable.from_space(space)
    lo, hi = params.range()
    if max_params < lo:
        raise SearchConfigError(
            f"max_params={max_params} is below the smallest net of this space ({lo} "
            f"parameters: every skippable layer skipped, k3_e3 elsewhere); reachable: "
            f"{lo}-{hi} (0: no limit).")
    if target_ms is not None:
        floor_ms = target_ms * (1.0 - tolerance)
        frontier = latency_frontier(table, params)
        slowest = max(m for p, m in frontier if p <= max_params)
        if slowest < floor_ms:
            needed = min(p for p, m in frontier if m >= floor_ms)
            raise SearchConfigError(
                f"{what}={target_ms:g} with max_params={max_params}: no net of at most "
                f"{max_params} parameters is within the -{100 * tolerance:g} % tolerance of "
                f"the target (the dearest predicts {slowest:.4g} {table.unit} on {table.label}); "
                f"reachable: {what} <= {slowest / (1.0 - tolerance):.4g} with this limit, "
                f"or max_params >= {needed} for this target.")
    return params


def decode_under_limit(
    decisions: Sequence[dict],
    choices: Sequence[str],
    space: SearchSpace,
    table: CostTable,
    params: ParamsTable,
    max_params: int,
    target_ms: float | None,
    tolerance: float,
) -> dict:
    """``choices`` (the plain or budget decode) moved under ``max_params`` if over it.

    Among the nets of :func:`spnas.search.target.margin_decodes` with at most
    ``max_params`` parameters, the one with the smallest ``|s|`` whose latency is
    within ``tolerance`` of ``target_ms`` wins; if none is, the one nearest to the
    target (``within_tolerance`` False); without a target, the smallest ``|s|``.
    The net with every indicator off (the smallest of the space) is among them, so
    a limit :func:`check_limits` accepts is always met.

    Returns:
      A dict with ``choices``, ``params``, ``moved`` (whether the limit changed the
      net), ``shift``, ``changed_layers``, ``unlimited_params`` (before the move) and
      ``within_tolerance`` (None without a target).
    """
    choices = list(choices)
    before = params.count(choices)
    best = None
    if before > max_params:
        for shift, candidate in margin_decodes(decisions, choices, space):
            if params.count(candidate) > max_params:
                continue
            if target_ms is None:
                best = (None, shift, candidate)
                break
            error = abs(table.predict(candidate) / target_ms - 1.0)
            key = (error > tolerance, error if error > tolerance else 0.0, abs(shift))
            if best is None or key < best[0]:
                best = (key, shift, candidate)
            if error <= tolerance:  # in order of |s|: the first hit is the nearest
                break
    shift, final = (best[1], best[2]) if best else (None, choices)
    within = None
    if target_ms is not None:
        within = abs(table.predict(final) / target_ms - 1.0) <= tolerance
    return {
        "choices": final,
        "params": params.count(final),
        "moved": best is not None,
        "shift": shift,
        "changed_layers": [i for i, (a, b) in enumerate(zip(choices, final)) if a != b],
        "unlimited_params": before,
        "within_tolerance": within,
    }


def constraints_record(predicted_ms: float, params: int, target_ms: float | None,
                       tolerance: float, max_params: int | None, runtime_lambda: float,
                       params_lambda: float, limit: dict | None,
                       activation: dict | None = None, kind: str = "latency",
                       unit: str = "ms") -> dict:
    """arch.json's ``constraints``: both costs, the limits and which one binds at the end;
    with ``activation`` (:meth:`spnas.arch.memory.ActivationTable.record`) the net's peak
    activation memory too (reported; no limit on it).

    The search's cost (``kind`` in ``unit``: latency in ms unless the search targets
    MACs or parameters) is recorded under its kind, with ``"cost": kind``. Its target
    binds when it is set and the net is not below its tolerance band (an equality
    target met or pressed against); the parameter limit binds when the net is within
    the same tolerance under it, or the decode had to move the net under it (a
    multiplier still decaying far under the limit does not bind).
    """
    cost = {"target": target_ms, "value": predicted_ms, "unit": unit, "lambda": runtime_lambda,
            "binding": target_ms is not None and predicted_ms >= target_ms * (1 - tolerance)}
    if target_ms is not None:
        cost["tolerance_pct"] = 100 * tolerance
    moved = bool(limit and limit["moved"])
    record = {"target": max_params, "value": params, "lambda": params_lambda,
              "binding": max_params is not None and (moved or params >= max_params * (1 - tolerance))}
    if max_params is not None:
        record["decode"] = {k: v for k, v in (limit or {}).items() if k != "choices"}
    if kind == "params":  # the search's cost is the parameter count: no second limit
        record = cost
    binding = [name for name, r in ((kind, cost), ("params", record)) if r["binding"]]
    out = {kind: cost, "params": record, "binding": sorted(set(binding), key=binding.index),
           "cost": kind}
    if activation is not None:
        out["activation"] = dict(activation)
    return out


def limit_lines(constraints: dict, device: str) -> list[str]:
    """The search summary's lines about both costs and their limits (``device``: how the
    search's cost table is named)."""
    kind = constraints.get("cost", "latency")
    lat, par = constraints[kind], constraints["params"]
    unit = lat.get("unit", "ms")
    lines = [f"predicted params: {par['value']:,}"
             + (f" (limit {par['target']:,}; lambda_p {par['lambda']:.4g})"
                if par["target"] is not None and kind != "params" else " (no limit)")]
    decode = par.get("decode") or {}
    if decode.get("moved"):
        lines.append(f"params decode: margin shift {decode['shift']:+.3f} changed layers "
                     f"{', '.join(map(str, decode['changed_layers']))} (before: "
                     f"{decode['unlimited_params']:,} params)")
        if decode.get("within_tolerance") is False:
            lines.append(f"params decode: no net under the limit is within the {kind} "
                         "tolerance; took the one nearest to the target")
    act = constraints.get("activation")
    if act:
        lines.append(f"peak activation memory (batch 1): {act['float32_bytes'] / 1024:,.1f} KiB "
                     f"float32, {act['int8_bytes'] / 1024:,.1f} KiB int8 (tensors alive at once)")
    binding = " and ".join(constraints["binding"]) or "none"
    lines.append(f"binding at the end: {binding} ({kind} {lat['value']:.4g} {unit} on {device}"
                 + (f", target {lat['target']:g} {unit}" if lat["target"] is not None else "")
                 + f"; params {par['value']:,}"
                 + (f", limit {par['target']:,}" if par["target"] is not None
                    and kind != "params" else "") + ")")
    return lines
