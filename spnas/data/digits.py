"""The embedded default dataset's arrays: scikit-learn's 8x8 handwritten digits.

1,797 real greyscale images of the digits 0-9 (the UCI optical-recognition test
set, shipped inside scikit-learn, so no network is needed). The grey levels 0..16
are scaled to 0..255 here; the pipelines resize them (bilinear) and make them RGB.
The main job searches on them at 32x32 so the pipeline runs anywhere. No
TensorFlow here: ``embedded.py`` wraps these arrays for tf.data,
``numpy_source.py`` for the numpy path.
"""

from __future__ import annotations

import functools

import numpy as np
from sklearn.datasets import load_digits

from spnas.data.source import DatasetInfo
from spnas.data.splits import stratified_split

NAME = "embedded"
NATIVE_SIZE = 8  # sklearn.datasets.load_digits: 8x8 images
MAX_GREY = 16.0  # load_digits grey levels are 0..16
NUM_CLASSES = 10
# Flipping a digit changes what it is (2 vs mirrored 2), so no augmentation.
DEFAULT_AUGMENT = "none"


@functools.lru_cache(maxsize=1)
def load() -> tuple[np.ndarray, np.ndarray]:
    """All digits as float32 [N, 8, 8, 1] in 0..255 and int32 labels [N]."""
    digits = load_digits()
    images = (digits.images.astype(np.float32) * (255.0 / MAX_GREY))[..., None]
    images.setflags(write=False)  # shared by every pipeline: keep it unchanged
    return images, digits.target.astype(np.int32)


def split_indices(split: str, fraction: float, seed: int) -> np.ndarray:
    """Indices into :func:`load`'s arrays of one split (stratified, seeded)."""
    _, labels = load()
    train, val = stratified_split(labels, fraction, seed)
    return train if split == "train" else val


def embedded_info(split: str, validation_fraction: float, seed: int) -> DatasetInfo:
    """Metadata of a split of the digits (nothing built)."""
    return DatasetInfo(
        name=NAME,
        split=split,
        num_classes=NUM_CLASSES,
        num_examples=int(split_indices(split, validation_fraction, seed).size),
        image_size=NATIVE_SIZE,
        class_names=tuple(str(d) for d in range(NUM_CLASSES)),
    )
