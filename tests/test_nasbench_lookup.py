"""NAS-Bench-Macro look-ups (bench/nasbench_lookup.py): codes, the loader's checks, the
baselines on hand-made data with hand-computed values, and the real benchmark file."""

import itertools
import json
import math
import sys

import numpy as np
import pytest

from tests.helpers import REPO

if str(REPO) not in sys.path:  # ``bench`` lives beside ``spnas``, not inside it
    sys.path.insert(0, str(REPO))

from bench.nasbench_lookup import (  # noqa: E402
    CHOICE_DIGITS,
    STAGES,
    Baseline,
    WindowStats,
    budgets_at,
    canonical,
    canonical_classes,
    choices_from_code,
    code_from_choices,
    expected_best_of_n,
    field_of,
    kendall_tau,
    load_bench,
    pareto_front,
    percentile,
    plot,
    reachable_range,
    regret,
    top_fraction,
    window_stats,
)

ALL_CODES = ["".join(p) for p in itertools.product("012", repeat=8)]

# Hand-made costs and accuracies. "00010000" and "00100000" are one net (same class),
# so they tie on both cost and accuracy.
A, B, C, D, E, F = "00000000", "00100000", "00010000", "22222222", "11111111", "20000000"
COSTS = {A: 1.0, B: 2.0, C: 2.0, D: 3.0, E: 4.0, F: 5.0}
ACC = {A: 50.0, B: 60.0, C: 60.0, D: 70.0, E: 55.0, F: 40.0}


def _entry(mean_acc=90.0, params=1000, flops=2000):
    return {"test_acc": [mean_acc] * 3, "mean_acc": mean_acc, "std": 0.0,
            "params": params, "flops": flops}


def _write(tmp_path, data, name="bench.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# --------------------------------------------------------------------------- codes


def test_constants():
    assert STAGES == (2, 3, 3)
    assert CHOICE_DIGITS == {"skip": "0", "k3_e3": "1", "k5_e6": "2"}


def test_code_from_choices_and_back():
    choices = ["skip", "k3_e3", "k5_e6", "skip", "k3_e3", "k5_e6", "skip", "k3_e3"]
    assert code_from_choices(choices) == "01201201"
    assert choices_from_code("01201201") == choices
    assert choices_from_code("22222222") == ["k5_e6"] * 8
    for code in ALL_CODES:  # round trip over the whole space
        assert code_from_choices(choices_from_code(code)) == code


def test_code_from_choices_errors_name_layer_and_value():
    choices = ["skip", "k3_e3", "k5_e6", "k3_e6", "k3_e3", "k5_e6", "skip", "k3_e3"]
    with pytest.raises(ValueError, match=r"^layer 3 \(stage 1, position 1\): choice 'k3_e6'"):
        code_from_choices(choices)
    with pytest.raises(ValueError, match=r"^layer 7 \(stage 2, position 2\): choice None"):
        code_from_choices(choices[:3] + ["skip"] * 4 + [None])
    with pytest.raises(ValueError, match="expected 8 layer choices, got 7"):
        code_from_choices(["skip"] * 7)
    with pytest.raises(ValueError, match="expected 8 layer choices, got '01201201'"):
        code_from_choices("01201201")
    for bad in ("0120120", "012012013", "0120120a", 12012012):
        with pytest.raises(ValueError, match="not 8 digits in 0-2"):
            choices_from_code(bad)


@pytest.mark.parametrize("code, expected", [
    ("00000000", "00000000"),
    ("22222222", "22222222"),
    ("01200000", "01200000"),  # stage 1 is "01": its 0 is the strided conv, not moved
    ("02100000", "02100000"),  # a different net from "01200000" (the data agrees)
    ("01002000", "01020000"),
    ("20010002", "20010020"),
    ("10220102", "10220120"),
    ("12001020", "12010020"),
    ("00001002", "00010020"),
    ("11101101", "11110110"),
])
def test_canonical_examples(code, expected):
    assert canonical(code) == expected


def test_canonical_classes_of_the_whole_space():
    classes = canonical_classes(ALL_CODES)
    # per stage: first digit (3 ways) times the ordered non-zero rests: 2 layers 3*3,
    # 3 layers 3*(1 + 2 + 4) = 21, so 9 * 21 * 21
    assert len(classes) == 3969
    assert sum(len(members) for members in classes.values()) == 6561
    for rep, members in classes.items():
        assert canonical(rep) == rep  # idempotent
        assert rep in members
    assert classes["01020000"] == ["01002000", "01020000"]
    assert classes["00110000"] == ["00101000", "00110000"]
    assert classes["00111000"] == ["00111000"]
    assert classes["00010010"] == ["00001001", "00001010", "00010001", "00010010"]
    assert classes["00100100"] == ["00100100"]  # a stage's first digit never moves
    assert classes["21020120"] == ["21002102", "21002120", "21020102", "21020120"]


# --------------------------------------------------------------------------- loading


def test_load_bench_valid(tmp_path):
    data = {"01200000": _entry(82.5, 491754, 23974400), "22222222": _entry(92.9, 5, 6)}
    path = _write(tmp_path, data)
    assert load_bench(path) == data
    assert load_bench(str(path)) == data
    assert field_of(data, "flops") == {"01200000": 23974400.0, "22222222": 6.0}
    with pytest.raises(ValueError, match="code '22222222': field 'flops' is missing"):
        field_of({**data, "22222222": {"mean_acc": 1.0}}, "flops")


@pytest.mark.parametrize("data, pattern", [
    ({"0120000": _entry()}, r"code '0120000': not 8 digits in 0-2"),
    ({"01200003": _entry()}, r"code '01200003': not 8 digits in 0-2"),
    ({"0120000a": _entry()}, r"code '0120000a': not 8 digits in 0-2"),
    ({"01200000": [1, 2]}, r"code '01200000': entry is not an object \(got list\)"),
    ({"01200000": {"params": 1, "flops": 2}}, r"code '01200000': field 'mean_acc' is missing"),
    ({"01200000": {"mean_acc": 1.0, "flops": 2}}, r"code '01200000': field 'params' is missing"),
    ({"01200000": {"mean_acc": 1.0, "params": 2}}, r"code '01200000': field 'flops' is missing"),
    ({"01200000": _entry(flops="123")},
     r"code '01200000': field 'flops' is not a finite number \(got '123'\)"),
    ({"01200000": _entry(params=True)},
     r"code '01200000': field 'params' is not a finite number \(got True\)"),
    ({"01200000": _entry(mean_acc=None)},
     r"code '01200000': field 'mean_acc' is not a finite number \(got None\)"),
    ({"01200000": {**_entry(), "std": "x"}}, r"code '01200000': field 'std' is not"),
    ({"01200000": {**_entry(), "test_acc": []}}, r"code '01200000': field 'test_acc' is not"),
    ({"01200000": {**_entry(), "test_acc": [1.0, "2"]}}, r"code '01200000': field 'test_acc'"),
    ([_entry()], r"expected a JSON object of codes, got list"),
    ({}, r"no codes"),
])
def test_load_bench_errors_name_file_code_field(tmp_path, data, pattern):
    path = _write(tmp_path, data)
    with pytest.raises(ValueError, match=pattern) as info:
        load_bench(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message


@pytest.mark.parametrize("text, pattern", [
    ('{"01200000": ', r"not valid JSON: "),
    ('{"01200000": {"mean_acc": NaN, "params": 1, "flops": 2}}',
     r"code '01200000': field 'mean_acc' is not a finite number \(got nan\)"),
    ('{"01200000": {"mean_acc": 1, "params": 1, "flops": 2},\n'
     ' "01200000": {"mean_acc": 2, "params": 1, "flops": 2}}',
     r"key '01200000' appears twice"),
])
def test_load_bench_bad_text(tmp_path, text, pattern):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=pattern) as info:
        load_bench(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


def test_load_bench_missing_file(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(ValueError, match=r"absent\.json: cannot read the file"):
        load_bench(path)


# --------------------------------------------------------------------------- baselines


def test_window_stats():
    # [0.5 * 4, 4] = [2, 4] holds B, C, D, E: 60, 60, 70, 55 (both ends inclusive)
    stats = window_stats(COSTS, ACC, 4.0, lo=0.5)
    assert isinstance(stats, WindowStats)
    assert stats.count == 4
    assert stats.mean == 61.25
    assert stats.sd == pytest.approx(math.sqrt(118.75 / 4), abs=1e-12)  # population sd
    # default lo = 0.94: [3.76, 4] holds E alone
    assert window_stats(COSTS, ACC, 4.0) == WindowStats(55.0, 0.0, 1)
    assert window_stats(COSTS, ACC, 3.0, lo=1.0) == WindowStats(70.0, 0.0, 1)
    # [2.82, 3] holds D only: 2.0 is outside
    assert window_stats(COSTS, ACC, 3.0).count == 1
    empty = window_stats(COSTS, ACC, 0.5)
    assert empty.count == 0 and math.isnan(empty.mean) and math.isnan(empty.sd)


def _brute_force_best(values, n):
    draws = list(itertools.product(values, repeat=n))
    return sum(max(d) for d in draws) / len(draws)


def test_expected_best_of_n_with_ties_against_enumeration():
    # budget 2: A, B, C eligible, accuracies 50, 60, 60 (a tie); k = 3
    assert _brute_force_best([50.0, 60.0, 60.0], 2) == pytest.approx(530 / 9, abs=1e-12)
    assert expected_best_of_n(COSTS, ACC, 2.0, 2) == pytest.approx(530 / 9, abs=1e-12)
    assert expected_best_of_n(COSTS, ACC, 2.0, 3) == pytest.approx(1610 / 27, abs=1e-12)
    assert expected_best_of_n(COSTS, ACC, 2.0, 1) == pytest.approx(170 / 3, abs=1e-12)
    # budget 4: 50, 60, 60, 70, 55 (k = 5) against all ordered draws
    for n in (1, 2, 3, 4):
        expected = _brute_force_best([50.0, 60.0, 60.0, 70.0, 55.0], n)
        assert expected_best_of_n(COSTS, ACC, 4.0, n) == pytest.approx(expected, abs=1e-12)
    assert expected_best_of_n(COSTS, ACC, 1.0, 5) == 50.0  # k = 1
    assert expected_best_of_n(COSTS, ACC, 100.0, 10**6) == pytest.approx(70.0, abs=1e-9)


def test_expected_best_of_n_distinct_values():
    costs = {"00000000": 1.0, "10000000": 1.0, "20000000": 1.0, "02000000": 9.0}
    acc = {"00000000": 90.0, "10000000": 80.0, "20000000": 70.0, "02000000": 99.0}
    # 9 ordered draws of {70, 80, 90}: maxes 70 once, 80 three times, 90 five times
    assert expected_best_of_n(costs, acc, 1.0, 2) == pytest.approx(
        (70 + 3 * 80 + 5 * 90) / 9, abs=1e-12)
    assert expected_best_of_n(costs, acc, 1.0, 2) == pytest.approx(
        _brute_force_best([70.0, 80.0, 90.0], 2), abs=1e-12)


def test_expected_best_of_n_errors():
    with pytest.raises(ValueError, match=r"no code costs <= budget 0\.5 \(cheapest: 1\.0\)"):
        expected_best_of_n(COSTS, ACC, 0.5, 2)
    for n in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="n must be an int >= 1"):
            expected_best_of_n(COSTS, ACC, 3.0, n)
    with pytest.raises(ValueError, match="code '20000000': no accuracy"):
        expected_best_of_n(COSTS, {k: v for k, v in ACC.items() if k != F}, 3.0, 2)


def test_regret():
    assert regret(COSTS, ACC, A) == 0.0
    assert regret(COSTS, ACC, B) == 0.0
    assert regret(COSTS, ACC, D) == 0.0
    assert regret(COSTS, ACC, E) == 15.0  # best at cost <= 4 is D's 70
    assert regret(COSTS, ACC, F) == 30.0
    with pytest.raises(ValueError, match="code '12121212': no cost"):
        regret(COSTS, ACC, "12121212")


def test_percentile_and_top_fraction_with_ties():
    # B: others at cost <= 2 are A (50, below) and C (60, tie): (1 + 0.5) / 2
    assert percentile(COSTS, ACC, B) == 75.0
    assert percentile(COSTS, ACC, C) == 75.0
    assert top_fraction(COSTS, ACC, B) == 25.0
    assert percentile(COSTS, ACC, D) == 100.0  # beats A, B, C
    assert percentile(COSTS, ACC, E) == 25.0  # beats A only of A, B, C, D
    assert percentile(COSTS, ACC, F) == 0.0
    assert top_fraction(COSTS, ACC, F) == 100.0
    assert percentile(COSTS, ACC, A) == 100.0  # no other code as cheap
    all_tied = {A: 1.0, B: 1.0, C: 1.0}
    assert percentile(all_tied, {A: 5.0, B: 5.0, C: 5.0}, A) == 50.0
    with pytest.raises(ValueError, match="code '12121212': no cost"):
        percentile(COSTS, ACC, "12121212")


def test_pareto_front():
    assert pareto_front(COSTS, ACC) == [A, C, B, D]  # by cost, then code
    costs = {**COSTS, "12000000": 3.0, "21000000": 2.5, "11000000": 2.5}
    acc = {**ACC, "12000000": 65.0, "21000000": 60.0, "11000000": 66.0}
    # 12000000 loses to D (same cost), 21000000 to B (cheaper, equal accuracy)
    assert pareto_front(costs, acc) == [A, C, B, "11000000", D]
    assert pareto_front({A: 1.0}, {A: 3.0}) == [A]
    # costlier and only as accurate: dominated
    assert pareto_front({A: 1.0, D: 2.0}, {A: 3.0, D: 3.0}) == [A]
    assert pareto_front({A: 1.0, D: 1.0}, {A: 3.0, D: 3.0}) == [A, D]


def test_range_and_budgets():
    assert reachable_range(COSTS) == (1.0, 5.0)
    assert budgets_at(COSTS) == (2.0, 3.0, 4.0)
    assert budgets_at(COSTS, (0.0, 1.0, 0.1)) == (1.0, 5.0, 1.4)
    with pytest.raises(ValueError, match="fraction 1.5 is not in"):
        budgets_at(COSTS, (0.5, 1.5))
    with pytest.raises(ValueError, match="no costs"):
        reachable_range({})


def test_baseline_methods_match_functions():
    base = Baseline(COSTS, ACC)
    assert base.window_stats(4.0, lo=0.5) == window_stats(COSTS, ACC, 4.0, lo=0.5)
    assert base.expected_best_of_n(2.0, 2) == expected_best_of_n(COSTS, ACC, 2.0, 2)
    assert base.regret(E) == 15.0
    assert base.percentile(B) == 75.0
    assert base.top_fraction(E) == 75.0
    assert base.pareto_front() == [A, C, B, D]
    assert base.reachable_range() == (1.0, 5.0)
    assert base.budgets_at((0.5,)) == (3.0,)
    bench = {A: _entry(50.0, 7, 10), D: _entry(70.0, 9, 30)}
    from_bench = Baseline.from_bench(bench)
    assert from_bench.costs == {A: 10.0, D: 30.0}
    assert from_bench.acc == {A: 50.0, D: 70.0}
    assert Baseline.from_bench(bench, "params").costs == {A: 7.0, D: 9.0}


# --------------------------------------------------------------------------- kendall


def test_kendall_tau_by_hand():
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3, abs=1e-15)
    # pairs: 4 concordant, 0 discordant, 1 tied in x only, 1 tied in y only
    assert kendall_tau([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8, abs=1e-15)
    # 1 concordant, 1 discordant, 1 tied in both (not counted in either denominator)
    assert kendall_tau([1, 1, 2], [1, 1, 1.5]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    assert math.isnan(kendall_tau([1], [2]))
    with pytest.raises(ValueError, match="one length"):
        kendall_tau([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        kendall_tau([1, float("nan")], [1, 2])


def test_kendall_tau_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.integers(0, 6, size=60)  # many ties
        y = rng.integers(0, 4, size=60)
        assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


# --------------------------------------------------------------------------- plot


def test_plot_writes_png_atomically(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"code": D, "seed": 0, "mode": "dedicated"},
            {"code": E, "seed": 1, "mode": "many_budgets"},
            {"code": B, "seed": 0, "mode": "random"}]
    target = tmp_path / "fig" / "bench.png"
    out = plot(target, COSTS, ACC, rows, budgets=[2.0, 4.0], cost_label="cost (ms)")
    assert out == str(target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert target.stat().st_size > 5000
    assert sorted(p.name for p in target.parent.iterdir()) == ["bench.png"]  # no temp left
    with pytest.raises(ValueError, match="row 0: mode 'grid' is not one of"):
        plot(tmp_path / "bad.png", COSTS, ACC, [{"code": D, "seed": 0, "mode": "grid"}],
             [], "cost")
    with pytest.raises(ValueError, match="row 0: key 'seed' is missing"):
        plot(tmp_path / "bad.png", COSTS, ACC, [{"code": D, "mode": "random"}], [], "cost")
    with pytest.raises(ValueError, match="row 0: code '12121212' has no cost"):
        plot(tmp_path / "bad.png", COSTS, ACC,
             [{"code": "12121212", "seed": 0, "mode": "random"}], [], "cost")
    assert not (tmp_path / "bad.png").exists()


# --------------------------------------------------------------------------- real file


@pytest.fixture(scope="module")
def bench(shared_dir):
    return load_bench(shared_dir / "data" / "nas-bench-macro_cifar10.json")


def test_real_file_codes_and_classes(bench):
    assert len(bench) == 6561
    assert sorted(bench) == ALL_CODES
    classes = canonical_classes(bench)
    assert len(classes) == 3969
    for members in classes.values():
        first = bench[members[0]]
        for code in members[1:]:
            assert bench[code] == first, code
    # the trainer's identity move: these are one net, and differ from "02100000"
    assert bench["01002000"] == bench["01020000"]
    assert bench["01200000"]["mean_acc"] != bench["02100000"]["mean_acc"]
    assert bench["00000000"]["mean_acc"] == 45.36333211263021
    assert bench["00000000"]["flops"] == 7713280
    assert bench["22222222"]["params"] == 2932586


def test_real_file_baselines(bench):
    base = Baseline.from_bench(bench)
    assert base.reachable_range() == (7713280.0, 105660928.0)
    assert base.budgets_at() == (32200192.0, 56687104.0, 81174016.0)
    costs = np.array([base.costs[k] for k in ALL_CODES])
    accs = np.array([base.acc[k] for k in ALL_CODES])
    for budget in base.budgets_at():
        eligible = accs[costs <= budget]
        # n = 1 is the plain mean over the eligible codes
        assert base.expected_best_of_n(budget, 1) == pytest.approx(eligible.mean(), abs=1e-9)
    # n = 2 against the mean of the pairwise maxima at the 25% budget
    low = base.budgets_at((0.25,))[0]
    eligible = accs[costs <= low]
    pairwise = np.maximum.outer(eligible, eligible).mean()
    assert base.expected_best_of_n(low, 2) == pytest.approx(pairwise, abs=1e-9)
    assert base.expected_best_of_n(low, 10) == pytest.approx(88.64651334809899, abs=1e-9)
    stats = base.window_stats(low)
    assert stats.count == 93
    assert stats.mean == pytest.approx(85.91243511459734, abs=1e-9)
    assert stats.sd == pytest.approx(2.559505753016422, abs=1e-9)
    # the best codes (one net, two codes) and the cheapest code
    assert base.regret("22212220") == 0.0
    assert base.percentile("22212220") == pytest.approx(99.99222878458191, abs=1e-9)
    assert base.regret("22222222") == pytest.approx(0.17333221435546875, abs=1e-12)
    assert base.regret("00000000") == 0.0


def test_real_file_pareto_front(bench):
    base = Baseline.from_bench(bench)
    front = base.pareto_front()
    assert len(front) == 66
    assert front[:3] == ["00000000", "00000100", "00100100"]
    assert front[-3:] == ["22222200", "22212202", "22212220"]  # equal cost: by code
    costs = np.array([base.costs[k] for k in ALL_CODES])
    accs = np.array([base.acc[k] for k in ALL_CODES])
    fc = np.array([base.costs[k] for k in front])
    fa = np.array([base.acc[k] for k in front])
    assert np.all(np.diff(fc) >= 0)
    # no code dominates a front code
    dominates = ((costs[None, :] <= fc[:, None]) & (accs[None, :] >= fa[:, None])
                 & ((costs[None, :] < fc[:, None]) | (accs[None, :] > fa[:, None])))
    assert not dominates.any()
    # every other code is dominated by a front code
    rest = np.array([k not in set(front) for k in ALL_CODES])
    dominated = ((fc[:, None] <= costs[None, rest]) & (fa[:, None] >= accs[None, rest])
                 & ((fc[:, None] < costs[None, rest]) | (fa[:, None] > accs[None, rest])))
    assert dominated.any(axis=0).all()
    assert all(base.regret(k) == 0.0 for k in front)
