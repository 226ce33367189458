"""The cache of folder corruption scans (``folder_scan.py``, ``pil_scan.py``).

A scan decodes every file of a folder split once; its result is cached, keyed by
the path, size and modification time of every file and by the scanner's own tag
(its name and version, so the TensorFlow and the Pillow scans never read each
other's verdicts), under ``$SPNAS_CACHE_DIR`` (default ``~/.cache/spnas``): later
runs only ``stat`` the files. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Sequence

from spnas import fileio

log = logging.getLogger(__name__)


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


def fingerprint(paths: Sequence[str], tag: str) -> str:
    """A digest of ``tag`` and of every file's path, size and modification time."""
    digest = hashlib.sha256(f"{tag}\n".encode())
    for path in paths:
        try:
            st = os.stat(path)
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError as err:  # unreadable entries are part of the state too
            digest.update(f"{path}\0{type(err).__name__}\n".encode())
    return digest.hexdigest()


def square_size(shapes: set[tuple[int, int]]) -> int | None:
    """The common size when every valid image has the same square (h, w), else None."""
    if len(shapes) != 1:
        return None
    ((height, width),) = shapes
    return height if height == width else None


def cache_path(kind: str, paths: Sequence[str], tag: str) -> str:
    """Where the scan ``kind`` (a sub-directory name) of ``paths`` is cached."""
    return os.path.join(cache_dir(), kind, fingerprint(paths, tag) + ".json")


def read(path: str, version: int, num_files: int) -> ScanResult | None:
    """The cached result at ``path``, or None if absent, stale or damaged.

    The cache is ours and is rebuilt by scanning again, but a damaged file is
    said in one note line on stderr, not passed over silently.
    """
    if not os.path.lexists(path):
        return None
    try:
        cached = fileio.read_json(path, ValueError, "folder scan cache")
        if cached.get("version") != version or cached.get("num_files") != num_files:
            return None
        corrupt, size = cached["corrupt"], cached["image_size"]
        if not isinstance(corrupt, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in corrupt.items()):
            raise ValueError(f"folder scan cache {path!r}: 'corrupt' is not a {{path: reason}} "
                             "object.")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
            raise ValueError(f"folder scan cache {path!r}: 'image_size' {size!r} is not an "
                             "integer.")
        return ScanResult(dict(corrupt), size)
    except (OSError, ValueError, KeyError, AttributeError) as err:
        reason = (err if isinstance(err, (OSError, ValueError))
                  else f"folder scan cache {path!r} is not a scan record ({type(err).__name__}: "
                  f"{err})")
        fileio.note(f"ignoring the damaged folder scan cache ({fileio.one_line(reason)}); "
                    "scanning the images again.")
        log.warning("ignoring damaged folder scan cache %s: %s", path, err)
    return None


def write(path: str, version: int, num_files: int, result: ScanResult) -> None:
    """Stores ``result`` atomically; a read-only cache directory only logs a warning."""
    record = {
        "version": version,
        "num_files": num_files,
        "corrupt": result.corrupt,
        "image_size": result.image_size,
    }
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fileio.atomic_write_json(path, record)
    except OSError as err:  # a read-only home must not stop training
        log.warning("could not write folder scan cache %s: %s", path, err)
