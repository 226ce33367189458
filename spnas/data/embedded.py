"""The embedded digits (``digits.py``) as a tf.data :class:`Source`."""

from __future__ import annotations

import tensorflow as tf

from spnas.data import digits
from spnas.data.source import Source


def embedded_source(split: str, validation_fraction: float, seed: int) -> Source:
    """The digits split as a Source of decoded [8, 8, 1] images in 0..255."""
    images, labels = digits.load()
    idx = digits.split_indices(split, validation_fraction, seed)
    elements = tf.data.Dataset.from_tensor_slices((images[idx], labels[idx]))
    return Source(
        info=digits.embedded_info(split, validation_fraction, seed),
        elements=elements,
        load=lambda image, label: (image, label),
        encoded=False,
        default_augment=digits.DEFAULT_AUGMENT,
        shuffle_buffer=int(idx.size),  # the whole split fits: a full shuffle
    )
