"""The embedded default dataset: scikit-learn's 8x8 handwritten digits.

1,797 real greyscale images of the digits 0-9 (the UCI optical-recognition test
set, shipped inside scikit-learn, so no network is needed). The grey levels 0..16
are scaled to 0..255 here; ``preprocess.py`` resizes (bilinear) and makes them
RGB. The main job searches on them at 32x32 so the pipeline runs anywhere.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

from spnas.data.source import DatasetInfo, Source
from spnas.data.splits import stratified_split

NAME = "embedded"
NATIVE_SIZE = 8  # sklearn.datasets.load_digits: 8x8 images
MAX_GREY = 16.0  # load_digits grey levels are 0..16


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """All digits as float32 [N, 8, 8, 1] in 0..255 and int32 labels [N]."""
    digits = load_digits()
    images = (digits.images.astype(np.float32) * (255.0 / MAX_GREY))[..., None]
    return images, digits.target.astype(np.int32)


def _split_indices(split: str, fraction: float, seed: int) -> np.ndarray:
    _, labels = _load_digits()
    train, val = stratified_split(labels, fraction, seed)
    return train if split == "train" else val


def embedded_info(split: str, validation_fraction: float, seed: int) -> DatasetInfo:
    """Metadata of a split of the digits (no tensors built)."""
    return DatasetInfo(
        name=NAME,
        split=split,
        num_classes=10,
        num_examples=int(_split_indices(split, validation_fraction, seed).size),
        image_size=NATIVE_SIZE,
        class_names=tuple(str(d) for d in range(10)),
    )


def embedded_source(split: str, validation_fraction: float, seed: int) -> Source:
    """The digits split as a Source of decoded [8, 8, 1] images in 0..255."""
    images, labels = _load_digits()
    idx = _split_indices(split, validation_fraction, seed)
    elements = tf.data.Dataset.from_tensor_slices((images[idx], labels[idx]))
    return Source(
        info=embedded_info(split, validation_fraction, seed),
        elements=elements,
        load=lambda image, label: (image, label),
        encoded=False,
        # Flipping a digit changes what it is (2 vs mirrored 2), so no augmentation.
        default_augment="none",
        shuffle_buffer=int(idx.size),  # the whole split fits: a full shuffle
    )
