"""The parameter limit beside the latency target (spnas/arch/params.py, spnas/search/limits.py).

Per-layer counts are pinned against the plain models the builder makes (the plan's
count and the Keras model's own weights); the supernet's differentiable count must
equal the decoded net's with hard decisions; the controller only grows over the
limit; the decode ends under it; unreachable limits are one line before training;
and a smoke search through the CLI ends at or under the limit with both costs and
the binding constraint in arch.json.
"""

import csv
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from spnas.arch.handoff import make_arch
from spnas.arch.memory import plan_peak
from spnas.arch.params import ParamsTable, candidate_params, layer_params, plan_params
from spnas.arch.plan import count_params, plan_model
from spnas.choices import decisions_from_choice
from spnas.search.limits import (
    ParamsLimitController,
    check_limits,
    decode_under_limit,
    latency_frontier,
)
from spnas.search.target import SearchConfigError
from spnas.space import CANDIDATES, SKIP, SearchSpace, sample_choices, smoke_space, uniform_choices
from spnas.tables import bind, load_table, resolve_table_path
from tests.backend_utils import gradients
from tests.helpers import REPO
from tests.tiny_spaces import TINY

SPACES = {"smoke": smoke_space(10), "tiny": SearchSpace(**TINY)}


def _bn_channels(model) -> int:
    return sum(int(w.shape[0]) for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization) for w in layer.weights[:1])


def _smallest(space):
    return [SKIP if s.skippable else ("k3_e3" if s.searchable else s.fixed_choice)
            for s in space.layers()]


@pytest.mark.parametrize("name", sorted(SPACES))
def test_layer_counts_equal_the_plain_models(name):
    space = SPACES[name]
    table = ParamsTable.from_space(space)
    base = uniform_choices(space, "k3_e3")
    for spec in space.layers():
        if not spec.searchable:
            continue
        for choice in CANDIDATES + ((SKIP,) if spec.skippable else ()):
            choices = list(base)
            choices[spec.index] = choice
            assert table.count(choices) == plan_params(space, choices), (spec.index, choice)
            assert table.options(spec.index)[choice] == candidate_params(spec, choice)
    # The Keras models themselves: trainable weights = the count; count_params() adds
    # BN's moving mean and variance (2 per BN channel).
    from spnas.models import build_model

    for choices in [uniform_choices(space, c) for c in CANDIDATES] + [_smallest(space)]:
        model = build_model(make_arch(space, choices))
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert trainable == table.count(choices), choices
        assert model.count_params() == table.count(choices) + 2 * _bn_channels(model)
    assert table.range() == (table.count(_smallest(space)),
                             table.count(uniform_choices(space, "k5_e6")))


def test_paper_net_golden_count():
    # The paper's searched Pixel 1 net (reference-facts.md): 4,421,616 parameters.
    space = SearchSpace()
    choices = (["k3_e1"] + ["k3_e3"] * 3 + ["skip"] + ["k5_e6"] + ["k3_e3"] * 3
               + ["k5_e6"] + ["k3_e3"] * 3 + ["k5_e6"] + ["k5_e3"] * 3 + ["k5_e6"] * 4
               + ["k3_e6"])
    assert ParamsTable.from_space(space).count(choices) == 4_421_616


def test_layer_params_is_exact_for_hard_decisions():
    entries = ParamsTable.from_space(SPACES["smoke"]).layers[2]
    for choice in CANDIDATES + (SKIP,):
        got = layer_params(entries, *decisions_from_choice(choice))
        assert got == pytest.approx(0 if choice == SKIP else entries[choice], abs=1e-6)


def _force(model, choices):
    for block, spec in zip(model.mbconv, model.space.layers()):
        if not spec.searchable:
            continue
        c = choices[spec.index]
        d5x5, d100c, d50c = decisions_from_choice(c)
        block.conv_dw.t5x5.assign(0.0 if d5x5 else 1e6)
        block.conv_dw.t100c.assign(0.0 if d100c else 1e6)
        if spec.skippable:
            block.conv_dw.t50c.assign(0.0 if d50c else 1e6)


def test_supernet_params_count_equals_the_decoded_net():
    from spnas.search.supernet import build_supernet

    space = SPACES["smoke"]
    model = build_supernet(space, load_table(resolve_table_path("smoke_cpu")), params_loss=True)
    table = ParamsTable.from_space(space)
    rng = np.random.default_rng(0)
    for choices in [sample_choices(space, rng) for _ in range(6)] + [_smallest(space)]:
        _force(model, choices)
        assert model.choices() == choices
        got = float(ops.convert_to_numpy(model.params_count()))
        assert got == table.count(choices) == count_params(make_arch(space, choices))
    # Differentiable: the thresholds get a gradient (straight-through), and the loss
    # term is added with lambda_p.
    _force(model, uniform_choices(space, "k5_e6"))
    ts = [b.conv_dw.t5x5 for b in model.searchable_blocks]
    grads = gradients(model, lambda: model.params_count(), ts)
    assert all(g is not None and float(g) < 0 for g in grads), grads  # a higher t: fewer params
    model.set_params_lambda(0.5)
    model(np.zeros((1, 32, 32, 3), "float32"))
    expected = 0.5 * 1e3 * math.log(table.count(uniform_choices(space, "k5_e6")) / 1e6)
    losses = [float(ops.convert_to_numpy(v)) for v in model.losses]
    assert any(v == pytest.approx(expected, rel=1e-5) for v in losses), (expected, losses)


def test_controller_grows_only_over_the_limit_and_decays_to_zero():
    c = ParamsLimitController(1000, eta=0.1, max_lambda=2.0, kp=1.0)
    lam = c.next_lambda(0.0, 1200, first=True)  # over: the kick kp * ln(1.2) and the integral
    assert lam == pytest.approx(1.1 * math.log(1.2))
    for _ in range(3):  # while over, the integral grows
        new = c.next_lambda(lam, 1200)
        assert new > lam
        lam = new
    for params in (900, 800, 850, 950, 990, 999, 1000):  # at or under (also rising): never grows
        new = c.next_lambda(lam, params)
        assert 0.0 <= new <= lam
        lam = new
    assert lam < 0.5 * c.state()["integral"] + 0.1  # the proportional part pulled it down
    for _ in range(100):
        lam = c.next_lambda(lam, 500)
    assert lam == 0.0 and c.state()["integral"] == 0.0
    assert c.next_lambda(0.0, 10**9) == 2.0  # the bound
    # Resume: the state is a JSON dict; a fresh controller continues identically.
    state = json.loads(json.dumps(c.state()))
    d = ParamsLimitController(1000, eta=0.1, max_lambda=2.0, kp=1.0)
    d.restore(state)
    assert d.next_lambda(0.3, 1500) == c.next_lambda(0.3, 1500)
    with pytest.raises(SearchConfigError, match="params_lr >= 0"):
        ParamsLimitController(1000, eta=-1, max_lambda=1.0)


def test_schedule_checkpoints_the_params_controller():
    from spnas.search.callbacks import SearchSchedule
    from spnas.search.supernet import build_supernet

    model = build_supernet(SPACES["tiny"])
    ctrl = ParamsLimitController(1000, 0.02, 1.0, kp=1.0)
    schedule = SearchSchedule(model, 2, 0.0, params_controller=ctrl)
    assert schedule.values(0) == (0.0, 0.6, 0.0)
    lam_p = schedule.values(2)[2]  # first step after the warm-up: every layer k5_e6, over
    assert lam_p > 0
    state = json.loads(json.dumps(schedule.checkpoint_state()))
    again = SearchSchedule(model, 2, 0.0, params_controller=ParamsLimitController(1000, 0.02, 1.0,
                                                                                    kp=1.0))
    again.restore_state(state)
    model.set_params_lambda(lam_p)
    assert again.values(3) == schedule.values(3)


def _fake_decisions(space, rng):
    out = []
    for spec in space.layers():
        if spec.searchable:
            d = {"index": spec.index}
            for norm, t, name in (("norm5x5", "t5x5", "d5x5"), ("norm100c", "t100c", "d100c"),
                                  ("norm50c", "t50c", "d50c")):
                d[norm] = 1.0
                d[t] = float(rng.uniform(-0.5, 0.5)) if (name != "d50c" or spec.skippable) else None
                d[name] = 1.0 if d[t] is None or d[t] < 1.0 else 0.0
            out.append(d)
    return out


def test_decode_under_limit_meets_the_limit():
    space = SPACES["smoke"]
    bound = bind(load_table(resolve_table_path("smoke_cpu")), space)
    params = ParamsTable.from_space(space)
    lo, hi = params.range()
    rng = np.random.default_rng(1)
    for _ in range(10):
        decisions = _fake_decisions(space, rng)
        choices = uniform_choices(space, "k5_e6")
        limit = int(rng.integers(lo, hi))
        r = decode_under_limit(decisions, choices, space, bound, params, limit, None, 0.05)
        assert r["params"] == params.count(r["choices"]) <= limit
        assert r["moved"] and r["unlimited_params"] == hi
        target = bound.predict_ms(r["choices"]) * 1.01
        t = decode_under_limit(decisions, choices, space, bound, params, limit, target, 0.05)
        assert t["params"] <= limit and t["within_tolerance"]
    # Already under: unchanged.
    small = _smallest(space)
    r = decode_under_limit(_fake_decisions(space, rng), small, space, bound, params, lo, None, 0.05)
    assert r["choices"] == small and not r["moved"]


def test_unreachable_limits_name_the_range():
    space = SPACES["smoke"]
    bound = bind(load_table(resolve_table_path("smoke_cpu")), space)
    lo, hi = ParamsTable.from_space(space).range()
    assert check_limits(space, bound, lo, None, 0.05).range() == (lo, hi)
    with pytest.raises(SearchConfigError, match=f"reachable: {lo}-{hi}"):
        check_limits(space, bound, lo - 1, None, 0.05)
    frontier = latency_frontier(bound, ParamsTable.from_space(space))
    assert frontier[0] == (lo, bound.range_ms()[0]) and frontier[-1] == (hi, bound.range_ms()[1])
    with pytest.raises(SearchConfigError, match="no net of at most") as e:
        check_limits(space, bound, lo, bound.range_ms()[1], 0.05)
    assert "\n" not in str(e.value)


def _cli(workdir, *overrides):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "spnas.search.main", f"--config={REPO / 'configs' / 'smoke.py'}",
           f"--workdir={workdir}", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_smoke_search_ends_under_the_limit(tmp_path):
    space = SPACES["smoke"]
    lo, hi = ParamsTable.from_space(space).range()
    limit = (lo + hi) // 2
    bound = bind(load_table(resolve_table_path("smoke_cpu")), space)
    # Near the slowest net under the limit: the latency pulls up against the limit.
    frontier = latency_frontier(bound, ParamsTable.from_space(space))
    target = round(0.98 * max(m for p, m in frontier if p <= limit), 4)
    check_limits(space, bound, limit, target, 0.05)
    r = _cli(tmp_path, f"--config.max_params={limit}", f"--config.target_ms={target}")
    assert r.returncode == 0, r.stderr[-3000:]
    arch = json.loads((tmp_path / "arch.json").read_text())
    par, lat = arch["constraints"]["params"], arch["constraints"]["latency"]
    assert par["value"] <= limit and par["target"] == limit
    assert par["value"] == count_params(str(tmp_path / "arch.json"))
    assert lat["value"] == pytest.approx(arch["predicted_ms"]) and lat["target"] == target
    moved = par["decode"]["moved"]
    assert moved == (par["decode"]["unlimited_params"] > limit)
    assert par["binding"] == (moved or par["value"] >= 0.95 * limit)
    assert ("params" in arch["constraints"]["binding"]) == par["binding"]
    assert lat["binding"] == (lat["value"] >= 0.95 * target)
    assert f"limit {limit:,}" in r.stdout and "binding at the end:" in r.stdout
    act = arch["constraints"]["activation"]  # reported beside both costs
    assert act["peak_elements"] == plan_peak(plan_model(arch)) and act["float32_bytes"] == 4 * act["peak_elements"]
    assert "peak activation memory (batch 1):" in r.stdout
    rows = list(csv.DictReader(open(tmp_path / "search_log.csv")))
    warm = arch["search"]["warmup_steps"]
    assert all(float(row["lambda_params"]) == 0.0 for row in rows if int(row["step"]) < warm)
    assert any(float(row["lambda_params"]) > 0.0 for row in rows if int(row["step"]) > warm)
    assert int(rows[0]["params"]) == hi


@pytest.mark.parametrize("value, message", [
    ("1000", "max_params=1000 is below the smallest net of this space (82034 parameters: every "
             "skippable layer skipped, k3_e3 elsewhere); reachable: 82034-104794 (0: no limit)."),
    ("-5", "max_params must be >= 0 (0: no parameter limit), got -5."),
    ("nan", "--config.max_params=nan: must be an integer (default 0)."),
])
def test_bad_limits_are_one_line(tmp_path, value, message):
    r = _cli(tmp_path, f"--config.max_params={value}")
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [x for x in r.stderr.splitlines() if x.startswith("spnas-search: error:")]
    assert len(lines) == 1 and message in lines[0], r.stderr[-2000:]
    assert not (tmp_path / "arch.json").exists()


def test_unreachable_limit_is_refused_before_data_or_model(tmp_path, monkeypatch):
    """The range check runs before the datasets and the supernet are built (seconds)."""
    from spnas.configs_path import load_config
    from spnas.search import run as search_run

    def never(*args, **kwargs):
        raise AssertionError("built before the limit was checked")

    monkeypatch.setattr(search_run, "build_supernet", never)
    monkeypatch.setattr(search_run.recipe, "build_datasets", never)
    config = load_config("smoke.py")
    config.max_params = 1000
    with pytest.raises(SearchConfigError, match="max_params=1000 is below the smallest net"):
        search_run.run(config, str(tmp_path))
    assert not (tmp_path / "arch.json").exists()
