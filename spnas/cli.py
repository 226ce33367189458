"""What every spnas command-line tool shares: absl start-up, one-line errors, and the
one place where the heavy libraries are imported.

A console script is ``main = cli.entry_point("spnas-x", body)`` where
``body(argv)`` reads its flags and calls a library function ``run(config,
workdir)`` through :func:`call`.

**The TensorFlow seam.** Everything in spnas imports at module top, except
:func:`call`: a command's module imports only absl, ml_collections and
Keras-free spnas modules (configs, :mod:`spnas.arch`, :mod:`spnas.tables`), so
flags and configs are read and checked in about a second, and only then does
:func:`call` import the library module that needs Keras and TensorFlow. A bad
flag never waits five seconds for TensorFlow to load.

Errors: a :class:`spnas.errors.UserError` (bad input) or an ``OSError`` (a
missing or unreadable file) is printed as one line ``prog: error: ...`` with
exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from absl import app

from spnas.errors import UserError

REPORTED = (UserError, OSError)


def call(target: str, /, *args: Any, **kwargs: Any) -> Any:
    """Imports ``"package.module:function"`` now and calls it (the TensorFlow seam)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(*args, **kwargs)


def guarded(prog: str, body: Callable[[list[str]], Any], argv: list[str]) -> Any:
    """Runs ``body(argv)``; a user error or ``OSError`` becomes one line and exit 2."""
    try:
        return body(argv)
    except REPORTED as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)


def entry_point(prog: str, body: Callable[[list[str]], Any]) -> Callable[[], None]:
    """The console-script function of a command whose absl flags are defined at import."""

    def main() -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads
        app.run(lambda argv: guarded(prog, body, argv))

    return main


def no_arguments(argv: list[str]) -> None:
    """Rejects positional arguments (every spnas command takes flags only)."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
