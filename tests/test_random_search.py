"""Random-search baseline (paper Table 1): sampling, the window, determinism, arch.json."""

import collections
import os
import subprocess
import sys

import numpy as np
import pytest

from spnas.arch.handoff import load_arch
from spnas.latency import latency_range_ms, load_table, predict_ms
from spnas.search.random_search import (
    RandomSearchError,
    layer_options,
    parse_window,
    random_search,
    run,
    sample_choices,
)
from spnas.space import CANDIDATES, SKIP, SearchSpace, smoke_space, validate_choices
from spnas.tables import shipped


@pytest.fixture(scope="module")
def smoke():
    space = smoke_space()
    return load_table(shipped.path("smoke_cpu"), space=space), space


def test_sampling_is_uniform_over_each_layers_options():
    space = SearchSpace()
    opts = layer_options(space)
    assert opts[0] == ("k3_e1",) and opts[21] == ("k3_e6",)  # the fixed layers
    assert opts[1] == CANDIDATES  # first of its block: no skip
    assert opts[2] == CANDIDATES + (SKIP,)
    rng = np.random.default_rng(0)
    draws = [sample_choices(space, rng, opts) for _ in range(2000)]
    for d in draws[:20]:
        validate_choices(space, d)
    counts = collections.Counter(d[2] for d in draws)
    assert set(counts) == set(CANDIDATES + (SKIP,))
    assert all(abs(c / 2000 - 0.2) < 0.04 for c in counts.values())  # 5 options, ~400 each
    assert SKIP not in {d[1] for d in draws}


def test_window_search_is_deterministic_and_inside(smoke):
    table, space = smoke
    lo, hi = latency_range_ms(table, space)
    window = (lo + 0.4 * (hi - lo), lo + 0.6 * (hi - lo))
    a, tries = random_search(table, space, n=5, window=window, seed=3)
    b, _ = random_search(table, space, n=5, window=window, seed=3)
    c, _ = random_search(table, space, n=5, window=window, seed=4)
    assert [x for x, _ in a] == [x for x, _ in b] and tries >= 5
    assert [x for x, _ in a] != [x for x, _ in c]
    for choices, ms in a:
        assert window[0] <= ms <= window[1]
        assert ms == pytest.approx(predict_ms(table, choices, space, model="paper"))
    exact, _ = random_search(table, space, n=3, window=window, seed=3, model="exact")
    for choices, ms in exact:
        assert ms == pytest.approx(predict_ms(table, choices, space, model="exact"))


def test_unreachable_window_and_max_tries(smoke):
    table, space = smoke
    lo, hi = latency_range_ms(table, space)
    with pytest.raises(RandomSearchError, match="outside what the space can reach"):
        random_search(table, space, window=(hi * 2, hi * 3))
    with pytest.raises(RandomSearchError, match="outside what the space can reach"):
        random_search(table, space, window=(0, lo * 0.5))
    # Exactly the slowest net is in range but a random draw almost never hits it.
    with pytest.raises(RandomSearchError, match="after 50 samples"):
        random_search(table, space, n=3, window=(hi - 1e-9, hi), max_tries=50)
    with pytest.raises(RandomSearchError, match="LO,HI"):
        parse_window("80,75")
    with pytest.raises(RandomSearchError, match="LO,HI"):
        parse_window("75")
    assert parse_window("75,80") == (75.0, 80.0)


def test_pixel1_table_window_like_the_paper(pixel1_table_path):
    table = load_table(pixel1_table_path)
    kept, tries = random_search(table, SearchSpace(), n=10, window=(75, 80), seed=0)
    assert len(kept) == 10 and tries > 10
    assert all(75 <= ms <= 80 for _, ms in kept)
    assert len({tuple(c) for c, _ in kept}) == 10


def test_run_writes_one_arch_json_each(smoke, tmp_path):
    table, space = smoke
    lo, hi = latency_range_ms(table, space)
    window = (lo + 0.3 * (hi - lo), lo + 0.7 * (hi - lo))
    paths = run(shipped.path("smoke_cpu"), None, str(tmp_path / "rs"), n=3, window=window, seed=1)
    assert paths == [str(tmp_path / "rs" / f"random_{i:03d}" / "arch.json") for i in range(3)]
    expect, _ = random_search(table, space, n=3, window=window, seed=1)
    for path, (choices, ms) in zip(paths, expect):
        arch = load_arch(path)
        assert arch["layers"] == choices and arch["predicted_ms"] == pytest.approx(ms)
        assert arch["space"] == space.to_dict()  # the table's own space
        assert arch["random_search"]["seed"] == 1
    # Too rare: nothing is written.
    with pytest.raises(RandomSearchError):
        run("smoke_cpu", None, str(tmp_path / "none"), n=3, window=(hi - 1e-9, hi), max_tries=20)
    assert os.listdir(tmp_path / "none") == []


def test_cli(tmp_path):
    table = shipped.path("smoke_cpu")
    cmd = [sys.executable, "-m", "spnas.search.random_search", f"--table={table}", "--n=2",
           f"--out_dir={tmp_path}", "--seed=0"]
    lo, hi = latency_range_ms(load_table(table), smoke_space())
    r = subprocess.run([*cmd, f"--window={lo:.6f},{hi:.6f}"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "wrote 2 architectures" in r.stdout
    assert os.path.isfile(tmp_path / "random_001" / "arch.json")
    r = subprocess.run([*cmd, "--window=75,80"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "outside what the space can reach" in r.stderr
