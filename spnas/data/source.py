"""Shared types of the input pipelines: errors, dataset metadata, and a data source.

Every source (the embedded digits, an image folder, a TFDS dataset, ImageNet)
produces a :class:`Source`: a ``tf.data.Dataset`` of *unprocessed* elements plus a
``load`` function that turns one element into an image (JPEG/PNG bytes or a
decoded tensor) and an integer label. ``pipeline.py`` then applies the same
shuffling, MnasNet preprocessing, batching and normalisation to all of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from spnas.errors import UserError

SPLITS = ("train", "validation")
AUGMENTS = ("mnasnet", "cifar", "flip", "none")
ON_CORRUPT = ("error", "skip")

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
