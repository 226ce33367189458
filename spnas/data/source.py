"""Shared types of the input pipelines: errors, dataset metadata, a data source and
a checked build request. No TensorFlow here (the numpy input path needs this module).

Every source of the tf.data path (the embedded digits, an image folder, a TFDS
dataset, ImageNet) produces a :class:`Source`: a ``tf.data.Dataset`` of
*unprocessed* elements plus a ``load`` function that turns one element into an
image (JPEG/PNG bytes or a decoded tensor) and an integer label.
``tf_pipeline.py`` then applies the same shuffling, MnasNet preprocessing,
batching and normalisation to all of them; ``numpy_pipeline.py`` does the same
with numpy and Pillow. Both get their arguments as one checked :class:`Request`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from spnas.errors import UserError

SPLITS = ("train", "validation")
AUGMENTS = ("mnasnet", "cifar", "flip", "none")
ON_CORRUPT = ("error", "skip")
INPUTS = ("auto", "tf", "numpy")  # build_dataset(input=...): auto = tf.data if TF imports
# TFDS names: "cifar10", "cifar10:3.0.2", "imagenet_resized/32x32". The "namespace:name"
# form would query the community registry over the network, so it is not accepted.
TFDS_NAME_RE = re.compile(r"^[a-z0-9_]+(/[\w.\-=,]+)*(:\d+\.\d+\.\d+)?$")

ACCEPTED_NAMES = (
    '"embedded" (the 8x8 scikit-learn digits, no download)',
    '"imagenet2012" (TFDS, prepared from manual_dir tar files)',
    '"folder:/path/to/root" (root/train/<class>/*.jpg|jpeg|png, optional root/validation or root/val)',
    '"<tfds name>" or "tfds:<tfds name>" (e.g. "cifar10"; must already be prepared in data_dir)',
)


class DatasetError(UserError):
    """Bad input to the data pipelines: unknown name, missing data, corrupt files."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Metadata of one split of a dataset.

    Attributes:
        name: canonical dataset name (``"embedded"``, ``"cifar10"``,
            ``"folder:/abs/root"``, ``"imagenet2012"``).
        split: ``"train"`` or ``"validation"``.
        num_classes: number of classes (width of the one-hot labels).
        num_examples: examples in this split (after corrupt files were skipped).
        image_size: native square image size when all images share it, else None.
        class_names: class names in label order, or None when the source has none.
        skipped: corrupt files skipped (only image folders with on_corrupt="skip").
    """

    name: str
    split: str
    num_classes: int
    num_examples: int
    image_size: int | None
    class_names: tuple[str, ...] | None
    skipped: int = 0


@dataclasses.dataclass(frozen=True)
class Source:
    """A split of a dataset before preprocessing.

    Attributes:
        info: metadata of the split.
        elements: finite dataset of raw elements (cheap to shuffle: file paths,
            encoded bytes or tiny tensors).
        load: maps one element to ``(image, label)``; ``image`` is a scalar string
            of encoded JPEG/PNG bytes when ``encoded`` else a ``[H, W, C]`` tensor
            with values in 0..255; ``label`` an int32 scalar.
        encoded: whether ``load`` returns encoded bytes.
        default_augment: augmentation used when the caller passes ``augment=None``.
        shuffle_buffer: shuffle buffer for training, sized to the element cost.
        already_shuffled: the elements are already in a per-epoch random order
            (TFDS file shuffling) so the buffer only has to mix neighbours.
    """

    info: DatasetInfo
    elements: Any  # tf.data.Dataset; typed loosely to keep this module TF-free
    load: Callable[..., Any]
    encoded: bool
    default_augment: str
    shuffle_buffer: int
    already_shuffled: bool = False


def check_choice(value: Any, allowed: tuple[str, ...], what: str) -> str:
    """Returns ``value`` if it is one of ``allowed``, else raises DatasetError."""
    if value not in allowed:
        raise DatasetError(f"{what} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def check_fraction(validation_fraction: float) -> float:
    """Validates the held-out fraction used for sources without a validation split."""
    try:
        fraction = float(validation_fraction)
    except (TypeError, ValueError):
        raise DatasetError(
            f"validation_fraction must be a number in [0, 1); got {validation_fraction!r}"
        ) from None
    if not 0.0 <= fraction < 1.0:
        raise DatasetError(f"validation_fraction must be in [0, 1); got {validation_fraction!r}")
    return fraction


def unknown_name_error(name: Any, detail: str = "") -> DatasetError:
    """The error for a dataset name no source accepts, listing the accepted forms."""
    forms = "\n  ".join(ACCEPTED_NAMES)
    extra = f" ({detail})" if detail else ""
    return DatasetError(f"unknown dataset {name!r}{extra}. Accepted names:\n  {forms}")


@dataclasses.dataclass(frozen=True)
class Request:
    """The checked arguments of one ``build_dataset`` call (see its docstring).

    Attributes:
        kind: ``"embedded"``, ``"folder"`` or ``"tfds"``.
        arg: the folder root or the TFDS name (empty for the digits).
        split, batch_size, image_size, training, augment, data_dir, manual_dir,
        on_corrupt, seed, drop_remainder, skip_batches: as given (``augment`` None:
            the dataset's default; ``skip_batches`` 0 outside training).
        validation_fraction: the checked held-out share.
        process_index, process_count: this process's share of every global batch.
        pad_multiple: evaluation: this process's rows of a short batch are padded to a
            multiple of it, with sample weight 0 (the devices a batch is split over).
    """

    kind: str
    arg: str
    split: str
    batch_size: int
    image_size: int
    training: bool
    augment: str | None
    data_dir: str | None
    manual_dir: str | None
    on_corrupt: str
    validation_fraction: float
    seed: int
    drop_remainder: bool
    skip_batches: int
    process_index: int = 0
    process_count: int = 1
    pad_multiple: int = 1

    @property
    def local_batch_size(self) -> int:
        """Rows of a full global batch that this process produces."""
        return self.batch_size // self.process_count


def process_rows(rows: int, process_index: int, process_count: int) -> tuple[int, int]:
    """The contiguous rows ``[lo, hi)`` of a global batch of ``rows`` one process makes.

    A full batch splits into equal shares (the batch size is a multiple of the
    process count); a short last evaluation batch into near-equal ones. The shares
    of processes 0..count-1, concatenated, are the global batch.
    """
    return process_index * rows // process_count, (process_index + 1) * rows // process_count


def check_size(info: DatasetInfo, split: str, batch_size: int, drop_remainder: bool) -> None:
    """Raises a DatasetError for a split that would yield no batch."""
    if info.num_examples == 0:
        raise DatasetError(f"{info.name} split {split!r} has no examples")
    if drop_remainder and info.num_examples < batch_size:
        raise DatasetError(
            f"{info.name} split {split!r} has {info.num_examples} examples, fewer than "
            f"batch_size={batch_size} with drop_remainder=True: it would yield no batch"
        )
