"""The numpy/Pillow input path (spnas.data.numpy_pipeline) against the tf.data one.

Tolerances, measured on this suite's real images (pixel units, 0..255):

* resizes (``tf.image.resize`` bilinear and bicubic, antialias off): bit-identical
  on every case here; asserted within 1e-3 (another TF build may fuse
  multiply-adds differently);
* evaluation batches on real CIFAR-10 images stored losslessly (PNG), every
  augment's eval transform at 24, 32 and 48 px, square and non-square images:
  bit-identical; asserted within 1e-4 after normalisation;
* the same on the CIFAR-10 JPEGs: the decoders differ. TensorFlow's
  ``decode_jpeg`` uses libjpeg's fast integer IDCT by default, Pillow the accurate
  one (equal to TF's ``dct_method="INTEGER_ACCURATE"`` on all 300 files): at most
  5 levels apart, mean 1.0. The MnasNet eval crop decodes only the window in TF
  (``decode_and_crop_jpeg``), which changes pixels near a window edge that falls
  on an 8-pixel block boundary (up to 23 levels at 224 px, 99.9th percentile
  6): asserted mean <= 1.5, max <= 6 for whole-image transforms, max <= 32 and
  99.9th percentile <= 8 for the MnasNet crop.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from spnas.data import DatasetError, build_dataset, dataset_info
from spnas.data import numpy_preprocess as npp
from spnas.data import pipeline as dispatch
from spnas.data.numpy_pipeline import EvaluationPass, TrainingStream
from spnas.data.preprocess import random_crop_window as tf_random_crop_window
from spnas.space import IMAGENET_STDDEV_RGB
from tests.helpers import REPO
from tests.test_data import CIFAR_CLASSES, _extract_subset

PER_CLASS = 30  # 300 real CIFAR-10 JPEGs
STD = np.asarray(IMAGENET_STDDEV_RGB, np.float32)
AUGMENTS = ("none", "flip", "cifar", "mnasnet")


@pytest.fixture(autouse=True)
def _scan_cache(tmp_path, monkeypatch):
    """Keep the folder-scan caches out of the developer's home directory."""
    monkeypatch.setenv("SPNAS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def cifar_jpgs(shared_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar_jpg")
    return _extract_subset(shared_dir / "data" / "cifar10_train_jpg.tar.gz", root, PER_CLASS)


@pytest.fixture(scope="module")
def cifar_pngs(cifar_jpgs, tmp_path_factory):
    """The same images stored losslessly (both decoders give the same pixels); every
    third one resized (bicubic, by Pillow) to 45x31 so the set is not all square."""
    root = tmp_path_factory.mktemp("cifar_png")
    for i, path in enumerate(sorted((cifar_jpgs / "train").glob("*/*.jpg"))):
        dest = root / path.relative_to(cifar_jpgs).with_suffix(".png")
        dest.parent.mkdir(parents=True, exist_ok=True)
        image = Image.open(path)
        if i % 3 == 0:
            image = image.resize((45, 31), Image.BICUBIC)
        image.save(dest)
    return root


def _collect(ds):
    """All batches of a tf.data dataset or an evaluation PyDataset, concatenated."""
    if isinstance(ds, tf.data.Dataset):
        batches = [(x.numpy(), y.numpy()) for x, y in ds]
    else:
        batches = [ds[i] for i in range(len(ds))]
    xs, ys = zip(*batches, strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def _both(name, split, batch, size, training=False, **kw):
    return (build_dataset(name, split, batch, size, training, input="tf", **kw),
            build_dataset(name, split, batch, size, training, input="numpy", **kw))


# ---------------------------------------------------------------- against TensorFlow


def test_resizes_match_tensorflow():
    rng = np.random.default_rng(0)
    cases = [(32, 32, 24), (16, 16, 32), (8, 8, 32), (375, 500, 224), (20, 27, 32), (3, 5, 32),
             (1, 1, 8), (100, 60, 224), (300, 200, 17), (7, 300, 64)]
    for h, w, size in cases:
        for dtype in (np.uint8, np.float32):
            image = rng.integers(0, 256, size=(h, w, 3)).astype(dtype)
            for method, resize in (("bilinear", npp.resize_bilinear),
                                   ("bicubic", npp.resize_bicubic)):
                want = tf.image.resize(image, [size, size], method=method).numpy()
                got = resize(image, size)
                assert got.dtype == np.float32 and got.shape == (size, size, 3)
                np.testing.assert_allclose(got, want, atol=1e-3, err_msg=f"{method} {h}x{w}")


@pytest.mark.parametrize("augment", AUGMENTS)
def test_eval_batches_match_tf_on_lossless_images(cifar_pngs, augment):
    name = f"folder:{cifar_pngs}"
    for size in (24, 32, 48):
        (tf_ds, tf_info), (np_ds, np_info) = _both(name, "validation", 16, size, augment=augment,
                                                   validation_fraction=0.3)
        assert isinstance(np_ds, EvaluationPass) and tf_info == np_info
        (a, la), (b, lb) = _collect(tf_ds), _collect(np_ds)
        assert a.shape == b.shape == (np_info.num_examples, size, size, 3)
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_allclose(b, a, atol=1e-4, err_msg=f"{augment} at {size} px")


@pytest.mark.parametrize("augment", AUGMENTS)
def test_eval_batches_match_tf_on_jpegs(cifar_jpgs, augment):
    for size in (32, 48):
        (tf_ds, _), (np_ds, info) = _both(f"folder:{cifar_jpgs}", "validation", 32, size,
                                          augment=augment, validation_fraction=0.5)
        (a, la), (b, lb) = _collect(tf_ds), _collect(np_ds)
        np.testing.assert_array_equal(la, lb)
        diff = np.abs(a - b) * STD  # pixel levels
        assert diff.mean() <= 1.5, (augment, size, diff.mean())
        if augment == "mnasnet":
            assert diff.max() <= 32 and np.percentile(diff, 99.9) <= 8, (size, diff.max())
        else:
            assert diff.max() <= 6, (augment, size, diff.max())


def test_embedded_eval_matches_tf():
    for size in (8, 32):
        (tf_ds, tf_info), (np_ds, np_info) = _both("embedded", "validation", 64, size)
        assert tf_info == np_info
        (a, la), (b, lb) = _collect(tf_ds), _collect(np_ds)
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_allclose(b, a, atol=1e-5)


def test_crop_windows_follow_mnasnet_and_tf():
    """Windows stay in the image with area 0.08..1 and aspect 3/4..4/3 (up to the
    rounding to whole pixels), else the centre crop; and TF's sampler draws windows
    from the same distribution (mean area and fallback rate agree)."""
    for h, w in ((32, 32), (375, 500), (8, 8), (10, 100)):
        centre = npp.center_crop_window(h, w, 32)
        windows = np.array([npp.random_crop_window(h, w, 32, np.random.default_rng([3, i]))
                            for i in range(800)])
        y, x, ch, cw = windows.T
        assert (y >= 0).all() and (x >= 0).all() and (y + ch <= h).all() and (x + cw <= w).all()
        sampled = ~(windows == centre).all(axis=1)
        area = ch * cw / (h * w)
        assert ((area >= 0.08) & (area <= 1.0))[sampled].all()
        aspect, slack = cw / ch, 0.5 / ch + 1e-6  # width is round(height * aspect)
        assert ((aspect >= 0.75 - slack) & (aspect <= 4 / 3 + slack))[sampled].all()
        if h == w == 32:
            f = tf.function(lambda seed: tf_random_crop_window(tf.constant([32, 32, 3]), 32, seed))
            ref = np.array([f(tf.constant([5, i], tf.int64)).numpy() for i in range(800)])
            ref_area = ref[:, 2] * ref[:, 3] / (h * w)
            assert abs(ref_area.mean() - area.mean()) < 0.04
    tiny = npp.random_crop_window(1, 1, 32, np.random.default_rng(0))
    assert tiny == npp.center_crop_window(1, 1, 32) == (0, 0, 1, 1)


# ---------------------------------------------------------------- the training stream


def test_training_stream_is_reproducible_and_skips_exactly(cifar_jpgs):
    name = f"folder:{cifar_jpgs}"
    for augment in ("mnasnet", "cifar"):
        ds, info = build_dataset(name, "train", 16, 32, True, augment=augment, input="numpy")
        assert isinstance(ds, TrainingStream) and ds.num_batches is None
        again, _ = build_dataset(name, "train", 16, 32, True, augment=augment, input="numpy")
        later, _ = build_dataset(name, "train", 16, 32, True, augment=augment, input="numpy",
                                 skip_batches=19)
        other, _ = build_dataset(name, "train", 16, 32, True, augment=augment, input="numpy",
                                 seed=1)
        # Batch 20 is past the first epoch (270 images): positions, not epochs, count.
        for i in (20, 0, 3):  # any order: each batch is a function of its index
            x, y = ds[i]
            assert x.shape == (16, 32, 32, 3) and y.shape == (16, 10) and x.dtype == np.float32
            np.testing.assert_array_equal(x, again[i][0])
            np.testing.assert_array_equal(y, again[i][1])
        np.testing.assert_array_equal(later[1][0], ds[20][0])
        np.testing.assert_array_equal(later[0][1], ds[19][1])
        assert not np.array_equal(other[0][0], ds[0][0])
        assert not np.array_equal(ds[0][0], ds[1][0])


def test_per_epoch_reshuffle():
    ds, info = build_dataset("embedded", "train", 100, 8, True, input="numpy")
    n = info.num_examples
    first, second = ds.epoch_order(0), ds.epoch_order(1)
    assert sorted(first) == sorted(second) == list(range(n))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, ds.epoch_order(0))
    # The stream visits every example once per epoch, across batch boundaries.
    seen = [ds.element_at(p) for p in range(n, 2 * n)]
    assert sorted(seen) == list(range(n)) and seen == list(second)
    # With augment "none" the rows are the examples themselves: epoch 2's labels are
    # the split's labels in epoch 2's order.
    labels = ds.source.labels
    batch = 2 * n // 100 + 1
    _, y = ds[batch]
    positions = ds.positions(batch)
    np.testing.assert_array_equal(y.argmax(1), labels[[ds.element_at(p) for p in positions]])


def test_workers_give_the_same_batches_as_indexing(cifar_jpgs):
    """Through Keras (predict: the enqueuer's threads) the order is the index order."""
    import keras

    ds, info = build_dataset(f"folder:{cifar_jpgs}", "validation", 8, 32, False, input="numpy")
    assert ds.workers >= 2 and ds.max_queue_size >= ds.workers
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten()])
    out = model.predict(ds, verbose=0)
    want, _ = _collect(ds)
    np.testing.assert_array_equal(out, want.reshape(len(want), -1))


# ---------------------------------------------------------------- corrupt files


def test_corrupt_files_error_and_skip(cifar_jpgs, tmp_path, caplog):
    root = tmp_path / "cifar"
    for cls in CIFAR_CLASSES[:3]:
        for src in sorted((cifar_jpgs / "train" / cls).glob("*.jpg"))[:6]:
            dst = root / "train" / cls / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    (root / "train" / "bird" / "9999.jpg").write_bytes(b"this is not a jpeg" * 20)
    good = next((root / "train" / "automobile").glob("*.jpg"))
    good.with_name("9998.jpg").write_bytes(good.read_bytes()[:300])
    name = f"folder:{root}"
    with pytest.raises(DatasetError, match="9999.jpg") as err:
        build_dataset(name, "train", 4, 32, True, validation_fraction=0.0, input="numpy")
    assert "9998.jpg" in str(err.value) and "on_corrupt" in str(err.value)
    ds, info = build_dataset(name, "train", 4, 32, True, on_corrupt="skip",
                             validation_fraction=0.0, input="numpy")
    assert info.skipped == 2 and info.num_examples == 18
    for i in range(10):  # > two epochs
        assert ds[i][0].shape == (4, 32, 32, 3)
    assert list((tmp_path / "cache" / "pil_scan").glob("*.json"))  # cached, own directory

    # A file that breaks after the scan: "skip" replaces it in training and leaves it
    # out of an evaluation pass (with a warning); "error" names it.
    for bad in ("bird/9999.jpg", "automobile/9998.jpg"):
        (root / "train" / bad).unlink()
    kw = dict(validation_fraction=0.0, input="numpy")
    train, _ = build_dataset(name, "train", 4, 32, True, on_corrupt="skip", **kw)
    lenient, info = build_dataset(name, "train", 4, 32, False, on_corrupt="skip", **kw)
    strict, _ = build_dataset(name, "train", 4, 32, False, **kw)
    broken = sorted((root / "train" / "airplane").glob("*.jpg"))[0]
    broken.write_bytes(b"gone bad")
    with caplog.at_level("WARNING", logger="spnas.data"):
        for i in range(10):
            assert train[i][0].shape == (4, 32, 32, 3)
        assert sum(len(lenient[i][0]) for i in range(len(lenient))) == info.num_examples - 1
    assert broken.name in caplog.text
    with pytest.raises(DatasetError, match=broken.name):
        _collect(strict)


# ---------------------------------------------------------------- several processes


@pytest.mark.parametrize("count", [2, 4])
def test_process_shares_concatenate_to_the_global_batch(count):
    whole, _ = build_dataset("embedded", "train", 16, 16, True, input="numpy", skip_batches=5,
                             augment="flip")
    parts = [build_dataset("embedded", "train", 16, 16, True, input="numpy", skip_batches=5,
                           augment="flip", process_index=i, process_count=count)[0]
             for i in range(count)]
    for b in (0, 7):
        shares = [p[b] for p in parts]
        assert all(len(s[0]) == 16 // count for s in shares)
        np.testing.assert_array_equal(np.concatenate([s[0] for s in shares]), whole[b][0])
        np.testing.assert_array_equal(np.concatenate([s[1] for s in shares]), whole[b][1])
    # Evaluation, with a short last batch (179 = 11 x 16 + 3) split near-evenly.
    whole, info = build_dataset("embedded", "validation", 16, 8, False, input="numpy")
    parts = [build_dataset("embedded", "validation", 16, 8, False, input="numpy",
                           process_index=i, process_count=count)[0] for i in range(count)]
    assert all(len(p) == len(whole) for p in parts)
    for b in range(len(whole)):
        np.testing.assert_array_equal(np.concatenate([p[b][0] for p in parts]), whole[b][0])
    with pytest.raises(DatasetError, match="multiple of process_count"):
        build_dataset("embedded", "train", 10, 8, True, input="numpy", process_count=4)


@pytest.mark.parametrize("count", [1, 2])
def test_padded_evaluation_for_data_parallel_devices(count):
    """pad_multiple=2 (two local devices): every batch of every process splits evenly,
    the padding has weight 0, and the real rows are those of the unpadded pass."""
    whole, _ = build_dataset("embedded", "validation", 16, 8, False, input="numpy")
    parts = [build_dataset("embedded", "validation", 16, 8, False, input="numpy",
                           process_index=i, process_count=count, pad_multiple=2)[0]
             for i in range(count)]
    total = 0.0
    for b in range(len(whole)):
        shares = [p[b] for p in parts]
        assert len({len(x) for x, _, _ in shares}) == 1 and len(shares[0][0]) % 2 == 0
        real = np.concatenate([x[w > 0] for x, _, w in shares])
        np.testing.assert_array_equal(real, whole[b][0])
        for _, y, w in shares:
            assert set(np.unique(w)) <= {0.0, 1.0} and not y[w == 0].any()
        total += sum(float(w.sum()) for _, _, w in shares)
    assert total == 179  # 11 x 16 + 3: each image counted once
    last = [p[len(whole) - 1] for p in parts]
    assert sum(len(x) for x, _, _ in last) == 4  # 3 real rows, padded
    with pytest.raises(DatasetError, match="needs the numpy input"):
        build_dataset("embedded", "validation", 16, 8, False, input="tf", pad_multiple=2)


def test_tf_process_shares_concatenate_to_the_global_batch():
    kw = dict(augment="flip", skip_batches=2)
    whole = list(build_dataset("embedded", "train", 8, 8, True, input="tf", **kw)[0].take(2))
    parts = [list(build_dataset("embedded", "train", 8, 8, True, input="tf", process_index=i,
                                process_count=2, **kw)[0].take(2)) for i in range(2)]
    for b in range(2):
        got = np.concatenate([parts[i][b][0].numpy() for i in range(2)])
        np.testing.assert_array_equal(got, whole[b][0].numpy())
    a, _ = _collect(build_dataset("embedded", "validation", 16, 8, False, input="tf")[0])
    shares = [_collect(build_dataset("embedded", "validation", 16, 8, False, input="tf",
                                     process_index=i, process_count=2)[0])[0] for i in range(2)]
    # Batch by batch: process 0's rows of each batch come before process 1's.
    rows = [np.split(s, np.cumsum([8] * 11)) for s in shares]
    got = np.concatenate([np.concatenate([rows[0][b], rows[1][b]]) for b in range(12)])
    np.testing.assert_array_equal(got, a)


# ---------------------------------------------------------------- the dispatcher


def test_dispatcher_choice(monkeypatch, tmp_path):
    ds, _ = build_dataset("embedded", "validation", 32, 8, False)
    assert isinstance(ds, tf.data.Dataset)  # auto, TensorFlow importable
    assert dispatch.resolve_input("auto") == "tf"
    with pytest.raises(DatasetError, match="input must be one of"):
        build_dataset("embedded", "validation", 32, 8, False, input="torch")
    with pytest.raises(DatasetError, match="TensorFlow Datasets"):
        build_dataset("cifar10", "train", 8, 32, True, input="numpy", data_dir=str(tmp_path))
    with pytest.raises(DatasetError, match="input_context"):
        ctx = tf.distribute.InputContext(2, 0, 2)
        build_dataset("embedded", "train", 8, 8, True, input="numpy", input_context=ctx)

    monkeypatch.setattr(dispatch, "tensorflow_available", lambda: False)
    assert dispatch.resolve_input("auto") == "numpy"
    ds, info = build_dataset("embedded", "validation", 32, 8, False)
    assert isinstance(ds, EvaluationPass) and info.num_examples == 179
    with pytest.raises(DatasetError, match='input="tf" needs TensorFlow'):
        build_dataset("embedded", "validation", 32, 8, False, input="tf")
    with pytest.raises(DatasetError, match="folder:") as err:
        dataset_info("imagenet2012", "train")
    assert "embedded" in str(err.value) and "needs TensorFlow" in str(err.value)


NO_TF_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import keras
    from spnas.data import DatasetError, build_dataset, dataset_info

    root = sys.argv[1]
    assert keras.backend.backend() == "jax"
    assert dataset_info("folder:" + root, "train").num_examples == 270
    assert dataset_info("embedded", "validation").num_examples == 179
    train, info = build_dataset("folder:" + root, "train", 8, 32, True)
    x, y = train[3]
    assert type(train).__name__ == "TrainingStream" and x.shape == (8, 32, 32, 3)
    assert info.image_size == 32 and info.skipped == 0
    evalset, _ = build_dataset("embedded", "validation", 64, 16, False)
    assert type(evalset).__name__ == "EvaluationPass" and len(evalset) == 3
    for name, kw in (("embedded", {"input": "tf"}), ("cifar10", {})):
        try:
            build_dataset(name, "train", 8, 32, True, **kw)
        except DatasetError as err:
            print("refused:", err)
        else:
            raise AssertionError(name)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(10)])
    model.compile("sgd", keras.losses.CategoricalCrossentropy(from_logits=True))
    history = model.fit(train, steps_per_epoch=3, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert not any(m.split(".")[0] in ("tensorflow", "tensorflow_datasets") for m in sys.modules)
    print("ok")
""")


def test_without_tensorflow(cifar_jpgs, tmp_path):
    """With ``import tensorflow`` failing, on JAX: folder and digits PyDatasets,
    dataset_info, clear refusals of input="tf" and TFDS, and a Keras fit."""
    pytest.importorskip("jax")
    shadow = tmp_path / "no_tensorflow"
    for blocked in ("tensorflow", "tensorflow_datasets"):
        (shadow / blocked).mkdir(parents=True)
        (shadow / blocked / "__init__.py").write_text(
            f"raise ImportError('{blocked} is blocked for this test')\n")
    path = os.pathsep.join([str(shadow), str(REPO), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=path,
               SPNAS_CACHE_DIR=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-c", NO_TF_SCRIPT, str(cifar_jpgs)], env=env,
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr[-4000:]
    assert 'input="tf" needs TensorFlow' in r.stdout and "TensorFlow Datasets" in r.stdout
