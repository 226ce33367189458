"""Every input file spnas reads fails, when it is the wrong thing, with one line naming it.

Each case gives a reader a path that is missing, a directory where a file belongs
(or the reverse), empty, binary garbage, truncated, valid but of the wrong schema
or version, unreadable (skipped as root, where ``chmod 000`` has no effect) or a
symbolic-link loop, and checks what the command-line tools would print
(:func:`spnas.cli.guarded`: exit status 2, one line, the file named). The library
readers are called directly (fast); a few subprocess runs show the one-line
output of the CLIs themselves. Also: a folder with one corrupt image of 49 is
counted as 44 train images, with 1 skipped, in what is reported and recorded.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from spnas import cli
from spnas.tables import shipped

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
GARBAGE = bytes(range(256)) * 4 + b"\x00\xff\xfe"
SHIPPED = shipped.path("smoke_cpu")


def _message(fn, *args, **kwargs) -> str:
    """What spnas-x prints for ``fn(*args)``: asserts exit 2 and one line; returns it."""
    import contextlib

    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        cli.guarded("spnas-x", lambda argv: fn(*args, **kwargs), [])
    assert exit_info.value.code == 2
    text = err.getvalue()
    assert text.count("\n") == 1 and text.startswith("spnas-x: error: "), text
    return text.strip()


def _names(text: str, path) -> None:
    assert os.fspath(path) in text, text


# ---------------------------------------------------------------- bad files, made once


def _bad_files(tmp, valid: bytes, wrong_schema: bytes, wrong_version: bytes) -> dict:
    """{kind: path} of the defects every file input is tried with."""
    files = {
        "missing": tmp / "missing.json",
        "directory": tmp / "a_directory.json",
        "empty": tmp / "empty.json",
        "garbage": tmp / "garbage.json",
        "truncated": tmp / "truncated.json",
        "wrong_schema": tmp / "wrong_schema.json",
        "wrong_version": tmp / "wrong_version.json",
        "loop": tmp / "loop.json",
    }
    files["directory"].mkdir()
    files["empty"].write_bytes(b"")
    files["garbage"].write_bytes(GARBAGE)
    files["truncated"].write_bytes(valid[: len(valid) // 2])
    files["wrong_schema"].write_bytes(wrong_schema)
    files["wrong_version"].write_bytes(wrong_version)
    os.symlink(tmp / "loop_b.json", files["loop"])
    os.symlink(files["loop"], tmp / "loop_b.json")
    if not AS_ROOT:
        files["unreadable"] = tmp / "unreadable.json"
        files["unreadable"].write_bytes(valid)
        files["unreadable"].chmod(0)
    return files


KINDS = ["missing", "directory", "empty", "garbage", "truncated", "wrong_schema",
         "wrong_version", "loop", "unreadable"]


def _kind(files: dict, kind: str):
    if kind not in files:
        pytest.skip("chmod 000 does not stop root from reading")
    return files[kind]


@pytest.fixture(scope="module")
def table_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tables")
    valid = open(SHIPPED, "rb").read()
    data = json.loads(valid)
    return _bad_files(tmp, valid, json.dumps({"hello": [1, 2]}).encode(),
                      json.dumps({**data, "format": "spnas.latency_table/9"}).encode())


@pytest.fixture(scope="module")
def original_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("original")
    rows = {str(i): {str(j): 0.5 + i + j for j in range(4)} for i in range(6)}
    valid = json.dumps(rows).encode()
    return _bad_files(tmp, valid, json.dumps({"0": {"0": 1.0}, "x": 2}).encode(),
                      open(SHIPPED, "rb").read())  # ours already: not to be imported


@pytest.fixture(scope="module")
def arch_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("archs")
    valid = json.dumps({"format": "spnas.arch/1", "layers": ["k3_e3"] * 3,
                        "stages": ["ir_r1_k3_s1_e3_c16"]}).encode()
    return _bad_files(tmp, valid, json.dumps([1, 2, 3]).encode(),
                      json.dumps({"format": "spnas.arch/7", "layers": [], "stages": []}).encode())


# ---------------------------------------------------------------- latency tables


@pytest.mark.parametrize("kind", KINDS)
def test_latency_table(table_files, kind):
    from spnas.tables import load_table

    path = _kind(table_files, kind)
    _names(_message(load_table, str(path)), path)


def test_latency_table_named_in_a_missing_directory(tmp_path):
    from spnas.tables import load_table

    path = tmp_path / "no_such_dir" / "t.json"
    text = _message(load_table, str(path))
    _names(text, path)
    assert "does not exist" in text


def test_latency_table_wrong_field_type(tmp_path):
    from spnas.tables import load_table

    data = json.loads(open(SHIPPED, "rb").read())
    path = tmp_path / "t.json"
    path.write_text(json.dumps({**data, "input_size": "large"}))
    text = _message(load_table, str(path))
    _names(text, path)
    assert "input_size" in text


@pytest.mark.parametrize("kind", KINDS)
def test_import_original_table(original_files, kind, tmp_path):
    from spnas.latency.offline import import_table

    path = _kind(original_files, kind)
    text = _message(import_table, str(path), str(tmp_path / "out.json"), 19.6, "Pixel 1")
    _names(text, path)
    assert not (tmp_path / "out.json").exists()


def test_import_into_a_directory(tmp_path):
    from spnas.latency.offline import import_table

    text = _message(import_table, SHIPPED, str(tmp_path), 19.6, "Pixel 1")
    _names(text, tmp_path)


def test_shipped_name_works_wherever_a_table_is_taken():
    from spnas.latency.offline import predict
    from spnas.tables import load_table

    assert load_table("smoke_cpu").path == SHIPPED
    # all_<choice> has no space of its own: it is read in the table's space.
    assert predict("embedded_cpu", "all_k3_e3")["ms"] > 0
    text = _message(load_table, "pixel9_cpu")
    assert "pixel9_cpu" in text and "smoke_cpu" in text  # lists the shipped tables


# ---------------------------------------------------------------- arch.json


@pytest.mark.parametrize("kind", KINDS)
def test_arch_json(arch_files, kind):
    from spnas.arch.handoff import load_arch
    from spnas.arch.plan import plan_model

    path = _kind(arch_files, kind)
    _names(_message(load_arch, str(path)), path)
    _names(_message(plan_model, str(path)), path)  # what spnas-train builds from --arch


# ---------------------------------------------------------------- Keras and TFLite models


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    import keras

    tmp = tmp_path_factory.mktemp("models")
    files = {"missing": tmp / "missing.keras", "directory": tmp / "dir.keras",
             "empty": tmp / "empty.keras", "garbage": tmp / "garbage.keras",
             "loop": tmp / "loop.keras", "wrong_suffix": tmp / "model.bin",
             "zip_not_keras": tmp / "other.keras", "not_images": tmp / "dense.keras"}
    files["directory"].mkdir()
    files["empty"].write_bytes(b"")
    files["garbage"].write_bytes(GARBAGE)
    os.symlink(tmp / "loop2.keras", files["loop"])
    os.symlink(files["loop"], tmp / "loop2.keras")
    files["wrong_suffix"].write_bytes(GARBAGE)
    with zipfile.ZipFile(files["zip_not_keras"], "w") as z:
        z.writestr("readme.txt", "not a model")
    dense = keras.Sequential([keras.Input((10,)), keras.layers.Dense(2)])
    dense.save(files["not_images"])
    files["truncated"] = tmp / "truncated.keras"
    files["truncated"].write_bytes(files["not_images"].read_bytes()[:-200])
    if not AS_ROOT:
        files["unreadable"] = tmp / "unreadable.keras"
        files["unreadable"].write_bytes(files["not_images"].read_bytes())
        files["unreadable"].chmod(0)
    return files


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "garbage", "truncated", "loop",
                                  "wrong_suffix", "zip_not_keras", "not_images", "unreadable"])
def test_keras_model(model_files, kind):
    from spnas.export.report import load_keras_model

    path = _kind(model_files, kind)
    _names(_message(load_keras_model, str(path)), path)


@pytest.fixture(scope="module")
def tflite_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tflite")
    files = {"missing": tmp / "missing.tflite", "directory": tmp / "dir.tflite",
             "empty": tmp / "empty.tflite", "garbage": tmp / "garbage.tflite",
             "fake_header": tmp / "fake.tflite"}
    files["directory"].mkdir()
    files["empty"].write_bytes(b"")
    files["garbage"].write_bytes(GARBAGE)
    files["fake_header"].write_bytes(b"\x1c\x00\x00\x00TFL3" + GARBAGE)
    return files


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "garbage", "fake_header"])
def test_tflite_file(tflite_files, kind):
    from spnas.export.litert import read_tflite

    path = tflite_files[kind]
    _names(_message(read_tflite, str(path)), path)


def test_damaged_cached_network_is_converted_again(tmp_path, capsys):
    from spnas.latency import validate

    space_choices = _tiny_space_choices()
    first = validate._converted(*space_choices, str(tmp_path))
    (cached,) = tmp_path.glob("net_*.tflite")
    cached.write_bytes(first[: len(first) // 3])  # truncated
    again = validate._converted(*space_choices, str(tmp_path))
    assert cached.read_bytes() == again and len(again) > len(first) // 2  # a whole one again
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("spnas: note: ") and str(cached) in out


def _tiny_space_choices():
    from spnas.space import smoke_space, uniform_choices

    space = smoke_space()
    return space, uniform_choices(space, "k3_e3")


# ---------------------------------------------------------------- image folders


def _write_image(path, rng, size=32):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("folders")
    rng = np.random.default_rng(0)
    made = {"missing": tmp / "missing", "a_file": tmp / "a_file", "empty": tmp / "empty",
            "no_classes": tmp / "no_classes", "train_is_a_file": tmp / "train_file",
            "one_class": tmp / "one_class", "all_corrupt": tmp / "all_corrupt",
            "no_images": tmp / "no_images"}
    made["a_file"].write_bytes(GARBAGE)
    made["empty"].mkdir()
    (made["no_classes"] / "train").mkdir(parents=True)
    made["train_is_a_file"].mkdir()
    (made["train_is_a_file"] / "train").write_bytes(b"")
    for i in range(4):
        _write_image(made["one_class"] / "train" / "cat" / f"{i}.png", rng)
        for cls in ("cat", "dog"):
            bad = made["all_corrupt"] / "train" / cls / f"{i}.jpg"
            bad.parent.mkdir(parents=True, exist_ok=True)
            bad.write_bytes(GARBAGE)
    for cls in ("cat", "dog"):
        (made["no_images"] / "train" / cls).mkdir(parents=True)
        (made["no_images"] / "train" / cls / "notes.txt").write_text("no images here")
    if not AS_ROOT:
        made["unreadable"] = tmp / "unreadable"
        for cls in ("cat", "dog"):
            _write_image(made["unreadable"] / "train" / cls / "0.png", rng)
        (made["unreadable"] / "train" / "dog").chmod(0)
    return made


FOLDER_KINDS = ["missing", "a_file", "empty", "no_classes", "train_is_a_file", "one_class",
                "no_images", "all_corrupt", "unreadable"]


@pytest.mark.parametrize("kind", FOLDER_KINDS)
@pytest.mark.parametrize("input", ["numpy", "tf"])
def test_image_folder(folders, kind, input):
    from spnas.data import build_dataset

    root = _kind(folders, kind)
    for on_corrupt in ("error", "skip"):
        text = _message(build_dataset, f"folder:{root}", "train", 2, 32, True,
                        on_corrupt=on_corrupt, input=input, validation_fraction=0.0)
        _names(text, root)


def test_symlink_loop_in_a_class_is_listed_once(tmp_path):
    from spnas.data import dataset_info

    rng = np.random.default_rng(1)
    for cls in ("cat", "dog"):
        _write_image(tmp_path / "train" / cls / "0.png", rng)
    os.symlink(tmp_path / "train" / "cat", tmp_path / "train" / "cat" / "again")
    info = dataset_info(f"folder:{tmp_path}", "train", validation_fraction=0.0)
    assert info.num_examples == 2


def test_tfds_data_dir_is_a_file(tmp_path):
    from spnas.data import dataset_info

    path = tmp_path / "tfds_data"
    path.write_bytes(b"")
    text = _message(dataset_info, "cifar10", "train", data_dir=str(path), input="tf")
    _names(text, path)


def test_damaged_scan_cache_is_rebuilt_with_a_note(tmp_path, monkeypatch, capsys):
    from spnas.data import pil_scan, scan_cache

    monkeypatch.setenv("SPNAS_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(2)
    paths = []
    for i in range(3):
        _write_image(tmp_path / f"{i}.png", rng)
        paths.append(str(tmp_path / f"{i}.png"))
    (tmp_path / "bad.png").write_bytes(GARBAGE)
    paths.append(str(tmp_path / "bad.png"))
    first = pil_scan.scan_files(paths)
    cache = scan_cache.cache_path("pil_scan", paths, pil_scan._TAG)
    for damage in (GARBAGE, b'{"version": 1, "num_files": 4, "corrupt": [1]}', b"[1]"):
        with open(cache, "wb") as f:
            f.write(damage)
        capsys.readouterr()
        again = pil_scan.scan_files(paths)
        assert again == first and list(again.corrupt) == [paths[-1]]
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("spnas: note: ") and cache in err, err


# ---------------------------------------------------------------- the skipped count


@pytest.fixture(scope="module")
def folder_49(tmp_path_factory):
    """49 images of two classes (25 + 24), one of the train split's corrupt: with the
    default 10 % held out (2 + 2), 45 train files, 44 usable, 1 skipped."""
    from spnas.data.folder_layout import split_files

    root = tmp_path_factory.mktemp("folder49")
    rng = np.random.default_rng(3)
    for cls, n in (("cat", 25), ("dog", 24)):
        for i in range(n):
            _write_image(root / "train" / cls / f"{i:02d}.png", rng)
    _, _, train, _ = split_files(str(root), "train", 0.1, 0)
    assert len(train) == 45
    with open(train[7], "wb") as f:
        f.write(GARBAGE)
    return root


@pytest.mark.parametrize("input", ["numpy", "tf"])
def test_skipped_count_in_the_info(folder_49, input):
    from spnas.data import build_dataset, dataset_info

    name = f"folder:{folder_49}"
    listed = dataset_info(name, "train", validation_fraction=0.1, input=input)
    assert (listed.num_examples, listed.skipped) == (45, 0)  # listing only
    scanned = dataset_info(name, "train", validation_fraction=0.1, input=input,
                           on_corrupt="skip")
    assert (scanned.num_examples, scanned.skipped) == (44, 1)
    _, built = build_dataset(name, "train", 4, 32, True, validation_fraction=0.1,
                             on_corrupt="skip", input=input)
    assert built == scanned
    with pytest.raises(Exception, match="07.png|corrupt"):
        dataset_info(name, "train", validation_fraction=0.1, input=input, on_corrupt="error")


def test_skipped_count_reported_and_recorded_by_the_search(folder_49, tmp_path, capsys):
    from spnas.configs_path import load_config
    from spnas.search.run import run

    config = load_config("smoke.py")
    config.data.dataset = f"folder:{folder_49}"
    config.data.on_corrupt = "skip"
    config.schedule.batch_size = 4
    config.schedule.epochs = 1.0
    config.schedule.steps_per_epoch = 2
    config.schedule.bn_recalibration_batches = 1
    arch = run(config, str(tmp_path))
    out = capsys.readouterr().out
    assert "(44 train images, 1 corrupt skipped, 2 classes)" in out, out
    assert arch["search"]["train_images"] == 44
    assert arch["search"]["skipped_corrupt"] == {"train": 1, "validation": 0}


def test_skipped_count_reported_and_recorded_by_training(folder_49, tmp_path, capsys):
    from spnas.configs_path import load_config
    from spnas.train.run import run

    config = load_config("train_default.py")
    config.arch = "mobilenetv2_035"
    config.data.dataset = f"folder:{folder_49}"
    config.data.on_corrupt = "skip"
    config.schedule.batch_size = 4
    config.schedule.train_steps = 1
    config.schedule.bn_recalibration_batches = 1
    config.execution.run_eagerly = True
    report = run(config, str(tmp_path))
    out = capsys.readouterr().out
    assert "(44 train images, 1 corrupt skipped, 2 classes)" in out, out
    saved = json.loads((tmp_path / "train_report.json").read_text())
    for r in (report, saved):
        assert r["train_images"] == 44
        assert r["skipped_corrupt"] == {"train": 1, "validation": 0}


# ---------------------------------------------------------------- the CLIs, one line each


def _cli(module: str, *flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", module, *flags], capture_output=True,
                          text=True, timeout=300, env=env)


def _one_line(r: subprocess.CompletedProcess, prog: str, path) -> str:
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith(f"{prog}: error: ")]
    assert len(lines) == 1, r.stderr[-2000:]
    _names(lines[0], path)
    return lines[0]


def test_cli_latency_predict(table_files):
    for kind in ("directory", "truncated"):
        path = table_files[kind]
        r = _cli("spnas.latency.main", "predict", f"--table={path}", "--arch=all_k3_e3")
        _one_line(r, "spnas-latency", path)
    r = _cli("spnas.latency.main", "predict", "--table=embedded_cpu", "--arch=all_k3_e3")
    assert r.returncode == 0 and "predicted_ms:" in r.stdout, r.stderr[-2000:]


def test_cli_train_arch(arch_files, tmp_path):
    path = arch_files["directory"]
    r = _cli("spnas.train.main", f"--arch={path}", f"--workdir={tmp_path}")
    _one_line(r, "spnas-train", path)


def test_cli_export_model(model_files, tmp_path):
    path = model_files["truncated"]
    r = _cli("spnas.export.main", f"--model={path}", f"--workdir={tmp_path}")
    _one_line(r, "spnas-export", path)


def test_cli_search_folder(folders, tmp_path):
    path = folders["one_class"]
    r = _cli("spnas.search.main", "--config=" + os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "smoke.py"),
        f"--config.data.dataset=folder:{path}", f"--workdir={tmp_path}")
    _one_line(r, "spnas-search", path)
