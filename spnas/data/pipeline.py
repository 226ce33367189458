"""``build_dataset`` and ``dataset_info``: one entry point for all input pipelines of spnas.

A dataset name (``"embedded"``, ``"folder:/root"``, a TFDS name, ``"imagenet2012"``)
and the checked arguments go to one of two implementations of the same pipeline:

* ``input="tf"``: tf.data (``tf_pipeline.py``), every source, ``tf.distribute``
  input contexts;
* ``input="numpy"``: numpy and Pillow fed to Keras as a ``keras.utils.PyDataset``
  (``numpy_pipeline.py``), for machines without TensorFlow (Keras on JAX): the
  embedded digits and image folders, not TFDS;
* ``input="auto"`` (default): tf.data when TensorFlow can be imported, else numpy.

Both shuffle, crop, flip, normalise and batch alike (``preprocess.py`` /
``numpy_preprocess.py``), start a training stream at any batch (``skip_batches``)
and split every global batch between processes (``process_index`` /
``process_count``). This module imports no TensorFlow: the implementation is
imported when a pipeline is built, and TFDS only for a TFDS name.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any

from spnas.data.digits import embedded_info
from spnas.data.folder_layout import PREFIX as FOLDER_PREFIX
from spnas.data.folder_layout import folder_info
from spnas.data.source import (
    AUGMENTS,
    INPUTS,
    ON_CORRUPT,
    SPLITS,
    TFDS_NAME_RE,
    DatasetError,
    DatasetInfo,
    Request,
    check_choice,
    check_fraction,
    unknown_name_error,
)

TFDS_PREFIX = "tfds:"
# Imported by name when needed (importlib), so that importing spnas.data needs no
# TensorFlow: the tf.data implementation, TFDS metadata, the numpy implementation
# (it imports Keras, which loads TensorFlow under the TensorFlow backend).
_TENSORFLOW = "tensorflow"
_TF_PIPELINE = "spnas.data.tf_pipeline"
_TFDS_SOURCE = "spnas.data.tfds_source"
_NUMPY_PIPELINE = "spnas.data.numpy_pipeline"
# The folder sources with their corruption scans (tf.data's scan needs TensorFlow,
# the Pillow scan does not), by the input they serve.
_FOLDER_SOURCES = {"tf": "spnas.data.folder", "numpy": "spnas.data.numpy_source"}


@functools.lru_cache(maxsize=1)
def tensorflow_available() -> bool:
    """Whether ``import tensorflow`` works here (tried once per process)."""
    try:
        importlib.import_module(_TENSORFLOW)
    except ImportError:
        return False
    return True


def resolve_input(input: str) -> str:
    """``"tf"`` or ``"numpy"`` for ``input`` in ``"auto"``, ``"tf"``, ``"numpy"``."""
    check_choice(input, INPUTS, "input")
    if input == "auto":
        return "tf" if tensorflow_available() else "numpy"
    if input == "tf" and not tensorflow_available():
        raise DatasetError(
            'input="tf" needs TensorFlow, which cannot be imported here; use '
            'input="numpy" (or "auto") for the numpy/Pillow pipeline'
        )
    return input


def tfds_needs_tensorflow(name: str) -> DatasetError:
    """The error for a TFDS name under the numpy input."""
    return DatasetError(
        f"dataset {name!r} is read through TensorFlow Datasets, which needs TensorFlow; "
        'the numpy input (input="numpy", or "auto" without TensorFlow) reads '
        f'"{FOLDER_PREFIX}/path/to/root" image folders (root/train/<class>/*.jpg|jpeg|png) '
        'and "embedded" (the scikit-learn digits). Export the split to an image folder, '
        'or install TensorFlow and use input="tf".'
    )


def dataset_kind(name: str) -> str:
    """``"embedded"``, ``"folder"`` or ``"tfds"``: which source reads dataset ``name``.

    Raises:
      DatasetError: a name no source reads.
    """
    return _parse_name(name)[0]


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


def _tfds_module(name: str, input: str):
    if resolve_input(input) == "numpy":
        raise tfds_needs_tensorflow(name)
    return importlib.import_module(_TFDS_SOURCE)


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
    input: str = "auto",
    on_corrupt: str | None = None,
) -> DatasetInfo:
    """Cheap metadata of a dataset split, without building a pipeline.

    Image folders are only listed (no decoding): ``skipped`` is 0 and
    ``image_size`` None, and ``num_examples`` counts files that may prove
    corrupt. With ``on_corrupt`` given, a folder split is scanned as
    ``build_dataset`` with that ``on_corrupt`` and ``input`` scans it (the same
    scanner, so its cached result serves the build that follows): the info then
    counts the images that will be used, and ``skipped`` the corrupt ones. An
    unprepared ``imagenet2012`` with valid tar files reports the standard
    ILSVRC2012 sizes without preparing anything. Only TFDS names need TensorFlow.

    Args:
        name: see ``build_dataset``.
        split: ``"train"`` or ``"validation"``.
        data_dir: TFDS data directory.
        manual_dir: ImageNet manual directory (the two ILSVRC2012 tar files).
        validation_fraction: held-out share for sources without a validation split.
        seed: seed of that held-out split.
        input: ``"auto"``, ``"tf"`` or ``"numpy"``, as ``build_dataset``'s (TFDS
            names are an error under the numpy input).
        on_corrupt: None (list folders only), or ``"error"``/``"skip"``: scan
            a folder split and apply the policy, as ``build_dataset`` does.

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
        if on_corrupt is None:
            return folder_info(arg, split, fraction, seed)
        check_choice(on_corrupt, ON_CORRUPT, "on_corrupt")
        module = importlib.import_module(_FOLDER_SOURCES[resolve_input(input)])
        return module.folder_source(arg, split, fraction, seed, on_corrupt).info
    return _tfds_module(arg, input).tfds_info(arg, split, data_dir, manual_dir, fraction, seed)


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
    input_context: Any = None,
    skip_batches: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    pad_multiple: int = 1,
    input: str = "auto",
) -> tuple[Any, DatasetInfo]:
    """Builds a batched input pipeline of (images, one-hot labels).

    Args:
        name: ``"embedded"``, ``"imagenet2012"``, ``"folder:/path/to/root"``, or a
            prepared TFDS name (``"cifar10"`` or ``"tfds:cifar10"``; tf.data only).
        split: ``"train"`` or ``"validation"``.
        batch_size: global batch size.
        image_size: output height and width.
        training: shuffle, repeat forever and augment; else one deterministic pass.
        augment: ``"mnasnet"``, ``"cifar"`` (4-pixel pad, random crop, flip),
            ``"flip"`` or ``"none"``; None uses the dataset's default (``"none"``
            for the digits, which must not be flipped; ``"mnasnet"`` otherwise).
        data_dir: TFDS data directory (default: TFDS's own default).
        manual_dir: directory holding ILSVRC2012_img_train.tar and
            ILSVRC2012_img_val.tar, used to prepare ``imagenet2012`` once.
        on_corrupt: ``"error"`` raises a DatasetError naming corrupt files;
            ``"skip"`` drops them (counted in ``info.skipped``).
        validation_fraction: held-out share (stratified per class where labels are
            known) for sources without a validation split.
        seed: seed of the held-out split, shuffling and augmentation.
        drop_remainder: drop the last partial batch; default ``training``.
        input_context: tf.data only; given by
            ``strategy.distribute_datasets_from_function``: the elements are
            sharded at the source (each input pipeline decodes only its share),
            batches are per replica, and auto-sharding is off. Without it the
            dataset auto-shards by DATA, where every worker runs the whole
            pipeline and keeps its share of the batches.
        skip_batches: training only: start the stream at this batch, as if that
            many batches had been drawn (same shuffle, crops and flips). A resumed
            run passes its global step, so it sees the batches an uninterrupted
            run sees; the skipped elements are not decoded.
        process_index: this process among ``process_count`` (several hosts):
            every process runs the same global stream and produces only its
            contiguous ``batch_size / process_count`` rows of each global batch
            (of a short last evaluation batch, a near-equal share).
        process_count: processes sharing each global batch; must divide
            ``batch_size``.
        pad_multiple: numpy input, evaluation only: pad this process's rows of a
            short last batch to a multiple of it (the local devices of a
            data-parallel step); batches are then ``(images, labels, weights)``
            with weight 0 on the padding, so weighted metrics count real images only.
        input: ``"auto"`` (tf.data if TensorFlow imports, else numpy), ``"tf"``
            or ``"numpy"`` (a ``keras.utils.PyDataset``; the digits and folders).

    Returns:
        ``(dataset, info)``: a ``tf.data.Dataset`` or a ``keras.utils.PyDataset``
        (infinite in training, one pass otherwise) whose elements are float32
        images ``[B, S, S, 3]`` and float32 one-hot labels ``[B, num_classes]``.

    Raises:
        DatasetError: unknown name, missing or unprepared data, corrupt files with
            ``on_corrupt="error"``, a TFDS name without TensorFlow, or bad arguments.
    """
    kind, arg = _parse_name(name)
    request = _checked(
        Request(kind=kind, arg=arg, split=split, batch_size=batch_size,
                image_size=image_size, training=training, augment=augment,
                data_dir=data_dir, manual_dir=manual_dir, on_corrupt=on_corrupt,
                validation_fraction=validation_fraction, seed=seed,
                drop_remainder=drop_remainder, skip_batches=skip_batches,
                process_index=process_index, process_count=process_count,
                pad_multiple=pad_multiple)
    )
    chosen = resolve_input(input)
    if chosen == "numpy":
        if kind == "tfds":
            raise tfds_needs_tensorflow(arg)
        if input_context is not None:
            raise DatasetError(
                "input_context is tf.distribute's and needs the tf.data input; the numpy "
                "input splits batches between hosts with process_index/process_count"
            )
        return importlib.import_module(_NUMPY_PIPELINE).build(request)
    if request.pad_multiple > 1 and not request.training:
        raise DatasetError(
            f"pad_multiple={request.pad_multiple} (a data-parallel evaluation on the JAX "
            'backend) needs the numpy input: input="numpy"')
    return importlib.import_module(_TF_PIPELINE).build(request, input_context)


def _checked(r: Request) -> Request:
    """Checks build_dataset's arguments as given (``r``); returns them normalised."""
    check_choice(r.split, SPLITS, "split")
    _positive_int(r.batch_size, "batch_size")
    _positive_int(r.image_size, "image_size")
    if r.augment:  # None (or an empty config string) means the dataset's default
        check_choice(r.augment, AUGMENTS, "augment")
    check_choice(r.on_corrupt, ON_CORRUPT, "on_corrupt")
    fraction = check_fraction(r.validation_fraction)
    seed = r.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise DatasetError(f"seed must be an integer in [0, 2**31); got {seed!r}")
    skip = r.skip_batches
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise DatasetError(f"skip_batches must be an integer >= 0; got {skip!r}")
    count, index = _positive_int(r.process_count, "process_count"), r.process_index
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise DatasetError(f"process_index must be an integer in [0, {count}); got {index!r}")
    if r.batch_size % count:
        raise DatasetError(
            f"batch_size={r.batch_size} is not a multiple of process_count={count}: "
            "every process takes an equal share of each global batch"
        )
    _positive_int(r.pad_multiple, "pad_multiple")
    training = bool(r.training)
    return dataclasses.replace(
        r,
        training=training,
        augment=r.augment or None,
        validation_fraction=fraction,
        drop_remainder=training if r.drop_remainder is None else bool(r.drop_remainder),
        skip_batches=skip if training else 0,
    )
