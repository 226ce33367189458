"""``build_dataset``: one entry point for all input pipelines of spnas.

Dispatches a dataset name to a source (embedded digits, image folder, TFDS,
ImageNet), then builds the same ``tf.data`` pipeline for all of them:

* training: shuffle -> repeat forever -> per-element seeded crop and resize
  (MnasNet, ``preprocess.py``) in a parallel map -> batch -> per-batch random
  flips and normalisation;
* evaluation: one deterministic pass, centre crop, batch, normalise;

and finally ``prefetch``. Images are normalised with the ImageNet mean and
standard deviation times 255 used by MnasNet and the paper's release
(``spnas.space.IMAGENET_MEAN_RGB`` / ``IMAGENET_STDDEV_RGB``); labels are
one-hot float32. Auto-sharding is by DATA so each worker of a
MultiWorkerMirroredStrategy sees a disjoint share of every source, including
sources that are not file based (the embedded digits, path lists).
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf

from spnas.data.embedded import embedded_info, embedded_source
from spnas.data.folder import PREFIX as FOLDER_PREFIX
from spnas.data.folder import folder_info, folder_source
from spnas.data.preprocess import crop_and_resize, finish_images
from spnas.data.source import (
    AUGMENTS,
    ON_CORRUPT,
    SPLITS,
    DatasetError,
    DatasetInfo,
    Source,
    check_choice,
    check_fraction,
    unknown_name_error,
)
from spnas.data.tfds_source import NAME_RE as TFDS_NAME_RE
from spnas.data.tfds_source import tfds_info, tfds_source
from spnas.space import IMAGENET_MEAN_RGB, IMAGENET_STDDEV_RGB

log = logging.getLogger(__name__)

TFDS_PREFIX = "tfds:"


def _parse_name(name: str) -> tuple[str, str]:
    """Returns (kind, argument): ("embedded", ""), ("folder", root) or ("tfds", name)."""
    if not isinstance(name, str) or not name.strip():
        raise unknown_name_error(name)
    name = name.strip()
    if name == "embedded":
        return "embedded", ""
    if name.startswith(FOLDER_PREFIX):
        return "folder", name[len(FOLDER_PREFIX) :]
    if name.startswith(TFDS_PREFIX):
        return "tfds", name[len(TFDS_PREFIX) :]
    if ":" in name and not TFDS_NAME_RE.match(name):
        raise unknown_name_error(name)
    return "tfds", name


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DatasetError(f"{what} must be a positive integer; got {value!r}")
    return value


def dataset_info(
    name: str,
    split: str,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> DatasetInfo:
    """Cheap metadata of a dataset split, without building a pipeline.

    Image folders are only listed (no decoding): ``skipped`` is 0 and
    ``image_size`` None; ``build_dataset``'s info has both after its corruption
    scan. An unprepared ``imagenet2012`` with valid tar files reports the standard
    ILSVRC2012 sizes without preparing anything.

    Args:
        name: see ``build_dataset``.
        split: ``"train"`` or ``"validation"``.
        data_dir: TFDS data directory.
        manual_dir: ImageNet manual directory (the two ILSVRC2012 tar files).
        validation_fraction: held-out share for sources without a validation split.
        seed: seed of that held-out split.

    Returns:
        The split's DatasetInfo.

    Raises:
        DatasetError: unknown name, missing or unprepared data, bad arguments.
    """
    kind, arg = _parse_name(name)
    check_choice(split, SPLITS, "split")
    fraction = check_fraction(validation_fraction)
    if kind == "embedded":
        return embedded_info(split, fraction, seed)
    if kind == "folder":
        return folder_info(arg, split, fraction, seed)
    return tfds_info(arg, split, data_dir, manual_dir, fraction, seed)


def _source(kind, arg, split, training, data_dir, manual_dir, fraction, seed, on_corrupt) -> Source:
    if kind == "embedded":
        return embedded_source(split, fraction, seed)
    if kind == "folder":
        return folder_source(arg, split, fraction, seed, on_corrupt)
    return tfds_source(arg, split, data_dir, manual_dir, fraction, seed, training)


def build_dataset(
    name: str,
    split: str,
    batch_size: int,
    image_size: int,
    training: bool,
    *,
    augment: str | None = None,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    on_corrupt: str = "error",
    validation_fraction: float = 0.1,
    seed: int = 0,
    drop_remainder: bool | None = None,
    input_context: tf.distribute.InputContext | None = None,
    skip_batches: int = 0,
) -> tuple[tf.data.Dataset, DatasetInfo]:
    """Builds a batched input pipeline of (images, one-hot labels).

    Args:
        name: ``"embedded"``, ``"imagenet2012"``, ``"folder:/path/to/root"``, or a
            prepared TFDS name (``"cifar10"`` or ``"tfds:cifar10"``).
        split: ``"train"`` or ``"validation"``.
        batch_size: global batch size.
        image_size: output height and width.
        training: shuffle, repeat forever and augment; else one deterministic pass.
        augment: ``"mnasnet"``, ``"cifar"`` (4-pixel pad, random crop, flip),
            ``"flip"`` or ``"none"``; None uses the dataset's default (``"none"`` for the digits, which must not be flipped;
            ``"mnasnet"`` otherwise).
        data_dir: TFDS data directory (default: TFDS's own default).
        manual_dir: directory holding ILSVRC2012_img_train.tar and
            ILSVRC2012_img_val.tar, used to prepare ``imagenet2012`` once.
        on_corrupt: ``"error"`` raises a DatasetError naming corrupt files;
            ``"skip"`` drops them (counted in ``info.skipped``).
        validation_fraction: held-out share (stratified per class where labels are
            known) for sources without a validation split.
        seed: seed of the held-out split, shuffling and augmentation.
        drop_remainder: drop the last partial batch; default ``training``.
        skip_batches: training only: start the stream at this batch, as if that
            many batches had been drawn (same shuffle, crops and flips). A resumed
            run passes its global step, so it sees the batches an uninterrupted
            run sees; the skipped elements are read but not decoded.
        input_context: given by ``strategy.distribute_datasets_from_function``:
            the elements are sharded at the source (each input pipeline decodes
            only its share), batches are per replica, and auto-sharding is off.
            Without it the dataset auto-shards by DATA, where every worker runs the
            whole pipeline and keeps its share of the batches (fine for one worker
            and for small sources; wasteful for ImageNet on many workers).

    Returns:
        ``(dataset, info)``; elements are float32 images ``[B, S, S, 3]`` and
        float32 one-hot labels ``[B, num_classes]``.

    Raises:
        DatasetError: unknown name, missing or unprepared data, corrupt files with
            ``on_corrupt="error"``, or bad arguments.
    """
    kind, arg = _parse_name(name)
    fraction = _check_arguments(
        split, batch_size, image_size, augment, on_corrupt, validation_fraction, seed
    )
    training = bool(training)
    drop_remainder = training if drop_remainder is None else bool(drop_remainder)
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)

    source = _source(kind, arg, split, training, data_dir, manual_dir, fraction, seed, on_corrupt)
    info = source.info
    augment = augment or source.default_augment
    if info.num_examples == 0:
        raise DatasetError(f"{info.name} split {split!r} has no examples")
    if drop_remainder and info.num_examples < batch_size:
        raise DatasetError(
            f"{info.name} split {split!r} has {info.num_examples} examples, fewer than "
            f"batch_size={batch_size} with drop_remainder=True: it would yield no batch"
        )
    if isinstance(skip_batches, bool) or not isinstance(skip_batches, int) or skip_batches < 0:
        raise DatasetError(f"skip_batches must be an integer >= 0; got {skip_batches!r}")
    ds = _pipeline(source, batch_size, image_size, training, augment, on_corrupt, seed,
                   drop_remainder, input_context, skip_batches if training else 0)
    log.info(
        "%s/%s: %d examples, %d classes, batch %d, %dx%d, augment=%s, training=%s",
        info.name,
        split,
        info.num_examples,
        info.num_classes,
        batch_size,
        image_size,
        image_size,
        augment,
        training,
    )
    return ds, info


def _check_arguments(split, batch_size, image_size, augment, on_corrupt, validation_fraction,
                     seed) -> float:
    """Checks build_dataset's arguments; returns the validation fraction."""
    check_choice(split, SPLITS, "split")
    _positive_int(batch_size, "batch_size")
    _positive_int(image_size, "image_size")
    if augment:  # None (or an empty config string) means the dataset's default
        check_choice(augment, AUGMENTS, "augment")
    check_choice(on_corrupt, ON_CORRUPT, "on_corrupt")
    fraction = check_fraction(validation_fraction)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise DatasetError(f"seed must be an integer in [0, 2**31); got {seed!r}")
    return fraction


def _pipeline(
    source: Source,
    batch_size: int,
    image_size: int,
    training: bool,
    augment: str,
    on_corrupt: str,
    seed: int,
    drop_remainder: bool,
    input_context: tf.distribute.InputContext | None,
    skip_batches: int = 0,
) -> tf.data.Dataset:
    """The tf.data transformations shared by every source (see the module docstring)."""
    info = source.info
    ds = source.elements
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if training:
        ds = ds.shuffle(source.shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
        # Stateless seeds from (seed, position in the stream): the same seed reproduces
        # the same crops and flips, and every epoch gets new ones. Even positions seed
        # the per-element crops, odd ones the per-batch flips.
        skip = skip_batches * batch_size  # elements, before any decoding
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.counter())).skip(skip)
    # Input pipelines of a distributed run must not draw the same crops and flips.
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    base_seed = tf.constant(seed ^ (pipeline_id << 32), tf.int64)

    def prepare(element, position=None):
        image, label = source.load(*element)
        crop_seed = None if position is None else tf.stack([base_seed, 2 * position])
        image = crop_and_resize(
            image,
            image_size=image_size,
            training=training,
            augment=augment,
            encoded=source.encoded,
            seed=crop_seed,
        )
        return image, label

    if training:
        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda *element: prepare(element), num_parallel_calls=tf.data.AUTOTUNE)
    if on_corrupt == "skip":
        # Corrupt folder files were already removed by the scan; this also covers
        # files that go bad later and corrupt records inside TFDS datasets.
        ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    mean = tf.constant(IMAGENET_MEAN_RGB, tf.float32)
    std = tf.constant(IMAGENET_STDDEV_RGB, tf.float32)
    num_classes = info.num_classes

    def finish(batch, position=None):
        images, labels = batch
        flip_seed = None if position is None else tf.stack([base_seed, 2 * position + 1])
        images = finish_images(images, training=training, augment=augment, seed=flip_seed)
        return (images - mean) / std, tf.one_hot(labels, num_classes, dtype=tf.float32)

    if training:
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.counter(start=skip_batches)))
        ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda *batch: finish(batch), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
        if input_context is None
        else tf.data.experimental.AutoShardPolicy.OFF
    )
    # The input pipeline's own threads: with deterministic execution the training step
    # gets one inter-op thread (spnas/train/distribute.py), which tf.data would share.
    options.threading.private_threadpool_size = os.cpu_count() or 2
    return ds.with_options(options)
