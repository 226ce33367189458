"""Atomic file output and checked file input.

Output: write to a temporary file beside the target, then rename. A run killed
half way leaves either the old file or the new one, never a half-written
``arch.json``, latency table or report.

Input: every reader of a user's file (latency tables, ``arch.json``, Keras and
TFLite models, image folders, TFDS directories) checks it here first, so a path
that is missing, a directory where a file belongs (or the reverse), empty,
unreadable or a symbolic-link loop fails with one line naming the file and what
is wrong, worded alike everywhere. Content checks (JSON, schema, version) stay
with each format's reader, which raises its own ``UserError`` subclass.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import sys
import tempfile
from typing import Any

from spnas.errors import UserError


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
      UserError: an empty path (it would mean the current directory).
      PermissionError: with a message naming the directory.
    """
    if not os.fspath(path).strip():
        raise UserError("The work directory is empty (--workdir=): give a directory, e.g. "
                        "--workdir=runs/x.")
    path = os.path.abspath(os.fspath(path))
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_probe", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise PermissionError(f"Work directory {path!r} is not writable: {e.strerror or e}.") from e
    return path


def one_line(text: Any) -> str:
    """``text`` (often a library's exception) as one line: its lines joined by "; "."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return "; ".join(lines) or type(text).__name__


_PROGRAM = ["spnas"]  # how messages name the running command (the CLI entry point sets it)


def set_program_name(prog: str) -> None:
    """Called by each command's entry point (``spnas-search``, ...)."""
    _PROGRAM[0] = prog


def program_name() -> str:
    """How messages name the running command: the command, or ``spnas`` when spnas runs
    inside another program."""
    return _PROGRAM[0]


def note(message: str, stream: Any = None) -> None:
    """One ``prog: note: ...`` line (on stderr unless ``stream`` says otherwise): what
    spnas did on its own that the user should know about (nothing is wrong)."""
    print(f"{program_name()}: note: {message}", file=stream or sys.stderr, flush=True)


def _stat(path: str, what: str, error: type[Exception]) -> os.stat_result:
    """``os.stat(path)`` with every failure one line naming the path."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise FileNotFoundError(
                f"{what} {path!r} is a broken symbolic link (its target does not exist).") from None
        raise FileNotFoundError(f"{what} {path!r} does not exist.") from None
    except PermissionError:
        raise PermissionError(
            f"{what} {path!r} cannot be reached: permission denied on a directory above it."
        ) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise error(f"{what} {path!r} is a symbolic link loop.") from None
        if e.errno == errno.ENOTDIR:
            raise error(f"{what} {path!r}: a component of the path is a file, not a "
                        "directory.") from None
        raise error(f"{what} {path!r} cannot be read: {e.strerror or e}.") from None


def check_input_file(
    path: Any, what: str, error: type[Exception] = UserError, empty_ok: bool = False
) -> str:
    """Checks that ``path`` is a readable, non-empty regular file; returns it.

    Args:
      path: the file (str or path-like).
      what: how messages name it (``"Latency table"``, ``"Keras model"``).
      error: the ``UserError`` subclass raised for a file of the wrong kind.
      empty_ok: accept an empty file.

    Raises:
      FileNotFoundError: not given, missing, or a broken symbolic link.
      PermissionError: not readable.
      error: a directory, not a regular file, empty, or a symbolic-link loop.
    """
    path = os.fspath(path) if path is not None else ""
    if not path:
        raise FileNotFoundError(f"No {what} given (an empty path).")
    st = _stat(path, what, error)
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{what} {path!r} is a directory, not a file.")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {path!r} is not a regular file (a device, pipe or socket).")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{what} {path!r} is not readable (permission denied).")
    if st.st_size == 0 and not empty_ok:
        raise error(f"{what} {path!r} is empty (0 bytes).")
    return path


def check_input_dir(path: Any, what: str, error: type[Exception] = UserError) -> str:
    """Checks that ``path`` is a directory that can be listed; returns it.

    Raises:
      FileNotFoundError: not given, missing, or a broken symbolic link.
      PermissionError: not listable.
      error: a file, not a directory, or a symbolic-link loop.
    """
    path = os.fspath(path) if path is not None else ""
    if not path:
        raise FileNotFoundError(f"No {what} given (an empty path).")
    st = _stat(path, what, error)
    if not stat.S_ISDIR(st.st_mode):
        raise error(f"{what} {path!r} is a file, not a directory.")
    if not os.access(path, os.R_OK | os.X_OK):
        raise PermissionError(f"{what} {path!r} cannot be listed (permission denied).")
    return path


def check_output_file(path: Any, what: str, error: type[Exception] = UserError) -> str:
    """Checks, before any work, that ``path`` can be written as a file; returns it.

    Raises:
      FileNotFoundError: not given.
      error: ``path`` is a directory.
      PermissionError: its directory cannot be created or written.
    """
    path = os.fspath(path) if path is not None else ""
    if not path:
        raise FileNotFoundError(f"No {what} given (an empty path).")
    if os.path.isdir(path):
        raise error(f"{what} {path!r} is a directory; give a file path inside it.")
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise error(f"{what} {path!r} is not writable: {parent!r} is a file, not a directory.")
    check_writable_dir(parent)
    return path


def read_input_bytes(path: Any, what: str, error: type[Exception] = UserError) -> bytes:
    """The bytes of a checked input file (:func:`check_input_file`), read errors one line."""
    path = check_input_file(path, what, error)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise error(f"{what} {path!r} cannot be read: {e.strerror or e}.") from None


def read_json(path: str, error: type[Exception], what: str, missing: str | None = None) -> Any:
    """Reads a JSON input file, every failure one line naming the file.

    Args:
      path: the file.
      error: the exception type for a file that exists but is not JSON (a
        directory, empty, not UTF-8, malformed); a subclass of ``UserError``.
      what: how messages name the file (``"Latency table"``, ``"arch"``).
      missing: how the not-found message names it (default ``what``).

    Raises:
      FileNotFoundError: the file does not exist.
      PermissionError: it cannot be read.
      error: anything else that keeps it from being read as JSON.
    """
    path = os.fspath(path)
    if missing and not os.path.lexists(path):
        raise FileNotFoundError(f"{missing} {path!r} does not exist.")
    raw = read_input_bytes(path, what, error)
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise error(f"{what} {path!r} is not a JSON text file (binary data, not UTF-8).") from None
    except json.JSONDecodeError as e:
        raise error(f"{what} {path!r} is not valid JSON (damaged or truncated?): {e}.") from None
    except RecursionError:
        raise error(f"{what} {path!r} is not valid JSON: nested too deeply.") from None
