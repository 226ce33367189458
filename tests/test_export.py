"""TFLite export: float fidelity, int8 agreement, LiteRT timing, the report and the CLI.

The model is a small MBConv net (stem, two MBConv layers, head) trained for a
few steps on scikit-learn's real 8x8 digits, upsampled to 32x32x3, so that its
weights, activation ranges and decision margins are not those of a random init.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from spnas.export import litert
from spnas.export.report import (
    FLOAT_FILE,
    INT8_FILE,
    REPORT_FILE,
    export_model,
    load_keras_model,
    take_images,
)
from spnas.export.tflite import ExportError, convert_int8

SIZE = 32


def _digits():
    """All 1,797 digits as normalised float32 [N, 32, 32, 3] and one-hot labels."""
    from sklearn.datasets import load_digits

    from spnas.space import IMAGENET_MEAN_RGB, IMAGENET_STDDEV_RGB

    d = load_digits()
    grey = d.images.astype(np.float32) * (255.0 / 16.0)  # grey levels 0..16 -> 0..255
    big = np.kron(grey, np.ones((1, SIZE // 8, SIZE // 8), np.float32))  # nearest 8 -> 32
    rgb = np.repeat(big[..., None], 3, axis=-1)
    x = (rgb - np.array(IMAGENET_MEAN_RGB, np.float32)) / np.array(IMAGENET_STDDEV_RGB, np.float32)
    y = np.eye(10, dtype=np.float32)[d.target]
    return x, y


def _small_model():
    import keras

    from spnas.models.blocks import head, mbconv, stem

    inp = keras.Input((SIZE, SIZE, 3))
    x = stem(inp, 16, 2)
    x = mbconv(x, 16, 3, 1, 3, True, "b1")
    x = mbconv(x, 24, 5, 2, 6, False, "b2")
    return keras.Model(inp, head(x, 64, 10, 0.2), name="small")


@pytest.fixture(scope="module")
def digits():
    return _digits()


@pytest.fixture(scope="module")
def trained(digits):
    """The small model after 44 Adam steps on 1,400 digits (the rest is held out)."""
    import keras

    keras.utils.set_random_seed(0)
    x, y = digits
    model = _small_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False,
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(x[:1400], y[:1400], batch_size=64, epochs=2, verbose=0)
    # BN momentum 0.99 (MnasNet) leaves the moving statistics mostly at their
    # initial values after 44 steps; set them to the statistics of 512 training
    # images (momentum 0 for one pass) so inference mode is a working classifier.
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(x[:512], training=True)
    for layer in norms:
        layer.momentum = 0.99
    return model


@pytest.fixture(scope="module")
def exported(trained, digits, tmp_path_factory):
    x, y = digits
    workdir = tmp_path_factory.mktemp("export")
    report = export_model(trained, str(workdir), calibration=x[:200], eval_images=x[1400:1700],
                          eval_labels=y[1400:1700], warmup=5, repeats=30)
    return workdir, report


def test_float_matches_keras(exported, trained, digits):
    workdir, report = exported
    f = report["float"]
    assert f["max_rel_diff"] <= 1e-4, f
    # Recompute from the written file rather than trusting the report.
    x = digits[0][1400:1700]
    keras_out = np.asarray(trained.predict(x, verbose=0))
    lite_out = litert.run_tflite((workdir / FLOAT_FILE).read_bytes(), x)
    assert lite_out.shape == (300, 10)
    rel = np.max(np.abs(keras_out - lite_out)) / np.max(np.abs(keras_out))
    assert rel <= 1e-4
    assert f["top1_agreement_pct"] == 100.0
    # The trained net is a real classifier, so agreement is not trivially high.
    assert report["eval"]["keras_top1_pct"] > 50.0


def test_int8_agrees_with_keras(exported, trained, digits):
    workdir, report = exported
    q = report["int8"]
    assert report["eval"]["num_images"] == 300
    # Recomputed from the written model_int8.tflite (LiteRT interpreter), not read
    # from the report: top-1 agreement with Keras on the same 300 held-out images.
    x, y = digits[0][1400:1700], digits[1][1400:1700]
    keras_out = np.asarray(trained.predict(x, verbose=0))
    int8_out = litert.run_tflite((workdir / INT8_FILE).read_bytes(), x)
    assert int8_out.shape == (300, 10)
    agreement = 100.0 * np.mean(int8_out.argmax(-1) == keras_out.argmax(-1))
    assert agreement >= 95.0, agreement
    assert q["top1_agreement_pct"] == pytest.approx(agreement)  # and the report says so
    top1 = 100.0 * np.mean(int8_out.argmax(-1) == y.argmax(-1))
    assert q["top1_pct"] == pytest.approx(top1)
    keras_top1 = 100.0 * np.mean(keras_out.argmax(-1) == y.argmax(-1))
    assert report["eval"]["keras_top1_pct"] == pytest.approx(keras_top1)
    assert abs(top1 - keras_top1) <= 5.0  # int8 costs at most a few points here
    assert q["io_dtype"] == "float32" and q["calibration_images"] == 200
    # Weights stored as int8: well under half the float file.
    assert q["size_bytes"] < 0.6 * report["float"]["size_bytes"]
    assert os.path.getsize(workdir / INT8_FILE) == q["size_bytes"]


def test_report_contents(exported):
    workdir, report = exported
    on_disk = json.loads((workdir / REPORT_FILE).read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert on_disk["format"] == "spnas.export_report/1"
    assert on_disk["input_shape"] == [1, SIZE, SIZE, 3]
    ops = on_disk["float"]["op_counts"]
    # stem + b1 (pw, pwl) + b2 (pw, pwl) + head conv = 6 CONV_2D; BN is folded away.
    assert ops["CONV_2D"] == 6 and ops["DEPTHWISE_CONV_2D"] == 2
    assert ops["FULLY_CONNECTED"] == 1 and "DELEGATE" not in ops
    q_ops = on_disk["int8"]["op_counts"]
    assert q_ops["QUANTIZE"] == 1 and q_ops["DEQUANTIZE"] == 1  # float32 I/O
    for key in ("float", "int8"):
        lat = on_disk[key]["latency"]
        assert lat["repeats"] == 30 and lat["threads"] == 1
        assert 0 < lat["p10_ms"] <= lat["median_ms"] <= lat["p90_ms"]
        assert on_disk[key]["latency_ms"] == lat["median_ms"]
    # Nothing but the three outputs (no temp files left by the atomic writes).
    assert sorted(set(os.listdir(workdir)) - {"model.onnx"}) == sorted([FLOAT_FILE, INT8_FILE, REPORT_FILE])


def test_int8_io_scales_inputs_and_outputs(trained, digits):
    x = digits[0]
    fb = convert_int8(trained, [x[:100]], num_samples=100, int8_io=True)
    interp = litert.make_interpreter(fb)
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    out = litert.run_tflite(fb, x[1400:1600])  # run_tflite quantizes and dequantizes
    ref = np.asarray(trained.predict(x[1400:1600], verbose=0))
    assert np.mean(out.argmax(-1) == ref.argmax(-1)) >= 0.95


def test_bad_inputs_name_the_problem(trained, digits):
    fb_bad = b"not a flatbuffer"
    with pytest.raises(ExportError, match="cannot load"):
        litert.run_tflite(fb_bad, digits[0][:2])
    with pytest.raises(ExportError, match="no images|none"):
        convert_int8(trained, [], num_samples=10)
    with pytest.raises(ExportError, match=r"shape \(16, 16, 3\)"):
        convert_int8(trained, [np.zeros((4, 16, 16, 3), np.float32)], num_samples=4)


def test_run_and_time_on_wrong_shape(exported, digits):
    workdir, _ = exported
    fb = (workdir / FLOAT_FILE).read_bytes()
    with pytest.raises(ExportError, match="Model input is"):
        litert.run_tflite(fb, np.zeros((2, 16, 16, 3), np.float32))
    stats = litert.measure_latency(fb, (1, SIZE, SIZE, 3), warmup=1, repeats=7)
    assert stats.repeats == 7 and stats.median_ms > 0 and np.isfinite(stats.spread)
    with pytest.raises(ExportError, match="repeats"):
        litert.measure_latency(fb, repeats=0)


def test_missing_model_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "model.keras"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_keras_model(str(missing))


def test_take_images_from_batches(digits):
    x, y = digits
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 320, 64)]
    images, labels = take_images(batches, 100)
    assert images.shape == (100, SIZE, SIZE, 3) and labels.shape == (100, 10)
    np.testing.assert_array_equal(images, x[:100])
    with pytest.raises(ExportError, match="no images"):
        take_images([], 5)


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "spnas.export.main", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def test_cli_exports_a_workdir(trained, tmp_path):
    trained.save(tmp_path / "model.keras")
    r = _cli(f"--workdir={tmp_path}", "--num_calibration=64", "--num_eval=100", "--repeats=10",
             "--warmup=2")
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / REPORT_FILE).read_text())
    assert report["model"] == str(tmp_path / "model.keras")
    assert report["dataset"]["name"] == "embedded"
    assert report["eval"]["num_images"] == 100 and report["int8"]["calibration_images"] == 64
    assert report["float"]["max_rel_diff"] <= 1e-4
    assert (tmp_path / FLOAT_FILE).stat().st_size == report["float"]["size_bytes"]
    assert "top-1 agreement" in r.stdout


def test_cli_missing_model(tmp_path):
    r = _cli(f"--workdir={tmp_path}")
    assert r.returncode == 2
    assert str(tmp_path / "model.keras") in r.stderr and "does not exist" in r.stderr
    assert not (tmp_path / REPORT_FILE).exists()
