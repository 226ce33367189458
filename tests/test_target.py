"""Latency-target mode (issue 7): the lambda controller, the budget verdict, and
(slow, opt-in) three targets across the embedded default's range."""

import json
import math
import os
import subprocess
import sys

import pytest

from spnas.search.target import LambdaController, budget_verdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_lambda_rises_above_the_target_and_falls_below():
    c = LambdaController(target_ms=1.0, eta=0.1, initial_lambda=0.02, max_lambda=1.0)
    up = c.next_lambda(0.5, runtime_ms=2.0)
    down = c.next_lambda(0.5, runtime_ms=0.5)
    assert up > 0.5 > down
    assert c.next_lambda(0.5, runtime_ms=1.0) == pytest.approx(0.5)  # at the target: unchanged
    # The first step after the warm-up starts from the configured lambda, not the 0 of the warm-up.
    assert c.next_lambda(0.0, runtime_ms=1.0, first=True) == pytest.approx(0.02)


def test_lambda_is_bounded_both_ways():
    c = LambdaController(target_ms=1.0, eta=10.0, initial_lambda=0.0, max_lambda=0.3)
    assert c.next_lambda(0.0, runtime_ms=100.0) == pytest.approx(0.3)
    assert c.next_lambda(0.0, runtime_ms=0.01) == pytest.approx(-0.3)


def test_proportional_part_reacts_when_the_target_is_crossed():
    pure = LambdaController(1.0, eta=0.01, initial_lambda=0.1, max_lambda=1.0)
    pi = LambdaController(1.0, eta=0.01, initial_lambda=0.1, max_lambda=1.0, kp=1.0)
    lams = []
    for c in (pure, pi):
        lam = c.next_lambda(0.0, 1.2, first=True)  # above the target ...
        lam = c.next_lambda(lam, 1.2)
        lams.append(c.next_lambda(lam, 0.9))  # ... then just below it
    lam_pure, lam_pi = lams
    # Pure dual ascent still holds most of what it integrated above the target;
    # the P part takes kp * (ln 0.9 - ln 1.2) off at once.
    integral = 0.01 * (2 * math.log(1.2) + math.log(0.9))
    assert lam_pure == pytest.approx(0.1 + integral) and lam_pure > 0.1
    assert lam_pi == pytest.approx(0.1 + integral + math.log(0.9)) and lam_pi < 0.1


def test_first_update_after_resume_is_integral_only():
    c = LambdaController(1.0, eta=0.1, initial_lambda=0.0, max_lambda=1.0, kp=5.0)
    assert c.next_lambda(0.3, runtime_ms=2.0) == pytest.approx(0.3 + 0.1 * math.log(2.0))


def test_bad_target_rejected():
    with pytest.raises(ValueError, match="target_ms must be positive"):
        LambdaController(target_ms=0.0, eta=0.1, initial_lambda=0.0, max_lambda=1.0)
    with pytest.raises(ValueError, match="target_kp >= 0"):
        LambdaController(target_ms=1.0, eta=0.1, initial_lambda=0.0, max_lambda=1.0, kp=-1)
    # A user error (one line from the CLI), not a bug.
    from spnas.errors import UserError
    from spnas.search.target import SearchConfigError

    with pytest.raises(SearchConfigError, match="target_lr >= 0") as info:
        LambdaController(target_ms=1.0, eta=-1.0, initial_lambda=0.0, max_lambda=1.0)
    assert isinstance(info.value, UserError)


def test_budget_verdict():
    inside = budget_verdict(0.41, 0.40, 0.05)
    assert inside["within_tolerance"] and inside["error_pct"] == pytest.approx(2.5)
    outside = budget_verdict(0.30, 0.40, 0.05)
    assert not outside["within_tolerance"] and "OUTSIDE" in outside["message"]
    assert outside["error_pct"] == pytest.approx(-25.0)


def _smoke_decisions():
    """Trained-looking decisions of the smoke space: margins of different sizes."""
    def d(index, n5, t5, n100, t100, n50=None, t50=None):
        on = {"d5x5": float(n5 > t5), "d100c": float(n100 > t100),
              "d50c": 1.0 if t50 is None else float(n50 > t50)}
        return {"index": index, **on, "norm5x5": n5, "t5x5": t5, "norm100c": n100,
                "t100c": t100, "norm50c": 1.0 if n50 is None else n50, "t50c": t50}

    return [d(1, 1.0, 0.9, 1.0, 0.5), d(2, 1.0, 0.2, 1.0, 0.95, 1.0, 0.3),
            d(3, 1.0, 1.1, 1.0, 0.8), d(4, 1.0, 0.7, 1.0, 1.5, 1.0, 0.1)]


def _smoke():
    from spnas.arch.handoff import choice_from_decisions
    from spnas.space import smoke_space
    from spnas.tables import shipped as tables
    from spnas.tables.table import load_table

    space = smoke_space()
    decisions = _smoke_decisions()
    choices = [spec.fixed_choice for spec in space.layers()]
    for d in decisions:
        choices[d["index"]] = choice_from_decisions(d["d5x5"], d["d100c"], d["d50c"])
    return space, load_table(tables.path("smoke_cpu")), decisions, choices


def test_budget_decode_keeps_a_net_already_within():
    from spnas.search.target import decode_at_budget
    from spnas.tables.runtime_model import predict_ms

    space, table, decisions, choices = _smoke()
    plain = predict_ms(table, choices, space)
    r = decode_at_budget(decisions, choices, space, table, plain * 1.02, 0.05)
    assert r["shift"] == 0.0 and r["choices"] == choices and r["changed_layers"] == []
    assert r["predicted_ms"] == pytest.approx(plain) == pytest.approx(r["unshifted_predicted_ms"])


@pytest.mark.parametrize("factor", [0.8, 1.06])
def test_budget_decode_moves_to_the_target_with_least_certain_groups(factor):
    from spnas.search.target import decode_at_budget
    from spnas.tables.runtime_model import predict_ms

    space, table, decisions, choices = _smoke()
    target = predict_ms(table, choices, space) * factor
    r = decode_at_budget(decisions, choices, space, table, target, 0.05)
    assert abs(r["predicted_ms"] / target - 1) <= 0.05
    assert r["predicted_ms"] == pytest.approx(predict_ms(table, r["choices"], space))
    assert (r["shift"] > 0) == (factor < 1) and r["changed_layers"]
    if factor < 1:
        # The smallest margin that is on is layer 2's d100c (1 - 0.95 = 0.05): it goes first.
        assert r["choices"][2] == "k5_e3" and choices[2] == "k5_e6"


def test_budget_decode_out_of_reach_takes_the_nearest():
    from spnas.search.target import decode_at_budget

    space, table, decisions, choices = _smoke()
    r = decode_at_budget(decisions, choices, space, table, 1e-3, 0.05)
    # Every indicator off: skip where allowed, k3_e3 elsewhere.
    assert r["choices"][1:5] == ["k3_e3", "skip", "k3_e3", "skip"]


@pytest.mark.parametrize("target", [1e-3, 1e6])
def test_unreachable_target_names_the_range(tmp_path, target):
    from spnas.configs_path import load_config
    from spnas.search.run import SearchConfigError, run
    from spnas.space import smoke_space
    from spnas.tables import shipped as tables
    from spnas.tables.runtime_model import latency_range_ms
    from spnas.tables.table import load_table

    lo, hi = latency_range_ms(load_table(tables.path("smoke_cpu")), smoke_space())
    config = load_config("smoke.py")
    config.unlock()
    config.target_ms = target
    with pytest.raises(SearchConfigError, match=f"{lo:.3f}-{hi:.3f} ms"):
        run(config, str(tmp_path))
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_targets_across_the_embedded_range(tmp_path, fraction):
    """A target at 25/50/75 % of the embedded default's latency range lands within 5 %."""
    from spnas.space import embedded_space
    from spnas.tables import shipped as tables
    from spnas.tables.runtime_model import latency_range_ms
    from spnas.tables.table import load_table

    lo, hi = latency_range_ms(load_table(tables.path("embedded_cpu")), embedded_space())
    target = round(lo + fraction * (hi - lo), 4)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-m", "spnas.search.main", f"--workdir={tmp_path}",
                        f"--config.target_ms={target}"], capture_output=True, text=True,
                       env=env, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    arch = json.loads((tmp_path / "arch.json").read_text())
    assert arch["target_ms"] == pytest.approx(target)
    assert abs(arch["predicted_ms"] / target - 1) <= 0.05, arch["target"]["message"]
