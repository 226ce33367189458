"""Atomic file output: write to a temporary file beside the target, then rename.

A run killed half way leaves either the old file or the new one, never a
half-written ``arch.json``, latency table or report.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (same-directory temp file + rename)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; honour the umask
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_writable_dir(path: str) -> str:
    """Creates ``path`` if needed and checks it is writable; returns its absolute path.

    Raises:
      PermissionError: with a message naming the directory.
    """
    path = os.path.abspath(os.fspath(path))
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_probe", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise PermissionError(f"Work directory {path!r} is not writable: {e.strerror or e}.") from e
    return path


def read_json(path: str, error: type[Exception], what: str, missing: str | None = None) -> Any:
    """Reads a JSON input file, every failure one line naming the file.

    Args:
      path: the file.
      error: the exception type for a file that exists but is not JSON (a
        directory, not UTF-8, malformed); a subclass of ``UserError`` in spnas.
      what: how messages name the file (``"Latency table"``, ``"arch"``).
      missing: how the not-found message names it (default ``what``).

    Raises:
      FileNotFoundError: the file does not exist.
      error: anything else that keeps it from being read as JSON.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{missing or what} {path!r} does not exist.")
    if os.path.isdir(path):
        raise error(f"{what} {path!r} is a directory, not a file.")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{what} {path!r} is not valid JSON: {e}.") from None
