"""Latency tables per precision and runtime: int8 LiteRT and float ONNX Runtime tables,
the ONNX export, and the int8 table's comparison in export_report.json.

Tables are profiled on the smoke space (4 searchable layers) with few repeats:
the numbers are not meant to be good, only made the way real tables are.
"""

import json
import sys

import numpy as np
import pytest
from spnas.configs import export_default

from spnas.arch.handoff import load_arch, make_arch, write_arch
from spnas.config_check import ConfigError
from spnas.config_check import check as check_config
from spnas.export import onnx as onnx_export
from spnas.export.report import ONNX_FILE, REPORT_FILE, check_int8_table, export_model
from spnas.export.report import run as run_export
from spnas.export.tflite import ExportError
from spnas.latency.probe import network_model
from spnas.latency.profile import profile_table
from spnas.latency.runtimes import Deployment, DeploymentError
from spnas.latency.validate import ValidationError, validate
from spnas.space import smoke_space
from spnas.tables import shipped
from spnas.tables.table import (
    LatencyTableError,
    import_original,
    load_table,
    save_table,
    table_from_json,
)
from tests.test_export import _digits

QUICK = {"warmup": 2, "repeats": 10, "progress": False, "statistic": "min"}
CHOICES = ["k3_e1", "k5_e6", "k3_e3", "k3_e6", "skip", "k3_e6"]


@pytest.fixture(scope="module")
def space():
    return smoke_space()


@pytest.fixture(scope="module")
def int8_table(space, tmp_path_factory):
    path = tmp_path_factory.mktemp("int8") / "smoke_int8.json"
    save_table(profile_table(space, precision="int8", **QUICK), str(path))
    return load_table(str(path), space=space)


@pytest.fixture(scope="module")
def onnx_table(space, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    path = tmp_path_factory.mktemp("onnx") / "smoke_onnxruntime.json"
    save_table(profile_table(space, runtime="onnxruntime", **QUICK), str(path))
    return load_table(str(path), space=space)


def _check_table(table, space, precision, runtime, name):
    assert table.deployment == {"precision": precision, "runtime": runtime}
    assert table.runtime == name and table.runtime_version != "unknown"
    assert sorted(table.layers) == space.searchable_indices()
    report = validate(table, space, n=3, seed=0, progress=False)
    assert report["n"] == 3 and np.isfinite(report["mape_exact"])
    assert report["settings"]["precision"] == precision
    assert report["settings"]["runtime"] == runtime
    assert report["table"]["deployment"] == table.deployment
    # A table is a table: a search predicts with it like with any other.
    arch = make_arch(space, CHOICES, table)
    assert arch["predicted_ms_exact"] > table.constant_ms
    assert arch["latency_table"]["precision"] == precision
    return report


def test_int8_table_loads_validates_and_predicts(int8_table, space):
    _check_table(int8_table, space, "int8", "litert", "LiteRT")
    assert "int8" in int8_table.extra["converter"]
    with pytest.raises(ValidationError, match="profiled with precision 'int8'"):
        validate(int8_table, space, n=1, precision="float32", progress=False)


def test_onnx_table_loads_validates_and_predicts(onnx_table, space):
    _check_table(onnx_table, space, "float32", "onnxruntime", "ONNX Runtime")
    assert "tf2onnx" in onnx_table.extra["converter"]


def test_old_tables_read_as_float_litert(tmp_path):
    table = load_table("embedded_cpu")
    assert table.deployment == {"precision": "float32", "runtime": "litert"}
    original = {str(i): {str(j): 1.0 + j for j in range(4)} for i in range(5)}
    assert import_original(original).deployment["precision"] == "float32"
    data = json.loads(open(shipped.path("smoke_cpu")).read())
    data["deployment"] = {"precision": "int4", "runtime": "litert"}
    with pytest.raises(LatencyTableError, match="deployment precision 'int4' is not one of"):
        table_from_json(data)


def test_bad_combinations_are_one_line(monkeypatch):
    with pytest.raises(DeploymentError, match="int8 ONNX models are not supported"):
        Deployment("int8", "onnxruntime").check()
    with pytest.raises(DeploymentError, match="this host only"):
        Deployment("float32", "onnxruntime").check(on_device=True)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    # (onnx and tf2onnx are listed too where they are not installed either, as in CI)
    with pytest.raises(onnx_export.OnnxUnavailable, match=r"missing: onnxruntime[,)].*; install "
                                                          r"it with: pip install 'spnas\[onnx\]'"):
        Deployment("float32", "onnxruntime").check()
    float_table = load_table("smoke_cpu")
    with pytest.raises(ExportError, match="holds float32 litert timings"):
        check_int8_table(float_table)


def test_int8_table_config_key():
    config = export_default.get_config()
    assert config.int8_table == ""
    check_config(config, "export")
    config.int8_table = " embedded_cpu_int8"
    with pytest.raises(ConfigError, match="int8_table must be"):
        check_config(config, "export")


@pytest.fixture(scope="module")
def trained(space):
    """The smoke space's net of CHOICES after a few Adam steps on the real digits."""
    import keras

    keras.utils.set_random_seed(0)
    x, y = _digits()
    model = network_model(space, CHOICES)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False,
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(x[:1024], y[:1024], batch_size=64, epochs=1, verbose=0)
    return model


def test_export_without_onnx_packages_notes_it(trained, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    x, _ = _digits()
    report = export_model(trained, str(tmp_path), calibration=x[:16], eval_images=x[1400:1432],
                          warmup=1, repeats=5)
    assert "not installed" in report["onnx"]["skipped"]
    assert not (tmp_path / ONNX_FILE).exists()
    assert "note: model.onnx not written: the [onnx] extra is not installed" in capsys.readouterr().out


def test_export_writes_onnx_and_the_int8_comparison(trained, space, int8_table, tmp_path):
    """spnas-export's library run: model.onnx checked against Keras, the int8 table's line."""
    config = export_default.get_config()
    config.int8_table = int8_table.path
    config.num_calibration, config.num_eval, config.warmup, config.repeats = 16, 64, 2, 20
    trained.save(str(tmp_path / "model.keras"))
    config.model = str(tmp_path / "model.keras")
    with pytest.raises(ExportError, match="config.int8_table needs the net's architecture: no "):
        run_export(config, str(tmp_path / "no_arch"))  # no arch.json there
    write_arch(str(tmp_path / "arch.json"), make_arch(space, CHOICES, int8_table))
    report = run_export(config, str(tmp_path))
    arch = load_arch(str(tmp_path / "arch.json"))
    p = report["int8"]["table_prediction"]
    assert p["statistic"] == "min" and p["table"]["precision"] == "int8"
    assert p["table"]["path"] == int8_table.path
    assert p["predicted_ms_exact"] == pytest.approx(arch["predicted_ms_exact"])
    assert p["measured_ms"] == pytest.approx(report["int8"]["latency"]["min_ms"])
    assert p["error_pct_exact"] == pytest.approx(
        100 * (p["predicted_ms_exact"] / p["measured_ms"] - 1))
    written = json.loads((tmp_path / REPORT_FILE).read_text())
    assert written["int8"]["table_prediction"] == p
    if not onnx_export.onnx_available():
        assert "not installed" in report["onnx"]["skipped"]
        pytest.skip("the [onnx] extra is not installed")
    onnx = report["onnx"]
    assert onnx["file"] == ONNX_FILE and onnx["max_rel_diff"] <= 1e-4, onnx
    # Recomputed from the written file on real images (the digits, as in test_export).
    x = _digits()[0][1400:1600]
    keras_out = np.asarray(trained.predict(x, verbose=0))
    ort_out = onnx_export.run_onnx((tmp_path / ONNX_FILE).read_bytes(), x)
    assert np.max(np.abs(keras_out - ort_out)) / np.max(np.abs(keras_out)) <= 1e-4


@pytest.mark.parametrize("name,precision,runtime", [
    ("embedded_cpu_int8", "int8", "litert"),
    ("embedded_cpu_onnxruntime", "float32", "onnxruntime"),
])
def test_shipped_tables_per_deployment(name, precision, runtime):
    from spnas.space import embedded_space

    table = load_table(name, space=embedded_space())
    assert table.deployment == {"precision": precision, "runtime": runtime}
    assert table.statistic == "min" and table.extra["calibration"]["n"] == 10
