"""Latency-target mode: search for a net *at* a budget, without a lambda sweep.

The paper tunes lambda by hand until the searched net lands near 80 ms. Here
lambda is the Lagrange multiplier of the equality constraint ``ln(R / T) = 0``
and is adapted by dual ascent after the warm-up:

    lambda <- clip(lambda + eta * ln(R / T), -lambda_max, lambda_max)

R is the predicted runtime of the current hard decisions. Above the target
lambda grows and the runtime loss pushes thresholds up (fewer, smaller ops);
below it lambda shrinks and may turn negative, which rewards runtime and lets
the net grow back to the budget: the target is a point, not only a ceiling.
"""

from __future__ import annotations

import math


class LambdaController:
    """Dual ascent on lambda towards ``target_ms``.

    Args:
      target_ms: the latency budget T (ms, on the search's table).
      eta: dual step size per optimizer step.
      initial_lambda: lambda when the warm-up ends.
      max_lambda: bound on |lambda|.
    """

    def __init__(self, target_ms: float, eta: float, initial_lambda: float, max_lambda: float):
        if target_ms <= 0:
            raise ValueError(f"target_ms must be positive, got {target_ms}.")
        self.target_ms = float(target_ms)
        self.eta = float(eta)
        self.initial_lambda = float(initial_lambda)
        self.max_lambda = float(max_lambda)

    def next_lambda(self, current: float, runtime_ms: float, first: bool = False) -> float:
        lam = self.initial_lambda if first else current
        lam += self.eta * math.log(runtime_ms / self.target_ms)
        return max(-self.max_lambda, min(self.max_lambda, lam))


def budget_verdict(predicted_ms: float, target_ms: float, tolerance: float) -> dict:
    """Whether the decoded net is within ``tolerance`` (fraction) of the target."""
    error = predicted_ms / target_ms - 1.0
    ok = abs(error) <= tolerance
    message = (
        f"target {target_ms:g} ms: predicted {predicted_ms:.3f} ms ({100 * error:+.2f} %), "
        + ("within" if ok else "OUTSIDE")
        + f" the +-{100 * tolerance:g} % tolerance"
    )
    return {"target_ms": target_ms, "predicted_ms": predicted_ms, "error_pct": 100 * error,
            "tolerance_pct": 100 * tolerance, "within_tolerance": ok, "message": message}
