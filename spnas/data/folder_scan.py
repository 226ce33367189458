"""Finds corrupt or unreadable images in an image folder before training starts.

A corrupt JPEG inside a running ``tf.data`` pipeline raises an InvalidArgumentError
in the middle of training, without naming the file. So before a folder split is
used, every file of it is decoded once *inside* ``tf.data`` (parallel C++ decoding,
tens of thousands of small images per second) with ``ignore_errors()``; the
indices that do not come out are the bad files, which are then decoded once more
eagerly to get the reason. The result is cached, keyed by the path, size and
modification time of every file, under ``$SPNAS_CACHE_DIR`` (default
``~/.cache/spnas``), so later runs only ``stat`` the files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from spnas import fileio
from spnas.data.preprocess import decode_full

log = logging.getLogger(__name__)

SCAN_VERSION = 1  # bump when the validity test changes, to invalidate caches
_BATCH = 4096


@dataclasses.dataclass(frozen=True)
class ScanResult:
    """Outcome of a folder scan.

    Attributes:
        corrupt: ``{path: reason}`` of files that could not be read or decoded.
        image_size: the common square size of all valid images, else None.
    """

    corrupt: dict[str, str]
    image_size: int | None


def cache_dir() -> str:
    """Directory of the scan cache: $SPNAS_CACHE_DIR, else $XDG_CACHE_HOME/spnas."""
    if os.environ.get("SPNAS_CACHE_DIR"):
        return os.environ["SPNAS_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "spnas")


def _fingerprint(paths: Sequence[str]) -> str:
    digest = hashlib.sha256(f"spnas-folder-scan-v{SCAN_VERSION}\n".encode())
    for path in paths:
        try:
            st = os.stat(path)
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError as err:  # unreadable entries are part of the state too
            digest.update(f"{path}\0{type(err).__name__}\n".encode())
    return digest.hexdigest()


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
    cache_path = os.path.join(cache_dir(), "folder_scan", _fingerprint(paths) + ".json")
    if use_cache and os.path.exists(cache_path):
        try:
            with open(cache_path, encoding="utf-8") as f:
                cached = json.load(f)
            if cached.get("version") == SCAN_VERSION and cached.get("num_files") == len(paths):
                return ScanResult(dict(cached["corrupt"]), cached["image_size"])
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable folder scan cache %s", cache_path)

    ok, shapes = _decode_all(paths)
    corrupt = {paths[i]: _failure_reason(paths[i]) for i in np.flatnonzero(~ok)}
    image_size = None
    if len(shapes) == 1:
        ((height, width),) = shapes
        image_size = height if height == width else None
    result = ScanResult(corrupt, image_size)
    if use_cache:
        record = {
            "version": SCAN_VERSION,
            "num_files": len(paths),
            "corrupt": result.corrupt,
            "image_size": result.image_size,
        }
        try:
            os.makedirs(os.path.dirname(cache_path), exist_ok=True)
            fileio.atomic_write_json(cache_path, record)
        except OSError as err:  # a read-only home must not stop training
            log.warning("could not write folder scan cache %s: %s", cache_path, err)
    return result
