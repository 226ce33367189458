"""Tests of spnas.data on real data: the embedded digits and CIFAR-10 JPEG folders."""

import logging
import sys
import tarfile
import time

import numpy as np
import pytest
import tensorflow as tf

from spnas.data import DatasetError, DatasetInfo, build_dataset, dataset_info
from spnas.data.splits import stratified_split
from tests.helpers import REPO

if str(REPO) not in sys.path:  # ``bench`` lives beside ``spnas``, not inside it
    sys.path.insert(0, str(REPO))
from bench.input_throughput import extract as _extract_subset  # noqa: E402

# reference facts: ImageNet mean (0.485, 0.456, 0.406)*255 and std (0.229, 0.224, 0.225)*255
IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STDDEV_RGB = (58.395, 57.12, 57.375)

CIFAR_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
PER_CLASS = 20


@pytest.fixture(autouse=True)
def _scan_cache(tmp_path, monkeypatch):
    """Keep the folder-scan cache out of the developer's home directory."""
    monkeypatch.setenv("SPNAS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def cifar_subset(shared_dir, tmp_path_factory):
    """20 real CIFAR-10 training JPEGs per class in root/train/<class>/."""
    root = tmp_path_factory.mktemp("cifar_subset")
    return _extract_subset(shared_dir / "data" / "cifar10_train_jpg.tar.gz", root, PER_CLASS)


@pytest.fixture
def cifar_copy(cifar_subset, tmp_path):
    """A private copy of the subset that a test may damage."""
    root = tmp_path / "cifar"
    for src in (cifar_subset / "train").rglob("*.jpg"):
        dst = root / src.relative_to(cifar_subset)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
    return root


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32) * (255.0 / 16.0), d.target


def _collect(ds):
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in ds), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


# ---------------------------------------------------------------- embedded digits


def test_embedded_shapes_and_one_hot():
    ds, info = build_dataset("embedded", "train", 32, 32, training=True)
    assert isinstance(info, DatasetInfo)
    assert (info.name, info.num_classes, info.image_size) == ("embedded", 10, 8)
    assert info.class_names == tuple(str(i) for i in range(10))
    images, labels = next(iter(ds))
    assert images.shape == (32, 32, 32, 3) and images.dtype == tf.float32
    assert labels.shape == (32, 10) and labels.dtype == tf.float32
    np.testing.assert_array_equal(labels.numpy().sum(axis=1), np.ones(32))
    assert set(np.unique(labels.numpy())) <= {0.0, 1.0}
    assert ds.element_spec[0].shape.as_list() == [32, 32, 32, 3]  # drop_remainder in training
    policy = ds.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA


def test_embedded_normalisation_matches_digits():
    """At the native 8x8 size, eval images are exactly (grey*255/16 - mean) / std."""
    ds, info = build_dataset("embedded", "validation", 64, 8, training=False)
    images, labels = _collect(ds)
    raw, target = _digits()
    _, val_idx = stratified_split(target, 0.1, 0)
    assert images.shape == (val_idx.size, 8, 8, 3) == (info.num_examples, 8, 8, 3)
    grey = raw[val_idx][..., None]
    expected = (grey - np.array(IMAGENET_MEAN_RGB)) / np.array(IMAGENET_STDDEV_RGB)
    np.testing.assert_allclose(images, expected, atol=1e-5)
    np.testing.assert_array_equal(labels.argmax(axis=1), target[val_idx])


def test_embedded_split_sizes_disjoint_and_deterministic():
    train = dataset_info("embedded", "train")
    val = dataset_info("embedded", "validation")
    assert train.num_examples + val.num_examples == 1797
    assert 170 <= val.num_examples <= 190  # ~10 % of each of the 10 classes
    _, target = _digits()
    tr_idx, va_idx = stratified_split(target, 0.1, 0)
    assert not set(tr_idx) & set(va_idx)
    assert np.all(np.bincount(target[va_idx], minlength=10) >= 17)  # stratified
    # Pipeline level: train + validation together are exactly the 1,797 digits.
    tr_x, _ = _collect(build_dataset("embedded", "train", 256, 8, False)[0])
    va_x, _ = _collect(build_dataset("embedded", "validation", 256, 8, False)[0])
    both = np.concatenate([tr_x, va_x])[..., 0].reshape(1797, -1)
    raw, _ = _digits()
    expected = (raw.reshape(1797, -1) - IMAGENET_MEAN_RGB[0]) / IMAGENET_STDDEV_RGB[0]
    np.testing.assert_allclose(np.sort(both, axis=0), np.sort(expected, axis=0), atol=1e-5)
    # Same seed, same split and stream; another seed, another split.
    again = build_dataset("embedded", "train", 16, 32, True, seed=0)[0]
    first = build_dataset("embedded", "train", 16, 32, True, seed=0)[0]
    for (a, la), (b, lb) in zip(first.take(2), again.take(2), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(la.numpy(), lb.numpy())
    other = stratified_split(target, 0.1, 1)[1]
    assert set(other) != set(va_idx)


def test_embedded_validation_is_one_pass_with_remainder():
    ds, info = build_dataset("embedded", "validation", 50, 16, training=False)
    sizes = [int(x.shape[0]) for x, _ in ds]
    assert sum(sizes) == info.num_examples and sizes[-1] == info.num_examples % 50


# ---------------------------------------------------------------- image folder


def test_folder_pipeline_on_cifar_jpegs(cifar_subset):
    name = f"folder:{cifar_subset}"
    ds, info = build_dataset(name, "train", 16, 32, training=True)
    assert info.class_names == CIFAR_CLASSES and info.num_classes == 10
    assert info.num_examples == 10 * (PER_CLASS - 2) and info.image_size == 32
    assert info.skipped == 0 and info.name == f"folder:{cifar_subset}"
    images, labels = next(iter(ds))
    assert images.shape == (16, 32, 32, 3) and labels.shape == (16, 10)
    assert np.isfinite(images.numpy()).all()

    val_ds, val_info = build_dataset(name, "validation", 8, 32, training=False, augment="none")
    assert val_info.num_examples == 10 * 2
    images, labels = _collect(val_ds)
    assert images.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(labels.argmax(1), minlength=10), np.full(10, 2))
    # augment="none" at the native size reproduces the decoded JPEG exactly.
    first = sorted((cifar_subset / "train" / "airplane").glob("*.jpg"))
    decoded = {p.name: tf.io.decode_jpeg(p.read_bytes()).numpy().astype(np.float32) for p in first}
    pixels = images[0] * np.array(IMAGENET_STDDEV_RGB) + np.array(IMAGENET_MEAN_RGB)
    assert any(np.allclose(pixels, d, atol=1e-3) for d in decoded.values())
    assert dataset_info(name, "validation").num_examples == 20


def test_folder_with_validation_dir(cifar_copy):
    val = cifar_copy / "val"
    for cls in CIFAR_CLASSES[:3]:  # a validation dir may hold a subset of the classes
        files = sorted((cifar_copy / "train" / cls).glob("*.jpg"))[:3]
        (val / cls).mkdir(parents=True)
        for f in files:
            f.rename(val / cls / f.name)
    info = dataset_info(f"folder:{cifar_copy}", "validation")
    assert info.num_examples == 9 and info.num_classes == 10
    train = dataset_info(f"folder:{cifar_copy}", "train")
    assert train.num_examples == 10 * PER_CLASS - 9
    _, labels = _collect(build_dataset(f"folder:{cifar_copy}", "validation", 4, 32, False)[0])
    np.testing.assert_array_equal(np.bincount(labels.argmax(1)), [3, 3, 3])


def test_folder_corrupt_file_error_and_skip(cifar_copy, caplog):
    bad = cifar_copy / "train" / "cat" / "9999.jpg"
    bad.write_bytes(b"this is not a jpeg" * 20)
    good = next((cifar_copy / "train" / "dog").glob("*.jpg"))
    truncated = good.with_name("9998.jpg")
    truncated.write_bytes(good.read_bytes()[:300])
    name = f"folder:{cifar_copy}"
    # fraction 0: every file is in the training split, so both bad files are in it.
    with pytest.raises(DatasetError, match="9999.jpg") as err:
        build_dataset(name, "train", 8, 32, True, validation_fraction=0.0)
    assert "9998.jpg" in str(err.value) and "on_corrupt" in str(err.value)

    with caplog.at_level(logging.WARNING, logger="spnas.data"):
        ds, info = build_dataset(
            name, "train", 8, 32, True, on_corrupt="skip", validation_fraction=0
        )
    assert info.skipped == 2 and info.num_examples == 10 * PER_CLASS
    assert "skipping 2 corrupt" in caplog.text
    for images, _ in ds.take(30):  # > one epoch: the bad files never reach the model
        assert images.shape == (8, 32, 32, 3)
    # The scan result is cached: a second build does not decode again.
    start = time.perf_counter()
    _, again = build_dataset(name, "train", 8, 32, True, on_corrupt="skip", validation_fraction=0)
    assert again.skipped == 2
    assert time.perf_counter() - start < 5


def test_folder_layout_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        build_dataset(f"folder:{tmp_path}/nope", "train", 8, 32, True)
    with pytest.raises(DatasetError, match="no train/ directory"):
        build_dataset(f"folder:{tmp_path}", "train", 8, 32, True)
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no .* images"):
        dataset_info(f"folder:{tmp_path}", "train")


# ---------------------------------------------------------------- names and arguments


@pytest.mark.parametrize("name", ["no_such_dataset_xyz", "foo:bar", "", "Not A Name"])
def test_unknown_dataset_name(name, tmp_path):
    with pytest.raises(DatasetError, match="Accepted names") as err:
        build_dataset(name, "train", 8, 32, True, data_dir=str(tmp_path))
    assert "folder:" in str(err.value) and "embedded" in str(err.value)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "test"}, "split must be one of"),
        ({"batch_size": 0}, "batch_size"),
        ({"image_size": -3}, "image_size"),
        ({"augment": "autoaugment"}, "augment must be one of"),
        ({"on_corrupt": "ignore"}, "on_corrupt"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"seed": -1}, "seed"),
        ({"batch_size": 5000, "training": False, "drop_remainder": True}, "fewer than"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {
        "name": "embedded",
        "split": "train",
        "batch_size": 8,
        "image_size": 32,
        "training": True,
    }
    args.update(kwargs)
    with pytest.raises(DatasetError, match=match):
        build_dataset(**args)


def test_mirrored_strategy_distribution():
    import keras

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    ds, _ = build_dataset("embedded", "train", 8, 32, True)
    images, labels = next(iter(strategy.experimental_distribute_dataset(ds)))
    assert images.shape == (8, 32, 32, 3) and labels.shape == (8, 10)

    def per_replica(ctx):
        return build_dataset("embedded", "train", 8, 32, True, input_context=ctx)[0]

    images, _ = next(iter(strategy.distribute_datasets_from_function(per_replica)))
    assert images.shape == (8, 32, 32, 3)  # one replica: per-replica batch = global batch

    with strategy.scope():
        model = keras.Sequential(
            [
                keras.Input((32, 32, 3)),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(10),
            ]
        )
        model.compile("sgd", keras.losses.CategoricalCrossentropy(from_logits=True))
    history = model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_input_context_shards_at_the_source():
    """Two input pipelines see disjoint halves of the validation digits."""
    halves, counts = [], []
    for pipeline_id in range(2):
        ctx = tf.distribute.InputContext(2, pipeline_id, num_replicas_in_sync=2)
        ds, info = build_dataset("embedded", "validation", 64, 8, False, input_context=ctx)
        assert ds.element_spec[0].shape.as_list() == [None, 8, 8, 3]
        images, _ = _collect(ds)
        counts.append(len(images))
        halves.append({img.tobytes() for img in images})
    assert sum(counts) == info.num_examples and abs(counts[0] - counts[1]) <= 1
    assert not halves[0] & halves[1]


# ---------------------------------------------------------------- throughput (slow)


@pytest.mark.slow
def test_folder_throughput_full_cifar(shared_dir, tmp_path):
    """All 50,000 CIFAR-10 JPEGs through the training pipeline; prints images/s."""
    with tarfile.open(shared_dir / "data" / "cifar10_train_jpg.tar.gz") as archive:
        archive.extractall(tmp_path, filter="data")
    name = f"folder:{tmp_path}"
    start = time.perf_counter()
    ds, info = build_dataset(name, "train", 128, 32, training=True)
    scan_s = time.perf_counter() - start
    assert info.num_examples == 45_000 and info.skipped == 0 and info.image_size == 32
    batches = 200
    for _ in ds.take(20):  # warm-up: fill the shuffle buffer and the autotuner
        pass
    start = time.perf_counter()
    for images, _ in ds.take(batches):
        assert images.shape == (128, 32, 32, 3)
    rate = batches * 128 / (time.perf_counter() - start)
    print(f"\nfolder pipeline: scan {scan_s:.1f} s, {rate:.0f} images/s (batch 128, 32x32)")
    assert rate > 100


@pytest.mark.parametrize("augment", ["cifar", "flip", "mnasnet"])
def test_evaluation_reads_images_as_the_config_augments_them(cifar_subset, augment):
    """A config's evaluation and export pipelines take its ``data.augment``: the whole
    image for cifar/flip (not the folder default's MnasNet centre crop, which keeps
    the central half at 32 px), the centre crop for mnasnet."""
    from spnas.configs_path import load_config
    from spnas.data import build_dataset
    from spnas.train.recipe import build_datasets

    config = load_config("cifar10_train.py")
    config.data.dataset = f"folder:{cifar_subset}"
    config.data.augment = augment
    config.schedule.batch_size = 8
    data = build_datasets(config, 32)
    got = next(iter(data.eval))[0].numpy()

    def reference(aug):
        ds, _ = build_dataset(f"folder:{cifar_subset}", "validation", 8, 32, training=False,
                              augment=aug, seed=int(config.seed))
        return next(iter(ds))[0].numpy()

    whole, centre = reference("none"), reference("mnasnet")
    assert not np.allclose(whole, centre, atol=1e-3)
    np.testing.assert_allclose(got, centre if augment == "mnasnet" else whole, atol=1e-5)
