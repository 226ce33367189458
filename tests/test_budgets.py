"""Many budgets from one search (``config.targets``, spnas/search/budgets.py).

* The decode at several budgets over hand-made decisions of the smoke space: each
  net within tolerance of its budget wherever a margin shift reaches one, and the
  predicted latency non-decreasing in the budget.
* Bad budgets: one line each, from the config check (syntax) or after the table
  loads (range).
* Forcing the indicators: a supernet forced to its own decode evaluates exactly as
  the unforced one; the thresholds come back.
* One smoke search through the CLI with ``--config.targets``: the files, their
  schema, and ``spnas-train``'s plan check accepting each arch_<T>ms.json.
"""

import csv
import json
import math
import os
import subprocess
import sys

import pytest

from spnas.choices import choice_from_decisions
from spnas.config_check import ConfigError, check, parse_targets
from spnas.configs_path import load_config
from spnas.search.target import INDICATORS, relative_margins
from spnas.space import smoke_space
from spnas.tables import bind, load_table, resolve_table_path
from tests.test_target import _smoke_decisions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 0.05


def _smoke_table():
    space = smoke_space(10)
    return space, bind(load_table(resolve_table_path("smoke_cpu")), space)


def _decisions():
    """Decisions of the smoke space with margins of many sizes (all on but two)."""
    return _smoke_decisions()


def _plain(space, decisions):
    choices = [spec.fixed_choice for spec in space.layers()]
    for d in decisions:
        choices[d["index"]] = choice_from_decisions(d["d5x5"], d["d100c"], d["d50c"])
    return choices


def _shift_latencies(space, table, decisions, choices):
    """Every latency a global margin shift decodes to (the nets the decode can reach)."""
    margins = relative_margins(decisions)
    finite = sorted(v for v in margins.values() if math.isfinite(v))
    out = set()
    for s in [finite[0] - 1.0, 0.0, *finite]:
        net = list(choices)
        for d in decisions:
            on = {n: margins[(d["index"], n)] > s if (d["index"], n) in margins else d[n] > 0.5
                  for n in INDICATORS}
            net[d["index"]] = choice_from_decisions(on["d5x5"], on["d100c"], on["d50c"])
        out.add(table.predict_ms(net))
    return sorted(out)


def _check_budget_nets(targets, predicted, reachable):
    for t, ms in zip(targets, predicted):
        if any(abs(r / t - 1) <= TOLERANCE for r in reachable):
            assert abs(ms / t - 1) <= TOLERANCE, (t, ms, reachable)
        else:  # out of reach of any shift: the nearest net is taken
            assert min(abs(r / t - 1) for r in reachable) == pytest.approx(abs(ms / t - 1))
    assert predicted == sorted(predicted), list(zip(targets, predicted))


def test_decode_at_many_budgets_is_within_tolerance_and_monotone():
    from spnas.search.budgets import decode_budgets

    space, table = _smoke_table()
    decisions = _decisions()
    choices = _plain(space, decisions)
    lo, hi = table.range_ms()
    targets = [lo + f * (hi - lo) for f in (0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0)]
    decoded = decode_budgets(decisions, choices, space, table, targets, TOLERANCE)
    reachable = _shift_latencies(space, table, decisions, choices)
    assert len(reachable) >= 4  # a real spread, not one net
    predicted = [d["predicted_ms"] for d in decoded]
    _check_budget_nets(targets, predicted, reachable)
    for d, t in zip(decoded, targets):
        assert d["target_ms"] == t and d["predicted_ms"] == pytest.approx(table.predict_ms(d["choices"]))
        assert d["verdict"]["within_tolerance"] == (abs(d["predicted_ms"] / t - 1) <= TOLERANCE)
    assert len({tuple(d["choices"]) for d in decoded}) >= 3


def test_budget_decodes_keep_the_parameter_limit():
    """With max_params every budget's net is at or under the limit (moved when the
    latency decode alone was over it), and its arch.json records both costs."""
    from spnas.arch.params import ParamsTable
    from spnas.search.budgets import budget_archs, decode_budgets

    space, table = _smoke_table()
    decisions = _decisions()
    choices = _plain(space, decisions)
    params = ParamsTable.from_space(space)
    lo, hi = table.range_ms()
    targets = [lo + f * (hi - lo) for f in (0.1, 0.5, 0.9)]
    free = decode_budgets(decisions, choices, space, table, targets, TOLERANCE)
    counts = [params.count(d["choices"]) for d in free]
    limit = (min(counts) + max(counts)) // 2  # the fast budgets fit, the slow one not
    assert min(counts) <= limit < max(counts)
    limited = decode_budgets(decisions, choices, space, table, targets, TOLERANCE,
                             max_params=limit)
    for f, d in zip(free, limited):
        n = params.count(d["choices"])
        assert n <= limit and d["params_limit"]["params"] == n
        assert d["params_limit"]["moved"] == (params.count(f["choices"]) > limit)
        assert d["predicted_ms"] == pytest.approx(table.predict_ms(d["choices"]))
        assert d["verdict"]["within_tolerance"] == (abs(d["predicted_ms"] / d["target_ms"] - 1)
                                                    <= TOLERANCE)
        if not d["params_limit"]["moved"]:
            assert d["choices"] == f["choices"]
    assert any(d["params_limit"]["moved"] for d in limited)
    main = {"search": {"lambda": 0.5}, "layers": choices,
            "constraints": {"latency": {"lambda": 0.5}, "params": {"lambda": 0.1}}}
    archs = budget_archs(main, space, table, limited, [0.5] * 3, "m", tolerance=TOLERANCE,
                         max_params=limit)
    for a, d in zip(archs, limited):
        c = a["constraints"]
        assert c["params"]["value"] == params.count(d["choices"]) and c["params"]["target"] == limit
        assert c["latency"]["target"] == d["target_ms"] and c["params"]["lambda"] == 0.1
        assert c["params"]["binding"] == (d["params_limit"]["moved"]
                                          or c["params"]["value"] >= (1 - TOLERANCE) * limit)


def test_budgets_a_parameter_limit_cannot_meet_are_one_line():
    from spnas.arch.params import ParamsTable
    from spnas.search.limits import latency_frontier
    from spnas.search.run import _checked_limit
    from spnas.search.target import SearchConfigError

    space, table = _smoke_table()
    lo_p, hi_p = ParamsTable.from_space(space).range()
    config = load_config("smoke.py")
    config.max_params = lo_p + (hi_p - lo_p) // 4
    frontier = latency_frontier(table, ParamsTable.from_space(space))
    slowest = max(m for p, m in frontier if p <= config.max_params)
    lo, hi = table.range_ms()
    fast, slow = lo, min(hi, 1.5 * slowest / (1 - TOLERANCE))
    assert _checked_limit(config, space, table, None, (fast,)) == (lo_p, hi_p)
    with pytest.raises(SearchConfigError) as info:
        _checked_limit(config, space, table, None, (fast, slow))
    message = str(info.value)
    assert message.startswith(f"targets={slow:g} with max_params={config.max_params}: no net ")
    assert "reachable: targets <= " in message and "\n" not in message


def test_targets_syntax_is_one_line_from_the_config_check():
    assert parse_targets("") == () and parse_targets(" 0.2, 0.25 ,1e-1") == (0.2, 0.25, 0.1)
    config = load_config("smoke.py")
    for bad in ("0", "-0.1", "nan", "inf", "abc", "0.2,,0.3", "0.2,", "0.2,0.2"):
        config.targets = bad
        with pytest.raises(ConfigError) as info:
            check(config, "search", where="--config")
        message = str(info.value)
        assert "\n" not in message and message.startswith("--config: targets must be")
        assert "finite number > 0" in message and repr(bad) in message
    config.targets = "0.2,0.3"
    check(config, "search")


@pytest.mark.parametrize("bad", [1e-3, 5.0])
def test_target_outside_the_table_range_names_the_range(bad):
    from spnas.search.budgets import checked_targets
    from spnas.search.target import SearchConfigError

    space, table = _smoke_table()
    lo, hi = table.range_ms()
    config = load_config("smoke.py")
    config.targets = f"{(lo + hi) / 2},{bad}"
    with pytest.raises(SearchConfigError) as info:
        checked_targets(config, table)
    assert str(info.value) == (f"targets: {bad:g} ms is outside the reachable range of this space "
                               f"on {table.device!r}: {lo:.3f}-{hi:.3f} ms.")
    config.targets = f"{lo},{hi}"
    assert checked_targets(config, table) == (lo, hi)


def test_forcing_the_own_decode_evaluates_as_unforced():
    import keras
    import numpy as np

    from spnas.search.budgets import forced_choices, forced_evaluation
    from spnas.search.run import load_search_table, space_from_config
    from spnas.search.supernet import build_supernet
    from spnas.train import recipe
    from spnas.train.optim import ema_weights

    config = load_config("smoke.py")
    config.schedule.bn_recalibration_batches = 3
    keras.utils.set_random_seed(0)
    space = space_from_config(config, 10)
    table = load_search_table(config, space)
    data = recipe.build_datasets(config, space.input_size)
    model = build_supernet(space, table)
    # A mixed decode, firmly (the EMA shadows start at these values in compile_model).
    for block in model.searchable_blocks:
        d = block.conv_dw.decisions()
        if block.name == "layer01":
            block.conv_dw.t5x5.assign(2 * d["norm5x5"])  # k3
        if block.name == "layer02":
            block.conv_dw.t50c.assign(2 * d["norm50c"])  # skip
        if block.name == "layer04":
            block.conv_dw.t100c.assign(2 * d["norm100c"])  # e3
    recipe.compile_model(model, config, 0.01, recipe.metrics(config.schedule, ce=True))
    model.fit(data.train, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    bn = int(config.schedule.bn_recalibration_batches)

    def thresholds():
        return [np.array(keras.ops.convert_to_numpy(v)) for b in model.searchable_blocks
                for v in (b.conv_dw.t5x5, b.conv_dw.t100c, b.conv_dw.t50c) if v is not None]

    with ema_weights(model):
        own = model.choices()  # the decode of the evaluated (EMA) weights
    assert own[1:5] == ["k3_e6", "skip", "k5_e6", "k5_e3"], own
    raw = thresholds()
    with recipe.ema_evaluation(model, data, bn) as ev:
        unforced = ev.result
    forced = forced_evaluation(model, data, bn, own)
    assert forced["accuracy"] == unforced["accuracy"]
    assert forced["ce"] == pytest.approx(unforced["ce"], rel=1e-6)
    other = ["k3_e1", "k3_e3", "k3_e3", "k3_e3", "skip", "k3_e6"]
    assert forced_evaluation(model, data, bn, other)["ce"] != pytest.approx(unforced["ce"])
    with forced_choices(model, other):
        assert model.choices() == other
    assert all(np.array_equal(a, b) for a, b in zip(raw, thresholds()))  # restored
    assert model.choices() != other


def _train_plan(arch_path, workdir):
    from spnas.train.checks import prepare

    config = load_config("train_default.py")
    config.arch = str(arch_path)
    return prepare(config, str(workdir))


def test_smoke_search_with_targets_through_the_cli(tmp_path):
    from spnas.arch.handoff import load_arch
    from spnas.search.budgets import arch_filename

    space, table = _smoke_table()
    lo, hi = table.range_ms()
    targets = [round(lo + f * (hi - lo), 4) for f in (0.2, 0.55, 0.95)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-m", "spnas.search.main",
                        f"--config={os.path.join(ROOT, 'configs', 'smoke.py')}",
                        f"--workdir={tmp_path}", "--config.targets=" + ",".join(map(str, targets))],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "budgets (one supernet" in r.stdout and "arch_" in r.stdout
    main = load_arch(str(tmp_path / "arch.json"))
    table_json = json.loads((tmp_path / "budgets.json").read_text())
    assert table_json["format"] == "spnas.budgets/1" and len(table_json["budgets"]) == 3
    predicted = []
    for t, row in zip(targets, table_json["budgets"]):
        path = tmp_path / arch_filename(t)
        assert row["file"] == path.name
        arch = load_arch(str(path))
        assert arch["layers"] == row["layers"] and arch["target_ms"] == pytest.approx(t)
        assert arch["target"]["decode"]["shift"] == pytest.approx(row["shift"])
        assert arch["predicted_ms"] == pytest.approx(table.predict_ms(arch["layers"]))
        assert arch["decisions"] == main["decisions"] and arch["config"] == main["config"]
        assert 0.0 <= arch["search"]["supernet_val_accuracy_ema"] <= 1.0
        assert arch["search"]["supernet_val_accuracy_ema"] == row["supernet_val_accuracy_ema"]
        prepared = _train_plan(path, tmp_path / f"train_{t}")
        assert prepared.arch.layers == arch["layers"]
        predicted.append(arch["predicted_ms"])
    decisions = main["decisions"]
    plain = main["target"]["decode"]["unshifted_choices"] if "target" in main else main["layers"]
    _check_budget_nets(targets, predicted, _shift_latencies(space, table, decisions, plain))
    with open(tmp_path / "budgets.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["file"] for row in rows] == [arch_filename(t) for t in targets] + ["arch.json"]
    for row in rows:  # both costs and the peak activation memory of every net
        arch = json.loads((tmp_path / row["file"]).read_text())
        assert int(row["params"]) == arch["constraints"]["params"]["value"]
        assert float(row["activation_kib"]) == round(
            arch["constraints"]["activation"]["float32_bytes"] / 1024, 1)
    assert table_json["main"]["layers"] == main["layers"]
    assert (tmp_path / "fig_budgets.png").stat().st_size > 10_000
