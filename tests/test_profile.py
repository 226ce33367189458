"""On-host latency profiling: a tiny space end to end, the CLI, the shipped table."""

import json
import os
import subprocess
import sys

import pytest

from spnas.latency import LatencyTableError, load_table, save_table
from spnas.latency.build import table_from_profile
from spnas.latency.probe import network_model
from spnas.latency.profile import ProfileError, profile_space, profile_table
from spnas.latency.timing import measure_network
from spnas.space import CANDIDATES, SearchSpace, embedded_space, resolve_space
from spnas.tables import shipped
from tests.tiny_spaces import ONE_LAYER, TINY


@pytest.fixture(scope="module")
def tiny_space():
    return SearchSpace(**TINY)


@pytest.fixture(scope="module")
def tiny_profile(tiny_space):
    return profile_space(tiny_space, warmup=2, repeats=20, progress=False)


def test_tiny_profile_is_a_valid_table(tiny_space, tiny_profile, tmp_path):
    table = table_from_profile(tiny_profile, "median", device="test host")
    table.validate_for(tiny_space)
    assert table.searchable_indices == [1, 2]
    assert table.units == "ms" and table.runtime == "LiteRT" and table.input_size == 16
    for entries in table.layers.values():
        assert set(entries) == set(CANDIDATES) and all(v > 0 for v in entries.values())
    # The constant is the sum of the timed fixed parts: stem, layer 0, head.
    parts = table.extra["constant_parts_ms"]
    assert set(parts) == {"stem", "layer_0", "head"}
    assert table.constant_ms == pytest.approx(sum(parts.values()))
    assert table.extra["layer_shapes"] == {
        "1": {"in": 8, "out": 8, "stride": 2, "hw": 8},
        "2": {"in": 8, "out": 8, "stride": 1, "hw": 4},
    }
    assert set(table.extra["spread"]) == {"1", "2", "constant"}
    assert set(table.extra["spread"]["1"]) == set(CANDIDATES)
    assert table.extra["threads"] == 1 and table.extra["repeats"] == 20
    assert table.extra["space"] == tiny_space.to_dict()
    path = tmp_path / "tiny.json"
    save_table(table, str(path))
    again = load_table(str(path), space=tiny_space)
    assert again.layers == table.layers and again.constant_ms == table.constant_ms
    assert again.extra["layer_shapes"] == table.extra["layer_shapes"]


def test_p10_table_is_not_above_median(tiny_profile):
    med = table_from_profile(tiny_profile, "median")
    p10 = table_from_profile(tiny_profile, "p10")
    for i in med.layers:
        for c in CANDIDATES:
            assert p10.layers[i][c] <= med.layers[i][c]
    assert p10.constant_ms <= med.constant_ms
    assert p10.extra["statistic"].startswith("p10")
    with pytest.raises(ValueError, match="Unknown statistic"):
        table_from_profile(tiny_profile, "mean")


def test_layer_shapes_catch_a_different_space(tiny_profile):
    table = table_from_profile(tiny_profile)
    wider = SearchSpace(**{**TINY, "width": 1.0})  # same layer indices, 16/24 channels
    with pytest.raises(LatencyTableError, match="layer 1 was profiled as"):
        table.validate_for(wider)


def test_network_model_drops_skipped_layers(tiny_space):
    import keras

    choices = ["k3_e1", "k5_e6", "skip"]
    model = network_model(tiny_space, choices)
    depthwise = [x for x in model.layers if isinstance(x, keras.layers.DepthwiseConv2D)]
    assert [x.kernel_size for x in depthwise] == [(3, 3), (5, 5)]
    assert model.output.shape == (1, 10)
    stats = measure_network(tiny_space, choices, warmup=1, repeats=5)
    assert stats.repeats == 5 and stats.median_ms > 0
    with pytest.raises(ValueError, match="cannot be skipped"):
        network_model(tiny_space, ["k3_e1", "skip", "k3_e3"])


def test_bad_settings(tiny_space):
    with pytest.raises(ValueError, match="repeats >= 1"):
        profile_table(tiny_space, repeats=0, progress=False)
    with pytest.raises(ValueError, match="max_spread"):
        profile_table(tiny_space, max_spread=0.0, progress=False)


def test_max_spread_fails_loudly():
    # No real measurement has a 1e-9 relative spread, so this must give up.
    with pytest.raises(ProfileError, match="max_spread=1e-09"):
        profile_table(SearchSpace(**ONE_LAYER), warmup=1, repeats=10, max_spread=1e-9,
                      progress=False)


def test_resolve_space(tmp_path):
    assert resolve_space("embedded") == embedded_space()
    assert resolve_space("paper") == SearchSpace()
    f = tmp_path / "space.json"
    f.write_text(json.dumps(SearchSpace(**TINY).to_dict()))
    assert resolve_space(str(f)) == SearchSpace(**TINY)
    with pytest.raises(ValueError, match="Unknown space 'mobile'"):
        resolve_space("mobile")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        resolve_space(str(tmp_path / "missing.json"))


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "spnas.latency.main", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def test_cli_profile_writes_a_table(tmp_path):
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SearchSpace(**ONE_LAYER).to_dict()))
    outdir = tmp_path / "out"
    out = outdir / "table.json"
    r = _cli("profile", f"--space={space_file}", f"--out={out}", "--warmup=1", "--repeats=5",
             "--statistic=p10", "--progress=false", "--device=ci")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"wrote {out}" in r.stdout
    table = load_table(str(out), space=SearchSpace(**ONE_LAYER))
    assert table.device == "ci" and table.extra["statistic"].startswith("p10")
    assert os.listdir(outdir) == ["table.json"]  # atomic write: no temp file left


def test_cli_profile_checks_the_destination_first(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    r = _cli("profile", "--space=embedded", f"--out={blocker}/table.json")
    assert r.returncode == 2
    assert "not writable" in r.stderr and str(blocker) in r.stderr


def test_shipped_embedded_table():
    path = shipped.path("embedded_cpu")
    assert "embedded_cpu" in shipped.available()
    table = load_table(path, space=embedded_space())
    assert table.runtime == "LiteRT" and table.units == "ms"
    assert table.extra["threads"] == 1
    assert table.extra["space"] == embedded_space().to_dict()
    assert table.constant_ms > 0
    with pytest.raises(FileNotFoundError, match="available: .*embedded_cpu"):
        shipped.path("pixel9")
