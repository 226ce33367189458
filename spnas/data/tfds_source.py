"""TensorFlow Datasets sources: any prepared TFDS image-classification dataset and
ImageNet (ILSVRC2012, the paper's dataset) prepared from its manual tar files.

spnas never downloads: a TFDS dataset must already be prepared in ``data_dir``
(``tfds build <name> --data_dir <dir>`` on a machine with network access).
``imagenet2012`` has no public download at all; if it is not prepared yet it is
prepared once from ``ILSVRC2012_img_train.tar`` and ``ILSVRC2012_img_val.tar`` in
``manual_dir`` (TFDS's ``DownloadConfig(manual_dir=...)``), which reads only those
files. Images stay encoded (``SkipDecoding``) so ``preprocess.py`` can decode just
the MnasNet crop window of each JPEG.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from spnas.data.source import (
    TFDS_NAME_RE,
    DatasetError,
    DatasetInfo,
    Source,
    unknown_name_error,
)
from spnas.data.splits import seeded_split_mask
from spnas.fileio import check_input_dir

log = logging.getLogger(__name__)

IMAGENET = "imagenet2012"
IMAGENET_TARS = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
IMAGENET_SPLIT_SIZES = {"train": 1_281_167, "validation": 50_000}  # ILSVRC2012
NAME_RE = TFDS_NAME_RE  # source.py: which names are TFDS names
_SHUFFLE_BYTES = 256 * 2**20  # memory budget of the training shuffle buffer
_ASSUMED_JPEG_BYTES = 110_000  # average ImageNet JPEG; used when the image size is unknown


def _builder(name: str, data_dir: str | None):
    if not NAME_RE.match(name):
        raise unknown_name_error(name)
    if data_dir and os.path.lexists(data_dir):  # a new one is made when ImageNet is prepared
        try:
            check_input_dir(os.path.expanduser(data_dir), "TFDS data_dir", DatasetError)
        except OSError as err:
            raise DatasetError(str(err)) from None
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise unknown_name_error(name, "not a TFDS dataset") from None
    except Exception as err:  # TFDS raises many types for bad configs/versions
        raise DatasetError(f"cannot open TFDS dataset {name!r}: {err}") from err


def _data_root(builder) -> str:
    return os.fspath(builder.data_dir_root)


def _check_manual_dir(manual_dir: str | None, data_root: str) -> str:
    """Validates the ImageNet manual dir before TFDS sees it; returns its absolute path."""
    wanted = " and ".join(IMAGENET_TARS)
    how = (
        f"Put {wanted} (from https://image-net.org/download-images) into one directory "
        f"and pass manual_dir=<that directory>; spnas then prepares TFDS {IMAGENET} "
        f"in {data_root} once (hours), reading only those files."
    )
    if not manual_dir:
        raise DatasetError(
            f"{IMAGENET} is not prepared in {data_root} and no manual_dir was given. {how}"
        )
    manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
    if not os.path.isdir(manual_dir):
        raise DatasetError(f"{IMAGENET} manual_dir {manual_dir} does not exist. {how}")
    missing = [t for t in IMAGENET_TARS if not os.path.isfile(os.path.join(manual_dir, t))]
    empty = [
        t
        for t in IMAGENET_TARS
        if t not in missing and os.path.getsize(os.path.join(manual_dir, t)) == 0
    ]
    if missing or empty:
        problems = [f"missing {t}" for t in missing] + [f"empty {t}" for t in empty]
        raise DatasetError(f"{IMAGENET} manual_dir {manual_dir}: {', '.join(problems)}. {how}")
    return manual_dir


def _check_unprepared(builder, name: str, manual_dir: str | None) -> str:
    """For an unprepared builder: raises unless it is ImageNet with valid manual files.

    Returns:
        The absolute ImageNet manual directory.
    """
    root = _data_root(builder)
    if builder.name != IMAGENET:
        raise DatasetError(
            f"TFDS dataset {name!r} is not prepared in {root}. spnas never downloads data: "
            f"prepare it first where there is network access, e.g. "
            f"`tfds build {name} --data_dir {root}`, then pass data_dir={root!r}."
        )
    return _check_manual_dir(manual_dir, root)


def _prepared_builder(name: str, data_dir: str | None, manual_dir: str | None):
    """A prepared builder; prepares ImageNet from its manual tar files if needed."""
    builder = _builder(name, data_dir)
    if builder.is_prepared():
        return builder
    manual_dir = _check_unprepared(builder, name, manual_dir)
    root = _data_root(builder)
    log.warning("preparing %s in %s from %s (one-off; takes hours)", IMAGENET, root, manual_dir)
    # TFDS's ImageNet builder reads only manual_dir (and label files it ships);
    # GCS is off so nothing is fetched.
    config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    try:
        builder.download_and_prepare(download_config=config)
    except Exception as err:
        raise DatasetError(f"preparing {IMAGENET} from {manual_dir} failed: {err}") from err
    return builder


def _keys(builder, name: str) -> tuple[str, str]:
    keys = builder.info.supervised_keys
    features = builder.info.features
    if (
        not keys
        or len(keys) != 2
        or not all(isinstance(k, str) for k in keys)
        or not isinstance(features[keys[0]], tfds.features.Image)
        or not isinstance(features[keys[1]], tfds.features.ClassLabel)
    ):
        raise DatasetError(
            f"TFDS dataset {name!r} is not an image classification dataset "
            f"(supervised keys {keys!r}; need an Image and a ClassLabel feature)"
        )
    return keys[0], keys[1]


def _resolve_split(builder, split: str) -> tuple[str, bool | None]:
    """Maps our split to (TFDS split, held-out selection or None for the whole split)."""
    available = set(builder.info.splits.keys())
    if "train" not in available:
        raise DatasetError(
            f"TFDS dataset {builder.name!r} has no train split ({sorted(available)})"
        )
    held_out = None if {"validation", "test"} & available else True
    if split == "train":
        return "train", (None if held_out is None else False)
    if "validation" in available:
        return "validation", None
    if "test" in available:
        log.info("%s has no validation split; using its test split", builder.name)
        return "test", None
    return "train", True


def _info(builder, name: str, split: str, fraction: float, seed: int) -> DatasetInfo:
    image_key, label_key = _keys(builder, name)
    tfds_split, held_out = _resolve_split(builder, split)
    total = builder.info.splits[tfds_split].num_examples
    if held_out is None:
        count = total
    else:
        count = int(np.count_nonzero(seeded_split_mask(total, fraction, seed) == held_out))
    shape = builder.info.features[image_key].shape
    label = builder.info.features[label_key]
    return DatasetInfo(
        name=name,
        split=split,
        num_classes=int(label.num_classes),
        num_examples=int(count),
        image_size=int(shape[0]) if shape[0] is not None and shape[0] == shape[1] else None,
        class_names=tuple(label.names) if label.names else None,
    )


def _imagenet_static_info(builder, split: str) -> DatasetInfo:
    label = builder.info.features["label"]
    return DatasetInfo(
        IMAGENET,
        split,
        int(label.num_classes),
        IMAGENET_SPLIT_SIZES[split],
        None,
        tuple(label.names),
    )


def tfds_info(
    name: str, split: str, data_dir: str | None, manual_dir: str | None, fraction: float, seed: int
) -> DatasetInfo:
    """Metadata of a TFDS split; never prepares (unprepared ImageNet with valid tars
    reports the standard ILSVRC2012 split sizes)."""
    builder = _builder(name, data_dir)
    if not builder.is_prepared():
        _check_unprepared(builder, name, manual_dir)
        return _imagenet_static_info(builder, split)
    return _info(builder, name, split, fraction, seed)


def tfds_source(
    name: str,
    split: str,
    data_dir: str | None,
    manual_dir: str | None,
    fraction: float,
    seed: int,
    training: bool,
) -> Source:
    """A TFDS split as a Source of (encoded image bytes, label)."""
    builder = _prepared_builder(name, data_dir, manual_dir)
    info = _info(builder, name, split, fraction, seed)
    image_key, label_key = _keys(builder, name)
    tfds_split, held_out = _resolve_split(builder, split)
    # A held-out selection is by position in the split, so the file order must be fixed.
    shuffle_files = training and held_out is None
    ds = builder.as_dataset(
        split=tfds_split,
        shuffle_files=shuffle_files,
        decoders={image_key: tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(shuffle_seed=seed),
    )
    ds = ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)))
    if held_out is not None:
        total = builder.info.splits[tfds_split].num_examples
        mask = tf.constant(seeded_split_mask(total, fraction, seed))
        ds = ds.enumerate().filter(lambda i, ex: tf.equal(tf.gather(mask, i), held_out))
        ds = ds.map(lambda i, ex: ex)

    shape = builder.info.features[image_key].shape
    known = shape[0] is not None and shape[1] is not None
    per_example = int(shape[0]) * int(shape[1]) * 3 if known else _ASSUMED_JPEG_BYTES
    buffer = int(min(info.num_examples, max(1024, min(50_000, _SHUFFLE_BYTES // per_example))))
    return Source(
        info=info,
        elements=ds,
        load=lambda image, label: (image, label),
        encoded=True,
        default_augment="mnasnet",
        shuffle_buffer=max(buffer, 1),
        already_shuffled=shuffle_files,
    )
