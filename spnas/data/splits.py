"""Deterministic train/validation splits for sources that ship only a training set.

The embedded digits and image folders without a ``validation/`` directory hold out
``validation_fraction`` of each class (stratified), chosen by a seeded permutation.
Each class gets its own generator seeded from ``(seed, class key)`` so that adding
or removing one class does not reshuffle the others.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np


def _held_out_count(n: int, fraction: float) -> int:
    """Examples of one class to hold out: round(fraction * n), keeping both sides non-empty."""
    if fraction <= 0.0 or n < 2:
        return 0
    return int(min(n - 1, max(1, round(fraction * n))))


def stratified_split(
    labels: Sequence[int] | np.ndarray,
    fraction: float,
    seed: int,
    class_keys: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Splits example indices per class into sorted (train, validation) index arrays.

    Args:
        labels: integer label of each example.
        fraction: share of each class that goes to validation (0 gives none).
        seed: seed of the permutation; the same seed gives the same split.
        class_keys: stable name of each class (default: the label number), used to
            seed the per-class permutation.

    Returns:
        ``(train_indices, validation_indices)``, disjoint, sorted, covering all examples.
    """
    labels = np.asarray(labels, dtype=np.int64)
    train_parts, val_parts = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        key = class_keys[label] if class_keys is not None else str(int(label))
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode("utf-8"))])
        order = rng.permutation(members.size)
        n_val = _held_out_count(members.size, fraction)
        val_parts.append(members[order[:n_val]])
        train_parts.append(members[order[n_val:]])
    empty = np.zeros((0,), np.int64)
    train = np.sort(np.concatenate(train_parts)) if train_parts else empty
    val = np.sort(np.concatenate(val_parts)) if val_parts else empty
    return train, val


def seeded_split_mask(n: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of length ``n`` marking the held-out examples (unstratified).

    Used for TFDS datasets with neither a validation nor a test split, whose labels
    are not known without reading the whole split.
    """
    mask = np.zeros((n,), dtype=bool)
    n_val = _held_out_count(n, fraction)
    if n_val:
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, n])
        mask[rng.permutation(n)[:n_val]] = True
    return mask
