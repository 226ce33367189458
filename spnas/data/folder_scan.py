"""Finds corrupt or unreadable images in an image folder before training starts.

A corrupt JPEG inside a running ``tf.data`` pipeline raises an InvalidArgumentError
in the middle of training, without naming the file. So before a folder split is
used, every file of it is decoded once *inside* ``tf.data`` (parallel C++ decoding,
tens of thousands of small images per second) with ``ignore_errors()``; the
indices that do not come out are the bad files, which are then decoded once more
eagerly to get the reason. The result is cached, keyed by the path, size and
modification time of every file (``scan_cache.py``), so later runs only ``stat``
the files. ``pil_scan.py`` is the same check with Pillow, for the numpy path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from spnas.data import scan_cache
from spnas.data.preprocess import decode_full
from spnas.data.scan_cache import ScanResult

SCAN_VERSION = 1  # bump when the validity test changes, to invalidate caches
_TAG = f"spnas-folder-scan-v{SCAN_VERSION}"  # the cache key of this scanner
_BATCH = 4096


def _clean_tf_message(message: str) -> str:
    """TF op errors start with '{{function_node ...}}' and end with '[Op:Name]'."""
    message = re.sub(r"\{\{[^}]*\}\}\s*", "", message)
    message = re.sub(r"\s*\[Op:\w+\].*$", "", message, flags=re.S)
    return message.strip().splitlines()[0] if message.strip() else "unknown error"


def _failure_reason(path: str) -> str:
    """Decodes one file eagerly to report why it failed."""
    try:
        image = decode_full(tf.io.read_file(path))
        if image.shape[0] == 0 or image.shape[1] == 0:
            return "decodes to an empty image"
    except tf.errors.OpError as err:
        return _clean_tf_message(err.message)
    return "failed inside tf.data but decodes eagerly (transient read error?)"


def _decode_all(paths: Sequence[str]) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """Decodes every file in tf.data; returns the ok-mask and the set of (h, w)."""
    def shape_of(index, path):
        image = decode_full(tf.io.read_file(path))
        shape = tf.shape(image)[:2]
        # A zero-sized image would crash the crop later: treat it as corrupt.
        check = tf.debugging.assert_positive(shape, message="empty image")
        with tf.control_dependencies([check]):
            return index, tf.identity(shape)

    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths), dtype=np.int64), list(paths)))
    ds = ds.map(shape_of, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.ignore_errors().batch(_BATCH)
    ok = np.zeros((len(paths),), dtype=bool)
    shapes: set[tuple[int, int]] = set()
    for index, hw in ds.as_numpy_iterator():
        ok[index] = True
        shapes.update(map(tuple, np.unique(hw, axis=0).tolist()))
    return ok, shapes


def scan_files(paths: Sequence[str], use_cache: bool = True) -> ScanResult:
    """Decodes every file once (or reads the cached result) and reports the bad ones.

    Args:
        paths: absolute file paths.
        use_cache: read and write the scan cache.

    Returns:
        The corrupt files with reasons and the common native image size.
    """
    cache_path = scan_cache.cache_path("folder_scan", paths, _TAG)
    if use_cache and (cached := scan_cache.read(cache_path, SCAN_VERSION, len(paths))):
        return cached
    ok, shapes = _decode_all(paths)
    corrupt = {paths[i]: _failure_reason(paths[i]) for i in np.flatnonzero(~ok)}
    result = ScanResult(corrupt, scan_cache.square_size(shapes))
    if use_cache:
        scan_cache.write(cache_path, SCAN_VERSION, len(paths), result)
    return result
