"""The tf.data input pipeline (``build_dataset(..., input="tf")``).

Turns a source (embedded digits, image folder, TFDS, ImageNet) into the same
``tf.data`` pipeline for all of them:

* training: shuffle -> repeat forever -> per-element seeded crop and resize
  (MnasNet, ``preprocess.py``) in a parallel map -> batch -> per-batch random
  flips and normalisation;
* evaluation: one deterministic pass, centre crop, batch, normalise;

and finally ``prefetch``. Images are normalised with the ImageNet mean and
standard deviation times 255 used by MnasNet and the paper's release
(``spnas.space.IMAGENET_MEAN_RGB`` / ``IMAGENET_STDDEV_RGB``); labels are
one-hot float32. Auto-sharding is by DATA so each worker of a
MultiWorkerMirroredStrategy sees a disjoint share of every source, including
sources that are not file based (the embedded digits, path lists). With
``process_count > 1`` (several hosts of one JAX run) every process runs the same
global stream and keeps its contiguous rows of every global batch.
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf

from spnas.data.embedded import embedded_source
from spnas.data.folder import folder_source
from spnas.data.preprocess import crop_and_resize, finish_images
from spnas.data.source import (
    DatasetError,
    DatasetInfo,
    Request,
    Source,
    check_size,
    process_rows,
)
from spnas.data.tfds_source import tfds_source
from spnas.space import IMAGENET_MEAN_RGB, IMAGENET_STDDEV_RGB

log = logging.getLogger(__name__)


def _source(r: Request) -> Source:
    if r.kind == "embedded":
        return embedded_source(r.split, r.validation_fraction, r.seed)
    if r.kind == "folder":
        return folder_source(r.arg, r.split, r.validation_fraction, r.seed, r.on_corrupt)
    return tfds_source(
        r.arg, r.split, r.data_dir, r.manual_dir, r.validation_fraction, r.seed, r.training
    )


def build(
    request: Request, input_context: tf.distribute.InputContext | None = None
) -> tuple[tf.data.Dataset, DatasetInfo]:
    """The tf.data pipeline of a checked request (see ``spnas.data.build_dataset``)."""
    batch_size = request.batch_size
    if input_context is not None:
        if request.process_count > 1:
            raise DatasetError(
                "pass either input_context (tf.distribute) or process_index/process_count, not both"
            )
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    source = _source(request)
    info = source.info
    augment = request.augment or source.default_augment
    check_size(info, request.split, batch_size, request.drop_remainder)
    ds = _pipeline(source, request, batch_size, augment, input_context)
    log.info(
        "%s/%s: %d examples, %d classes, batch %d, %dx%d, augment=%s, training=%s (tf.data)",
        info.name,
        request.split,
        info.num_examples,
        info.num_classes,
        batch_size,
        request.image_size,
        request.image_size,
        augment,
        request.training,
    )
    return ds, info


def _keep_rows(ds: tf.data.Dataset, r: Request, num_examples: int) -> tf.data.Dataset:
    """This process's rows of every global batch of ``(element, position)`` pairs."""
    batch = tf.constant(r.batch_size, tf.int64)
    total = tf.constant(num_examples, tf.int64)
    index, count = r.process_index, r.process_count

    def keep(element, position):
        row = position % batch
        if r.training:  # an infinite stream: every global batch is full
            rows = batch
        else:  # the short last batch of a pass is split into near-equal shares
            rows = tf.minimum(batch, total - (position - row))
        lo, hi = process_rows(rows, index, count)
        return tf.logical_and(row >= lo, row < hi)

    return ds.filter(keep)


def _pipeline(
    source: Source,
    r: Request,
    batch_size: int,
    augment: str,
    input_context: tf.distribute.InputContext | None,
) -> tf.data.Dataset:
    """The tf.data transformations shared by every source (see the module docstring)."""
    info, training, seed = source.info, r.training, r.seed
    image_size = r.image_size
    shares = r.process_count > 1
    stream_batch = batch_size  # elements per batch of this pipeline's stream
    if shares:  # the stream is the global one; this process batches its rows of it
        batch_size = r.local_batch_size
    ds = source.elements
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if training:
        ds = ds.shuffle(source.shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
        # Stateless seeds from (seed, position in the stream): the same seed reproduces
        # the same crops and flips, and every epoch gets new ones. Even positions seed
        # the per-element crops, odd ones the per-batch flips.
        skip = r.skip_batches * stream_batch  # elements, before any decoding
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.counter())).skip(skip)
        if shares:
            ds = _keep_rows(ds, r, info.num_examples)
    elif shares:
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.counter()))
        if r.drop_remainder:
            ds = ds.take(info.num_examples // r.batch_size * r.batch_size)
        ds = _keep_rows(ds, r, info.num_examples).map(lambda element, position: element)
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
    if r.on_corrupt == "skip":
        # Corrupt folder files were already removed by the scan; this also covers
        # files that go bad later and corrupt records inside TFDS datasets.
        ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch_size, drop_remainder=r.drop_remainder)

    mean = tf.constant(IMAGENET_MEAN_RGB, tf.float32)
    std = tf.constant(IMAGENET_STDDEV_RGB, tf.float32)
    num_classes = info.num_classes
    rows = process_rows(r.batch_size, r.process_index, r.process_count)[0], r.batch_size

    def finish(batch, position=None):
        images, labels = batch
        flip_seed = None if position is None else tf.stack([base_seed, 2 * position + 1])
        images = finish_images(
            images,
            training=training,
            augment=augment,
            seed=flip_seed,
            rows=rows if shares else None,
        )
        return (images - mean) / std, tf.one_hot(labels, num_classes, dtype=tf.float32)

    if training:
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.counter(start=r.skip_batches)))
        ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda *batch: finish(batch), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
        if input_context is None and not shares
        else tf.data.experimental.AutoShardPolicy.OFF
    )
    # The input pipeline's own threads: with deterministic execution the training step
    # gets one inter-op thread (spnas/train/distribute.py), which tf.data would share.
    options.threading.private_threadpool_size = os.cpu_count() or 2
    return ds.with_options(options)
