"""``--config=FILE --config.KEY=VALUE``: read and checked before absl and ml_collections.

ml_collections' config flag loads the file and registers one absl flag per
override while the flags are defined, so a missing file, a typo in a key or a
value of the wrong type surfaced as chained tracebacks (and a missing file
even imported TensorFlow first). :func:`precheck` reads the same arguments
first and turns each of those into one line naming the flag, the file, the
key and what is allowed; only then are the config flags defined and parsed.

``--help`` (``-h``, ``--helpshort``) prints the command's usage, its flags and
every config key with its default and the comment beside it in the config
file; ``--config.help`` prints the keys only (of the file given with
``--config``, if any). Neither loads Keras or TensorFlow. ``--helpfull`` is
absl's own listing.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import sys
from typing import Any

import ml_collections

from spnas.config_check import leaves, suggest
from spnas.configs_path import default_config_path
from spnas.errors import UserError
from spnas.fileio import read_input_bytes

HELP_ARGS = ("--help", "-help", "-h", "--helpshort", "-helpshort", "-?")
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


class ConfigFlagError(UserError):
    """A ``--config`` file or ``--config.KEY=VALUE`` override that cannot be used."""


@dataclasses.dataclass(frozen=True)
class ConfigFlag:
    """One config flag of a command.

    Attributes:
      name: the flag (``config``; ``search``/``train``/``export`` in spnas-pipeline).
      default: the shipped config file used without the flag (``default.py``).
      kind: the kind of config (:data:`spnas.config_check.REFERENCE`).
      help: the flag's help line.
    """

    name: str
    default: str
    kind: str
    help: str


def _flag_args(argv: list[str]) -> list[tuple[str, str | None, int]]:
    """``(name, value or None, index)`` of every ``--name[=value]`` argument before ``--``."""
    out = []
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        out.append((name, value if eq else None, i))
    return out


def config_file_arg(argv: list[str], name: str) -> str | None:
    """The value of ``--name=FILE`` (or ``--name FILE``) in ``argv``, if given."""
    found = None
    for flag, value, i in _flag_args(argv):
        if flag == name:
            found = value if value is not None else (argv[i + 1] if i + 1 < len(argv) else "")
    return found


def load_config_file(spec: str, flag: str = "config") -> ml_collections.ConfigDict:
    """Loads ``FILE`` or ``FILE:ARG`` (ml_collections' syntax) as ``get_config(ARG)``.

    Raises:
      FileNotFoundError, ConfigFlagError: one line naming the file and the problem.
    """
    path, arg = spec, None
    if not os.path.exists(path) and ":" in spec:
        path, arg = spec.rsplit(":", 1)
    where = f"--{flag}={spec}"
    if not path:
        raise ConfigFlagError(f"{where}: empty path; give a config file (e.g. configs/smoke.py).")
    source = read_input_bytes(path, "Config file", ConfigFlagError)
    try:
        code = compile(source, path, "exec")
    except (SyntaxError, ValueError) as e:
        line = f" line {e.lineno}" if getattr(e, "lineno", None) else ""
        raise ConfigFlagError(f"Config file {path!r}{line} is not valid Python: "
                              f"{getattr(e, 'msg', e)}.") from None
    module_name = "spnas_user_config_" + re.sub(r"\W", "_", os.path.abspath(path))
    spec_ = importlib.util.spec_from_loader(module_name, loader=None, origin=path)
    module = importlib.util.module_from_spec(spec_)
    module.__file__ = path
    try:
        exec(code, module.__dict__)  # noqa: S102 (a config is a Python file by design)
        get_config = getattr(module, "get_config", None)
        if not callable(get_config):
            raise ConfigFlagError(f"Config file {path!r} defines no get_config() function.")
        config = get_config(arg) if arg is not None else get_config()
    except ConfigFlagError:
        raise
    except Exception as e:  # the user's file: any error it raises is about the file
        raise ConfigFlagError(f"Config file {path!r} failed to load: "
                              f"{type(e).__name__}: {e}.") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigFlagError(f"Config file {path!r}: get_config() returned a "
                              f"{type(config).__name__}, not an ml_collections.ConfigDict.")
    return config


def _parse_value(raw: str, expected: Any, where: str) -> Any:
    """``raw`` read as the type of the key's current value (as ml_collections will)."""
    try:
        if isinstance(expected, bool):
            low = raw.lower()
            if low not in _TRUE + _FALSE:
                raise ValueError
            return low in _TRUE
        if isinstance(expected, int):
            return int(raw)
        if isinstance(expected, float):
            return float(raw)
    except ValueError:
        kind = ("true or false" if isinstance(expected, bool) else
                "an integer" if isinstance(expected, int) else "a number")
        raise ConfigFlagError(f"{where}: must be {kind} (default {expected!r}).") from None
    return raw


def check_overrides(argv: list[str], flag: ConfigFlag, config: ml_collections.ConfigDict,
                    source: str) -> None:
    """Every ``--FLAG.KEY[=VALUE]`` names a key of ``config`` and a value of its type.

    Raises:
      ConfigFlagError: one line naming the override, the file and what is allowed.
    """
    known = dict(leaves(config))
    sections = {k.rsplit(".", i)[0] for k in known for i in range(1, k.count(".") + 1)}
    prefix = flag.name + "."
    for name, value, i in _flag_args(argv):
        negated = name.startswith("no" + prefix)
        if not (name.startswith(prefix) or negated):
            continue
        key = name[len(prefix) + (2 if negated else 0):]
        where = f"--{name}" + (f"={value}" if value is not None else "")
        if key == "help":
            continue
        if key in sections:
            raise ConfigFlagError(f"{where}: {key!r} is a section of {source}; set one of its "
                                  f"keys (--{prefix}{key}.KEY=VALUE).")
        if key not in known:
            raise ConfigFlagError(f"{where}: {source} has no key {key!r}"
                                  f"{suggest(key, list(known))}; --{prefix}help lists its keys.")
        current = known[key]
        if isinstance(current, list):  # ml_collections overrides tuples, not lists
            raise ConfigFlagError(f"{where}: {key!r} is a list, which cannot be set on the "
                                  f"command line; set it in a config file (a copy of {source}).")
        if negated and not isinstance(current, bool):
            raise ConfigFlagError(f"{where}: {key!r} is not a boolean key.")
        if negated or (value is None and isinstance(current, bool)):
            continue  # --config.flag / --noconfig.flag
        if value is None:  # --config.key VALUE: absl takes the next argument
            value = argv[i + 1] if i + 1 < len(argv) else ""
            where = f"--{name} {value}"
        _parse_value(value, current, where)


def precheck(prog: str, argv: list[str], config_flags: tuple[ConfigFlag, ...],
             usage: str | None = None, flag_lines: list[str] | None = None) -> dict[str, str]:
    """Checks the config arguments of ``argv``; prints help and exits 0 when asked.

    Returns:
      ``{flag name: config file path}`` (the given file, or the shipped default).

    Raises:
      FileNotFoundError, ConfigFlagError: one line naming the problem.
    """
    files, configs = {}, {}
    for flag in config_flags:
        spec = config_file_arg(argv, flag.name)
        files[flag.name] = spec if spec is not None else default_config_path(flag.default)
        configs[flag.name] = load_config_file(files[flag.name], flag.name)
    asked = [a for a in argv[1:] if a in HELP_ARGS]
    keys_asked = [f for f in config_flags if f"--{f.name}.help" in argv[1:]]
    if asked or keys_asked:
        lines = []
        if asked:
            lines += [(usage or prog).strip(), ""]
            if flag_lines:
                lines += ["Flags:", *flag_lines, ""]
        for flag in keys_asked or config_flags:
            lines += describe(configs[flag.name], files[flag.name], flag.name) + [""]
        if asked:
            lines.append("--helpfull lists every absl flag.")
        print("\n".join(lines).rstrip())
        sys.exit(0)
    for flag in config_flags:
        check_overrides(argv, flag, configs[flag.name], files[flag.name])
    return files


# --- the key listing ------------------------------------------------------------------

_ASSIGN = re.compile(r"^\s*(\w+)((?:\.\w+)+)\s*=(.*)$")
# The section variables of configs/common.py's builders (c is the config itself).
_SECTION_OF_VAR = {"c": "", "d": "data.", "s": "schedule.", "e": "execution."}


def _inline_comment(code: str) -> str:
    """The ``# ...`` comment at the end of a line of code ('' if none), outside strings."""
    quote = None
    for i, ch in enumerate(code):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return code[i + 1:].strip()
    return ""


def _comments(path: str, seen: set[str] | None = None) -> dict[str, str]:
    """``{dotted key: comment}`` from the assignments of a config file and the shipped
    configs it imports (``from spnas.configs import common, default``)."""
    seen = set() if seen is None else seen
    if path in seen or not os.path.isfile(path):
        return {}
    seen.add(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    found: dict[str, str] = {}
    imported: list[str] = []
    block: list[str] = []
    for line in lines:
        stripped = line.strip()
        m = re.match(r"from spnas\.configs import (.+)$", stripped)
        if m:
            imported += [n.strip() for n in m.group(1).split(",")]
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        a = _ASSIGN.match(line)
        if a and a.group(1) in _SECTION_OF_VAR:
            key = _SECTION_OF_VAR[a.group(1)] + a.group(2)[1:]
            text = _inline_comment(a.group(3)) or " ".join(block)
            if text and key not in found:
                found[key] = text
        block = []
    for name in imported:
        try:
            other = default_config_path(f"{name}.py")
        except FileNotFoundError:
            continue
        for key, text in _comments(other, seen).items():
            found.setdefault(key, text)
    return found


def describe(config: ml_collections.ConfigDict, path: str, flag: str = "config") -> list[str]:
    """The listing of every key of ``config``: ``KEY = DEFAULT  comment``."""
    comments = _comments(path)
    rows = []
    for key, value in leaves(config):
        shown = repr(value)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        rows.append((f"{key} = {shown}", comments.get(key, "")))
    width = min(56, max(len(r[0]) for r in rows)) if rows else 0
    out = [f"Config keys of {path} (set with --{flag}.KEY=VALUE):"]
    for left, comment in rows:
        if comment and len(comment) > 100:
            comment = comment[:97] + "..."
        out.append(f"  {left:<{width}}  {comment}".rstrip() if comment else f"  {left}")
    return out
