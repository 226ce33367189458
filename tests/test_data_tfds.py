"""Tests of the TFDS and ImageNet sources of spnas.data, all offline.

Downloads are made impossible here (sockets and TFDS download entry points raise),
so a test that tried one fails at once instead of hanging.
"""

import io
import socket
import tarfile
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

from spnas.data import DatasetError, build_dataset, dataset_info
from tests.test_data import CIFAR_CLASSES, _collect, _extract_subset

SUBSET = {"root": None}


class SpnasCifarSubset(tfds.core.GeneratorBasedBuilder):
    """A tiny TFDS dataset of real CIFAR-10 JPEGs with only a train split."""

    VERSION = tfds.core.Version("1.0.0")
    # TFDS looks for metadata files beside the builder's package; a test module has none.
    pkg_dir_path = epath.Path(__file__).parent

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(32, 32, 3), encoding_format="jpeg"),
                    "label": tfds.features.ClassLabel(names=CIFAR_CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(SUBSET["root"])}

    def _generate_examples(self, root):
        for path in sorted(root.glob("train/*/*.jpg")):
            yield f"{path.parent.name}/{path.name}", {"image": path, "label": path.parent.name}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("spnas.data tried to download or open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(tfds.download.DownloadManager, "download", refuse)
    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", refuse)


def _no_prepare(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("spnas.data called download_and_prepare")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", refuse)


def test_unprepared_tfds_dataset_is_a_clear_error(tmp_path, monkeypatch):
    _no_prepare(monkeypatch)
    start = time.perf_counter()
    for name in ("cifar10", "tfds:cifar10"):
        with pytest.raises(DatasetError, match="not prepared") as err:
            build_dataset(name, "train", 8, 32, True, data_dir=str(tmp_path))
        assert "tfds build cifar10" in str(err.value) and str(tmp_path) in str(err.value)
        with pytest.raises(DatasetError, match="not prepared"):
            dataset_info(name, "validation", data_dir=str(tmp_path))
    assert time.perf_counter() - start < 30


@pytest.mark.parametrize("manual", [None, "missing", "empty", "one_tar", "zero_bytes"])
def test_imagenet_without_manual_files_is_a_clear_error(manual, tmp_path, monkeypatch):
    _no_prepare(monkeypatch)
    manual_dir = None
    if manual is not None:
        manual_dir = tmp_path / "manual"
        if manual != "missing":
            manual_dir.mkdir()
        if manual == "one_tar":
            (manual_dir / "ILSVRC2012_img_val.tar").write_bytes(b"x" * 10)
        if manual == "zero_bytes":
            (manual_dir / "ILSVRC2012_img_train.tar").write_bytes(b"")
            (manual_dir / "ILSVRC2012_img_val.tar").write_bytes(b"")
    data_dir = str(tmp_path / "tfds")
    start = time.perf_counter()
    with pytest.raises(DatasetError, match="ILSVRC2012_img_train.tar") as err:
        build_dataset(
            "imagenet2012",
            "train",
            8,
            224,
            True,
            data_dir=data_dir,
            manual_dir=manual_dir and str(manual_dir),
        )
    assert time.perf_counter() - start < 30
    assert "ILSVRC2012_img_val.tar" in str(err.value) and "manual_dir" in str(err.value)
    if manual in ("missing", "one_tar", "zero_bytes"):
        assert str(manual_dir) in str(err.value)


def _tar_bytes(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def cifar_small(shared_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar_small")
    return _extract_subset(shared_dir / "data" / "cifar10_train_jpg.tar.gz", root, 20)


def test_prepared_tfds_dataset_with_seeded_split(cifar_small, tmp_path):
    SUBSET["root"] = cifar_small
    builder = SpnasCifarSubset(data_dir=str(tmp_path))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    name = "spnas_cifar_subset"
    train = dataset_info(name, "train", data_dir=str(tmp_path))
    val = dataset_info(f"tfds:{name}", "validation", data_dir=str(tmp_path))
    assert (train.num_examples, val.num_examples) == (180, 20)  # no validation/test split
    assert train.class_names == CIFAR_CLASSES and train.image_size == 32

    ds, info = build_dataset(name, "train", 16, 32, True, data_dir=str(tmp_path))
    assert info == train
    policy = ds.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA
    images, labels = next(iter(ds))
    assert images.shape == (16, 32, 32, 3) and labels.shape == (16, 10)

    def pixels(split):
        ds = build_dataset(name, split, 32, 32, False, data_dir=str(tmp_path), augment="none")[0]
        images, _ = _collect(ds)
        return {img.tobytes() for img in np.round(images, 3)}

    tr, va = pixels("train"), pixels("validation")
    assert len(tr) == 180 and len(va) == 20 and not tr & va


def test_imagenet_prepared_from_manual_tars(cifar_small, tmp_path):
    """Fake ILSVRC2012 tars made of real JPEGs go through TFDS's own preparation."""
    synsets = ["n01440764", "n01443537", "n01484850"]
    inner = []
    for synset, cls in zip(synsets, CIFAR_CLASSES, strict=False):
        files = sorted((cifar_small / "train" / cls).glob("*.jpg"))[:6]
        members = [(f"{synset}_{i}.JPEG", f.read_bytes()) for i, f in enumerate(files)]
        inner.append((f"{synset}.tar", _tar_bytes(members)))
    val_files = sorted((cifar_small / "train" / "ship").glob("*.jpg"))[:5]
    val = [(f"ILSVRC2012_val_{i + 1:08d}.JPEG", f.read_bytes()) for i, f in enumerate(val_files)]
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "ILSVRC2012_img_train.tar").write_bytes(_tar_bytes(inner))
    (manual / "ILSVRC2012_img_val.tar").write_bytes(_tar_bytes(val))
    data_dir = str(tmp_path / "tfds")

    info = dataset_info("imagenet2012", "train", data_dir=data_dir, manual_dir=str(manual))
    assert (info.num_classes, info.num_examples) == (1000, 1_281_167)  # not prepared yet

    ds, info = build_dataset(
        "imagenet2012", "train", 4, 64, True, data_dir=data_dir, manual_dir=str(manual)
    )
    assert (info.num_classes, info.num_examples) == (1000, 18)
    images, labels = next(iter(ds))
    assert images.shape == (4, 64, 64, 3) and labels.shape == (4, 1000)
    assert set(labels.numpy().argmax(1)) <= {0, 1, 2}  # the first three synsets
    val_ds, val_info = build_dataset("imagenet2012", "validation", 2, 64, False, data_dir=data_dir)
    assert val_info.num_examples == 5
    assert _collect(val_ds)[0].shape == (5, 64, 64, 3)
    assert isinstance(val_ds, tf.data.Dataset)
