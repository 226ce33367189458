"""Latency-target mode in CI: the smoke search with ``config.target_ms`` set.

Checks that the controller moves lambda after the warm-up (search_log.csv), and
that arch.json carries the ``target`` record whose verdict and tolerance are
recomputed here by hand (error = predicted / target - 1, within when
|error| <= tolerance).
"""

import csv

import pytest

from spnas.arch.handoff import load_arch
from spnas.configs_path import load_config
from spnas.space import smoke_space
from spnas.tables import bind, load_table, resolve_table_path


def test_smoke_search_in_target_mode(tmp_path):
    from spnas.search.run import run

    config = load_config("smoke.py")
    space = smoke_space(10)
    lo, hi = bind(load_table(resolve_table_path(config.latency_table)), space).range_ms()
    target = lo + 0.4 * (hi - lo)  # inside the smoke table's reachable range
    config.target_ms = target
    config.target_tolerance = 0.07
    run(config, str(tmp_path))
    arch = load_arch(str(tmp_path / "arch.json"))
    warm = arch["search"]["warmup_steps"]
    rows = list(csv.DictReader(open(tmp_path / "search_log.csv")))
    before = [float(r["lambda"]) for r in rows if int(r["step"]) < warm]
    after = [float(r["lambda"]) for r in rows if int(r["step"]) > warm]
    assert before and all(v == 0.0 for v in before)
    assert after and any(v != 0.0 for v in after), after  # the controller set lambda
    assert len(set(after)) > 1, after  # and kept adapting it
    rec = arch["target"]
    assert rec["target_ms"] == pytest.approx(target)
    assert rec["predicted_ms"] == pytest.approx(arch["predicted_ms"])
    error = arch["predicted_ms"] / target - 1.0
    assert rec["error_pct"] == pytest.approx(100 * error)
    assert rec["tolerance_pct"] == pytest.approx(7.0)
    assert rec["within_tolerance"] == (abs(error) <= 0.07)
    assert ("within" if abs(error) <= 0.07 else "OUTSIDE") in rec["message"]
    assert lo <= arch["predicted_ms"] <= hi
