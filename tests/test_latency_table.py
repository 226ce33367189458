"""Latency tables: the Pixel 1 check figures, validation errors, the CLI."""

import copy
import json
import subprocess
import sys

import pytest

from spnas.latency import LatencyTableError, load_table, predict_ms, save_table
from spnas.models import get_arch
from spnas.space import SearchSpace, embedded_space, uniform_choices
from spnas.tables.runtime_model import latency_range_ms
from spnas.tables.table import FORMAT, table_from_json


def test_pixel1_check_figures(pixel1_table_path):
    table = load_table(pixel1_table_path, space=SearchSpace())
    assert table.device == "Pixel 1"
    assert table.constant_ms == pytest.approx(19.5999)
    assert len(table.layers) == 20 and table.searchable_indices == list(range(1, 21))
    # reference-facts.md: 80.59 ms for the paper's net, 131.46 ms for all-k5e6.
    pixel1 = get_arch("spnas_pixel1").choices
    assert predict_ms(table, pixel1) == pytest.approx(80.5926, abs=5e-5)
    assert predict_ms(table, uniform_choices(SearchSpace(), "k5_e6")) == pytest.approx(131.4578, abs=5e-5)
    lo, hi = latency_range_ms(table, SearchSpace())
    assert lo < 80.59 < hi and hi == pytest.approx(131.4578, abs=5e-5)


def test_import_round_trip(pixel1_table_path, tmp_path):
    table = load_table(pixel1_table_path)
    out = tmp_path / "pixel1.json"
    save_table(table, str(out))
    data = json.loads(out.read_text())
    assert data["format"] == FORMAT and data["units"] == "ms"
    assert set(data["layers"]["1"]) == {"k3_e3", "k3_e6", "k5_e3", "k5_e6"}
    again = load_table(str(out), space=SearchSpace())
    assert again.layers == table.layers and again.constant_ms == table.constant_ms
    assert again.extra["fixed_layers"]["0"] == table.extra["fixed_layers"]["0"]


def _ours(pixel1_table_path):
    return load_table(pixel1_table_path).to_json()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["layers"].pop("7"), "lacks layer 7|20 searchable layers|19 searchable"),
        (lambda d: d["layers"]["3"].pop("k5_e3"), "layer 3: missing key 'k5_e3'"),
        (lambda d: d["layers"]["4"].__setitem__("k3_e6", -1.0), "layer 4, key 'k3_e6'.*positive"),
        (lambda d: d["layers"]["5"].__setitem__("k5_e6", float("nan")), "layer 5, key 'k5_e6'"),
        (lambda d: d["layers"]["6"].__setitem__("k3_e3", "fast"), "layer 6, key 'k3_e3'.*not a number"),
        (lambda d: d.__setitem__("units", "us"), "units 'us'"),
        (lambda d: d.__setitem__("format", "other/9"), "format 'other/9'"),
        (lambda d: d.pop("device"), "lacks \\['device'\\]"),
        (lambda d: d["layers"]["2"].__setitem__("k7_e6", 1.0), "layer 2: unknown keys"),
    ],
)
def test_bad_tables_name_the_problem(pixel1_table_path, tmp_path, mutate, message):
    data = copy.deepcopy(_ours(pixel1_table_path))
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LatencyTableError, match=message):
        load_table(str(path), space=SearchSpace())


def test_wrong_layer_count_for_supernet(pixel1_table_path):
    table = load_table(pixel1_table_path)
    tiny = SearchSpace(blocks=SearchSpace().blocks[:3] + ("r1_k3_s11_e6_i40_o320_noskip",))
    with pytest.raises(LatencyTableError, match="has 20 searchable layers but the supernet has 8"):
        table.validate_for(tiny)
    with pytest.raises(LatencyTableError, match="input size 224.*takes 32"):
        table.validate_for(embedded_space())


def test_original_format_detected_and_bad_original(pixel1_table_path):
    raw = json.load(open(pixel1_table_path))
    assert table_from_json(raw).constant_ms == pytest.approx(19.5999)
    raw["5"]["2"] = 0
    with pytest.raises(LatencyTableError, match="layer 5, key 'k5_e3'"):
        table_from_json(raw)


def test_not_json(tmp_path):
    p = tmp_path / "t.json"
    p.write_text("{not json")
    with pytest.raises(LatencyTableError, match="not valid JSON"):
        load_table(str(p))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_table(str(tmp_path / "missing.json"))


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "spnas.latency.main", *args], capture_output=True, text=True
    )


def test_cli_predict(pixel1_table_path, tmp_path):
    r = _cli("predict", f"--table={pixel1_table_path}", "--arch=spnas_pixel1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "predicted_ms: 80.5926"
    r = _cli("predict", f"--table={pixel1_table_path}", "--arch=all_k5_e6")
    assert r.stdout.strip().splitlines()[-1] == "predicted_ms: 131.4578"
    # Our format, converted by the import command, gives the same figure.
    ours = tmp_path / "pixel1_spnas.json"
    r = _cli("import", f"--table={pixel1_table_path}", f"--out={ours}")
    assert r.returncode == 0, r.stderr
    r = _cli("predict", f"--table={ours}", "--arch=spnas_pixel1")
    assert r.stdout.strip().splitlines()[-1] == "predicted_ms: 80.5926"


def test_cli_errors(pixel1_table_path, tmp_path):
    r = _cli("predict", f"--table={pixel1_table_path}", "--arch=nonet")
    assert r.returncode == 2 and "Unknown architecture 'nonet'" in r.stderr
    r = _cli("predict", f"--table={tmp_path / 'none.json'}", "--arch=spnas_pixel1")
    assert r.returncode == 2 and "does not exist" in r.stderr
