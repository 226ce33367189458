"""spnas-pipeline: search -> train -> export -> measure on one workdir (smoke sizes)."""

import json

import pytest

from spnas.configs_path import load_config


def test_pipeline_smoke(tmp_path, capsys):
    from spnas.pipeline import REPORT, run

    search = load_config("smoke.py")
    train = load_config("train_default.py")
    train.update(dict(train_steps=2, batch_size=16, run_eagerly=True, bn_recalibration_batches=1,
                      checkpoint_every=2, log_every=1))
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
