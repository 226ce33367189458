"""spnas-pipeline: search -> train -> export -> measure on one workdir (smoke sizes)."""

import json

import pytest

from spnas.configs_path import load_config
from spnas.tables import resolve_table_path


def _smoke_train(steps: int = 2):
    train = load_config("train_default.py")
    train.update_from_flattened_dict({
        "schedule.train_steps": steps, "schedule.batch_size": 16, "execution.run_eagerly": True,
        "schedule.bn_recalibration_batches": 1, "execution.checkpoint_every": 2,
        "execution.log_every": 1})
    return train


def test_pipeline_smoke(tmp_path, capsys):
    from spnas.pipeline.run import REPORT, run

    search = load_config("smoke.py")
    train = _smoke_train()
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
    assert saved["float_bytes"] > saved["int8_bytes"] > 0
    trained_report = json.loads((tmp_path / "train_report.json").read_text())
    exported_report = json.loads((tmp_path / "export_report.json").read_text())
    # top-1 is the training run's, a count over its validation images.
    assert saved["top1"] == trained_report["top1"]
    hits = saved["top1"] * trained_report["eval_images"]
    assert hits == pytest.approx(round(hits), abs=1e-3)
    assert saved["int8_top1_agreement_pct"] == exported_report["int8"]["top1_agreement_pct"]
    # The predictions recomputed by hand from the shipped smoke table (Eq. 10-12): constant
    # + sum of the searchable layers' entries (skip = 0); the paper model's k3e3 is
    # R_k5e3 * R_k3e6 / R_k5e6.
    table = json.loads(open(resolve_table_path("smoke_cpu")).read())
    exact = paper = table["constant_ms"]
    for index, choice in enumerate(saved["layers"]):
        row = table["layers"].get(str(index))
        if row is None or choice == "skip":
            continue
        exact += row[choice]
        paper += row["k5_e3"] * row["k3_e6"] / row["k5_e6"] if choice == "k3_e3" else row[choice]
    assert saved["predicted_ms_exact"] == pytest.approx(exact, rel=1e-9)
    assert saved["predicted_ms"] == pytest.approx(paper, rel=1e-9)
    err = 100.0 * (exact / saved["measured_ms"] - 1.0)
    assert f"{err:+.1f} %" in out
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
    _rerun_skips_the_finished_stages(search, train, tmp_path, summary, capsys)


def _rerun_skips_the_finished_stages(search, train, tmp_path, first, capsys):
    """A rerun of the finished pipeline rewrites nothing and prints the recorded summary;
    one with another training config is refused (spnas/workdir.py)."""
    from spnas.pipeline.run import REPORT, run
    from spnas.workdir import RUN_FILE

    names = ("arch.json", "model.keras", "train_report.json", "model_float.tflite",
             "export_report.json", REPORT, RUN_FILE)
    files = {n: (tmp_path / n).read_bytes() for n in names}
    capsys.readouterr()
    again = run(search, train, str(tmp_path))
    captured = capsys.readouterr()
    assert again == json.loads(json.dumps(first))
    assert {n: (tmp_path / n).read_bytes() for n in names} == files
    said = captured.out + captured.err
    for stage in ("search", "training", "export", "pipeline"):
        assert f"the {stage} in {tmp_path} is" in said and "already finished" in said, stage
    assert "prediction error (exact vs measured)" in captured.out
    with pytest.raises(Exception, match=r"train run .*does not fit this config: .*train_steps"):
        run(search, _smoke_train(steps=3), str(tmp_path))
    assert {n: (tmp_path / n).read_bytes() for n in names} == files
