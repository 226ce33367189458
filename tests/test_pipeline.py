"""spnas-pipeline: search -> train -> export -> measure on one workdir (smoke sizes)."""

import json

import pytest

from spnas.configs_path import load_config


def test_pipeline_smoke(tmp_path, capsys):
    from spnas.pipeline.run import REPORT, run

    search = load_config("smoke.py")
    train = load_config("train_default.py")
    train.update_from_flattened_dict({
        "schedule.train_steps": 2, "schedule.batch_size": 16, "execution.run_eagerly": True,
        "schedule.bn_recalibration_batches": 1, "execution.checkpoint_every": 2,
        "execution.log_every": 1})
    summary = run(search, train, str(tmp_path))
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / REPORT).read_text())
    assert saved == json.loads(json.dumps(summary))
    for name in ("arch.json", "model.keras", "model_float.tflite", "model_int8.tflite",
                 "export_report.json", "train_report.json"):
        assert (tmp_path / name).exists(), name
    arch = json.loads((tmp_path / "arch.json").read_text())
    assert saved["layers"] == arch["layers"] and saved["predicted_ms"] == arch["predicted_ms"]
    # The shipped smoke table holds a profiled statistic; the measurement uses the same one.
    assert saved["table_statistic"] in ("min", "p10", "median")
    assert saved["measured_ms"] == pytest.approx(saved[f"measured_ms_{saved['table_statistic']}"])
    assert 0 < saved["measured_ms_min"] <= saved["measured_ms_p10"] <= saved["measured_ms_median"]
    assert 0 <= saved["top1"] <= 1 and saved["float_bytes"] > saved["int8_bytes"] > 0
    assert "prediction error (exact vs measured)" in out and "pipeline_report.json" in out
    # One data section: the export read the training run's validation images.
    exported = json.loads((tmp_path / "export_report.json").read_text())
    trained = json.loads((tmp_path / "train_report.json").read_text())
    assert trained["config"]["data"] == search.data.to_dict()
    assert exported["dataset"]["name"] == search.data.dataset
    assert exported["dataset"]["eval_split"] == trained["eval_split"]
    assert exported["dataset"]["seed"] == trained["config"]["seed"]
    assert exported["dataset"]["validation_fraction"] == search.data.validation_fraction
    # The arch the search wrote was handed over once, as an object.
    assert trained["arch"]["sha256"] == saved["arch"]["sha256"] and trained["arch"]["file"]
