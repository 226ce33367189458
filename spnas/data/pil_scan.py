"""Finds corrupt or unreadable images in an image folder with Pillow (no TensorFlow).

The numpy input path's counterpart of ``folder_scan.py``: before a folder split is
used, every file is opened and fully decoded once by Pillow (``Image.load``
rejects unidentifiable data and truncated files), in a thread pool (Pillow
releases the GIL while it decodes). The result is cached like the TensorFlow
scan's (``scan_cache.py``) under its own key and version: the two decoders need
not agree on every damaged file, so neither trusts the other's verdict.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from spnas.data import scan_cache
from spnas.data.scan_cache import ScanResult

SCAN_VERSION = 1  # bump when the validity test changes, to invalidate caches
_TAG = f"spnas-pil-scan-v{SCAN_VERSION}"  # the cache key of this scanner
_CHUNK = 256  # files per thread-pool task: amortises the pool's per-task cost
# What Pillow raises for unreadable, unidentifiable, truncated or oversized files
# (over twice its pixel limit; between one and two times it only warns, and the
# image is used, as TensorFlow would).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def describe_error(err: BaseException) -> str:
    """One line naming a decode failure: its type and the first line of its message."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def check_image(path: str) -> tuple[tuple[int, int] | None, str | None]:
    """Decodes one file fully; returns ``((height, width), None)`` or ``(None, reason)``."""
    try:
        with Image.open(path) as image:
            image.load()
            width, height = image.size
    except DECODE_ERRORS as err:
        return None, describe_error(err)
    if width == 0 or height == 0:  # a zero-sized image would crash the crop later
        return None, "decodes to an empty image"
    return (height, width), None


def _check_chunk(paths: Sequence[str]) -> list[tuple[tuple[int, int] | None, str | None]]:
    return [check_image(p) for p in paths]


def scan_files(
    paths: Sequence[str], use_cache: bool = True, workers: int | None = None
) -> ScanResult:
    """Decodes every file once (or reads the cached result) and reports the bad ones.

    Args:
        paths: absolute file paths.
        use_cache: read and write the scan cache.
        workers: decode threads (default: the CPU count).

    Returns:
        The corrupt files with reasons and the common native image size.
    """
    cache_path = scan_cache.cache_path("pil_scan", paths, _TAG)
    if use_cache and (cached := scan_cache.read(cache_path, SCAN_VERSION, len(paths))):
        return cached
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        checked = [item for part in pool.map(_check_chunk, chunks) for item in part]
    corrupt = {p: reason for p, (_, reason) in zip(paths, checked, strict=True) if reason}
    shapes = {shape for shape, _ in checked if shape is not None}
    result = ScanResult(corrupt, scan_cache.square_size(shapes))
    if use_cache:
        scan_cache.write(cache_path, SCAN_VERSION, len(paths), result)
    return result
