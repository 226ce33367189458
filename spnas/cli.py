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

**Config flags** (``--config=FILE --config.KEY=VALUE``) are checked by
:func:`spnas.cli_config.precheck` before absl parses them, defined only then,
and every loaded config is checked by :func:`spnas.config_check.check` before
the command's body runs; ``--help`` lists the config keys (both Keras-free).

Errors: a :class:`spnas.errors.UserError` (bad input) or an ``OSError`` (a
missing or unreadable file) is printed as one line ``prog: error: ...`` with
exit status 2; :class:`spnas.errors.Interrupted` (SIGINT/SIGTERM during
training, which stops at a step boundary) and a Ctrl-C anywhere else as one
line with status 130; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from absl import app, flags
from ml_collections import config_flags as ml_config_flags

from spnas import cli_config, config_check, fileio
from spnas.cli_config import ConfigFlag
from spnas.errors import Interrupted, UserError

__all__ = ["ConfigFlag", "call", "entry_point", "guarded", "no_arguments"]

REPORTED = (UserError, OSError)
INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report it


# What TensorFlow's native libraries print to stderr while they load on a machine
# without a GPU: not about the user's run, and TF_CPP_MIN_LOG_LEVEL does not reach it.
NATIVE_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
    r"cudart_stub\.cc|failed call to cuInit|Could not find cuda drivers|cuda_(platform|dnn|blas|fft)"
    r"|computation placer already registered|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|TensorFlow binary is optimized to use available CPU instructions"
    r"|rebuild TensorFlow with the appropriate compiler flags")


@contextlib.contextmanager
def _native_stderr_filtered():
    """Captures what native code writes to file descriptor 2 and passes on every line
    but :data:`NATIVE_NOISE` when the block ends (nothing else is lost)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (embedded interpreters): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines()
                    if line.strip() and not NATIVE_NOISE.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def call(target: str, /, *args: Any, **kwargs: Any) -> Any:
    """Imports ``"package.module:function"`` now and calls it (the TensorFlow seam).

    The import is where TensorFlow loads: its start-up noise about absent GPUs is
    dropped (:data:`NATIVE_NOISE`), anything else it prints is kept.
    """
    module, _, name = target.partition(":")
    with _native_stderr_filtered():
        loaded = importlib.import_module(module)
        if "tensorflow" in sys.modules:  # the CUDA probe runs at the first device query
            sys.modules["tensorflow"].config.list_physical_devices()
    return getattr(loaded, name)(*args, **kwargs)


def guarded(prog: str, body: Callable[[list[str]], Any], argv: list[str]) -> Any:
    """Runs ``body(argv)``; a user error or ``OSError`` becomes one line and exit 2."""
    try:
        return body(argv)
    except (*REPORTED, app.UsageError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as e:
        print(f"{prog}: {e}", file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing half-written is kept (outputs are written "
              "atomically); the same command starts again.", file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)


def _flag_lines(module_name: str) -> list[str]:
    """``  --name: help (default: x)`` for the absl flags defined by ``module_name``."""
    fl = flags.FLAGS
    found = fl.flags_by_module_dict().get(module_name) or fl.flags_by_module_dict().get(
        sys.argv[0], [])
    return [f"  --{f.name}: {f.help}" + (f" (default: {f.default!r})" if f.default is not None
                                         else "") for f in sorted(found, key=lambda f: f.name)]


def entry_point(prog: str, body: Callable[[list[str]], Any],
                configs: tuple[ConfigFlag, ...] = ()) -> Callable[[], None]:
    """The console-script function of a command.

    Its own absl flags are defined at import; its config flags (``configs``) are
    checked in ``sys.argv`` first, then defined, and each loaded config is checked
    before ``body(argv)`` runs.
    """

    def main() -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads
        fileio.set_program_name(prog)
        usage = sys.modules[body.__module__].__doc__
        files = guarded(prog, lambda argv: cli_config.precheck(
            prog, argv, configs, usage=usage, flag_lines=_flag_lines(body.__module__)), sys.argv)
        for flag in configs:
            ml_config_flags.DEFINE_config_file(flag.name, files[flag.name], flag.help,
                                               lock_config=True)

        def checked(argv: list[str]) -> Any:
            for flag in configs:
                config_check.check(flags.FLAGS[flag.name].value, flag.kind,
                                   where=f"--{flag.name} ({files[flag.name]})")
            return body(argv)

        app.run(lambda argv: guarded(prog, checked, argv), flags_parser=_flags_parser(prog))

    return main


def _flags_parser(prog: str) -> Callable[[list[str]], list[str]]:
    """absl's flag parsing with a flag error (a missing ``--workdir``, ``--n=abc``) as
    one line and exit status 2, as the other user errors."""

    def parse(argv: list[str]) -> list[str]:
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            print(f"{prog}: error: {e} (--help lists the flags)", file=sys.stderr)
            sys.exit(2)

    return parse


def no_arguments(argv: list[str]) -> None:
    """Rejects positional arguments (every spnas command takes flags only)."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
