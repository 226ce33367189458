"""The sources of the numpy input path: the embedded digits and image folders.

An :class:`ArraySource` is a split as ``num_examples`` labelled examples with a
``read(i)`` that returns example ``i`` decoded (``[H, W, C]``, values 0..255):
the digits from their array (``digits.py``), folder images decoded by Pillow
(JPEG/PNG; greyscale, palette and RGBA files become RGB like TensorFlow's
``decode_image(channels=3)``, alpha dropped). Folder splits are listed by
``folder_layout.py`` and scanned once by ``pil_scan.py``. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from PIL import Image

from spnas.data import digits
from spnas.data.folder_layout import DEFAULT_AUGMENT, drop_corrupt, scanned_info, split_files
from spnas.data.pil_scan import DECODE_ERRORS, describe_error, scan_files
from spnas.data.source import DatasetError, DatasetInfo


@dataclasses.dataclass(frozen=True)
class ArraySource:
    """A split of a dataset for the numpy pipeline.

    Attributes:
        info: metadata of the split.
        labels: int32 ``[num_examples]`` labels.
        read: example index -> decoded ``[H, W, C]`` image (C = 1 or 3, 0..255);
            raises DatasetError (naming the file) for an image that cannot be read.
        default_augment: augmentation used when the caller passes ``augment=None``.
    """

    info: DatasetInfo
    labels: np.ndarray
    read: Callable[[int], np.ndarray]
    default_augment: str


def read_image(path: str) -> np.ndarray:
    """Decodes a JPEG/PNG file with Pillow to uint8 ``[H, W, 3]``."""
    try:
        with Image.open(path) as image:
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            return np.asarray(rgb)
    except DECODE_ERRORS as err:
        raise DatasetError(f"cannot decode {path}: {describe_error(err)}") from None


def digits_source(split: str, validation_fraction: float, seed: int) -> ArraySource:
    """The digits split: float32 ``[8, 8, 1]`` images in 0..255."""
    images, labels = digits.load()
    idx = digits.split_indices(split, validation_fraction, seed)
    images = images[idx]
    return ArraySource(
        info=digits.embedded_info(split, validation_fraction, seed),
        labels=labels[idx],
        read=images.__getitem__,
        default_augment=digits.DEFAULT_AUGMENT,
    )


def folder_source(
    root: str,
    split: str,
    validation_fraction: float,
    seed: int,
    on_corrupt: str,
    workers: int | None = None,
) -> ArraySource:
    """A folder split whose files passed the Pillow scan (the others: ``on_corrupt``)."""
    name, class_names, paths, labels = split_files(root, split, validation_fraction, seed)
    scan = scan_files(paths, workers=workers)
    paths, labels = drop_corrupt(name, split, paths, labels, scan.corrupt, on_corrupt)
    info = scanned_info(name, split, class_names, len(paths), scan.image_size,
                        len(scan.corrupt))
    return ArraySource(
        info=info,
        labels=labels,
        read=lambda i: read_image(paths[i]),
        default_augment=DEFAULT_AUGMENT,
    )
