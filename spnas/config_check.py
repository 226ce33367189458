"""Checks a search, training or export config before anything is built.

Every command runs :func:`check` on its config right after the flags are read
and before Keras or TensorFlow is imported, and the library's ``run``
functions run it again (a config built in Python gets the same checks). It
rejects, with one line naming the key, the value and what is allowed:

* keys the command does not know (a typo in a config file is not ignored: the
  reference is the command's shipped default config, ``configs/default.py``,
  ``train_default.py`` or ``export_default.py``);
* values of the wrong type (``"64"`` where an integer belongs);
* non-finite numbers anywhere (no key of spnas means anything with NaN or inf);
* numbers outside the range where they make sense (``schedule.epochs=0``, a
  learning rate of 0, a keep-probability above 1) and names outside their set
  (``execution.strategy``, ``data.on_corrupt``, ...);
* a search space that cannot be built (its own checks in :mod:`spnas.space`).

Imports nothing heavy: ml_collections, the vocabulary of :mod:`spnas.space` and
:mod:`spnas.data.source`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator
from typing import Any

import ml_collections

from spnas.configs_path import load_config
from spnas.data.source import AUGMENTS, INPUTS, ON_CORRUPT
from spnas.errors import UserError
from spnas.space import SUPERKERNEL_INITS, SearchSpace

# The strategies a config may name (spnas/train/distribute.py): tf.distribute's on the
# TensorFlow backend, keras.distribution's data parallelism on the JAX backend.
TF_STRATEGIES = ("auto", "cpu", "mirrored", "multiworker", "tpu")
JAX_STRATEGIES = ("auto", "data_parallel")
STRATEGIES = (*TF_STRATEGIES, "data_parallel")

# The shipped default of each kind of config: the keys a command knows.
REFERENCE = {"search": "default.py", "train": "train_default.py", "export": "export_default.py"}


class ConfigError(UserError):
    """A config value or key that cannot work (checked before anything is built)."""


def _positive(x) -> bool:
    return x > 0


def _non_negative(x) -> bool:
    return x >= 0


def _at_least_one(x) -> bool:
    return x >= 1


def _fraction_open(x) -> bool:
    return 0 < x < 1


def _in(*allowed) -> tuple[Callable[[Any], bool], str]:
    return (lambda x: x in allowed), f"one of {', '.join(map(repr, allowed))}"


_POS, _NONNEG, _ONE = (_positive, "> 0"), (_non_negative, ">= 0"), (_at_least_one, ">= 1")


def parse_targets(text: str) -> tuple[float, ...]:
    """``"0.2, 0.3"`` -> ``(0.2, 0.3)``: the ``targets`` key's budgets in ms (``""``: none).

    Raises:
      ValueError: an item that is not a finite number > 0, or a repeated budget (two
        budgets are one when they agree to 6 significant digits, as their file names do).
    """
    if not isinstance(text, str):
        raise ValueError(f"not a string: {text!r}")
    if not text.strip():
        return ()
    values = []
    for item in text.split(","):
        value = float(item)  # ValueError for "" and "abc"
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"not a finite number > 0: {item!r}")
        values.append(value)
    if len({f"{v:.6g}" for v in values}) != len(values):
        raise ValueError(f"a budget is repeated: {text!r}")
    return tuple(values)


def _budgets_ok(text) -> bool:
    try:
        parse_targets(text)
    except ValueError:
        return False
    return True


# key -> (predicate, what is allowed). A key absent from a config is not checked.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    # data (configs/common.py)
    "data.dataset": (bool, "a dataset name (embedded, imagenet2012, folder:/path, a TFDS name)"),
    "data.on_corrupt": _in(*ON_CORRUPT),
    "data.validation_fraction": (_fraction_open, "in (0, 1)"),
    "data.augment": (lambda x: x in (None, "", *AUGMENTS), f"None or one of {AUGMENTS}"),
    "data.num_classes": (lambda x: x == -1 or x >= 2, "-1 (from the dataset) or >= 2"),
    "data.image_size": (lambda x: x >= 8, ">= 8"),
    "data.input": _in(*INPUTS),
    # schedule
    "schedule.batch_size": _ONE,
    "schedule.eval_batch_size": _NONNEG,
    "schedule.epochs": (_non_negative, "> 0 (or 0 with schedule.train_steps > 0)"),
    "schedule.warmup_epochs": _NONNEG,
    "schedule.steps_per_epoch": _NONNEG,
    "schedule.train_steps": _NONNEG,
    "schedule.lr_per_256": _POS,
    "schedule.lr": _POS,
    "schedule.lr_decay_epochs": _POS,
    "schedule.lr_decay_rate": (lambda x: 0 < x <= 1, "in (0, 1]"),
    "schedule.ema_decay": (lambda x: 0 <= x < 1, "in [0, 1) (0: no EMA)"),
    "schedule.label_smoothing": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "schedule.weight_decay": _NONNEG,
    "schedule.bn_recalibration_batches": _NONNEG,
    # execution
    "execution.strategy": _in(*STRATEGIES),
    "execution.cpu_replicas": _ONE,
    "execution.checkpoint_every": _ONE,
    "execution.log_every": _ONE,
    "execution.num_processes": _NONNEG,
    "execution.process_id": (lambda x: x >= -1, ">= -1 (-1: detected)"),
    "seed": _NONNEG,
    # search
    "latency_table": (lambda x: x == x.strip(), "a table file, a shipped table's name or '' "
                      "(none: a search on MACs or parameters)"),
    "cost": _in("latency", "macs", "params"),
    "target": (_non_negative, ">= 0 (0: off) in the cost's unit"),
    "superkernel_init": _in(*SUPERKERNEL_INITS),
    "lambda_": _NONNEG,
    "lambda_warmup_epochs": _NONNEG,
    "indicator_keep_prob": (lambda x: 0 < x <= 1, "in (0, 1]"),
    "target_ms": (_non_negative, ">= 0 (0: off, the fixed-lambda mode)"),
    "target_lr": _NONNEG,
    "target_kp": _NONNEG,
    "target_max_lambda": _POS,
    "target_tolerance": (_fraction_open, "in (0, 1)"),
    "max_params": (_non_negative, ">= 0 (0: no parameter limit)"),
    "params_lr": _NONNEG,
    "params_kp": _NONNEG,
    "params_max_lambda": _POS,
    "targets": (_budgets_ok, "comma-separated distinct budgets in the cost's unit, "
                "each a finite number > 0, e.g. '0.2,0.3' ('': off)"),
    "space.width": _POS,
    "space.dropout": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "space.stem_channels": _ONE,
    "space.head_channels": _ONE,
    "space.stem_stride": _ONE,
    # train
    "width": (_non_negative, ">= 0 (0: the architecture's own)"),
    "dropout": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "eval_split": (bool, "a split name"),
    # export
    "batch_size": _ONE,
    "num_calibration": _ONE,
    "num_eval": _ONE,
    "threads": _ONE,
    "warmup": _NONNEG,
    "repeats": _ONE,
    "int8_table": (lambda x: x == x.strip(), "'' (none), an int8 table file or a shipped "
                   "table's name (e.g. embedded_cpu_int8)"),
}


class Underivable:
    """The value of a derived key that cannot be computed (a key it is derived from has
    a value of the wrong type; that key is reported)."""

    def __init__(self, error: Exception):
        self.error = error

    def __repr__(self) -> str:
        return f"<cannot be derived: {self.error}>"


def _is_derived(config: ml_collections.ConfigDict, key: str) -> bool:
    """``key`` is computed from other keys (``lr`` from ``lr_per_256``)."""
    field = getattr(config, "_fields", {}).get(key)
    return bool(getattr(field, "_ops", None))


def leaves(config: ml_collections.ConfigDict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``(dotted.key, value)`` of ``config``, sections flattened; keys set
    directly come before the keys derived from them, so a message names the key the
    user set."""
    derived = []
    for key in config.keys():
        try:
            value = config[key]
        except (TypeError, ValueError, ArithmeticError) as e:
            value = Underivable(e)
        if isinstance(value, ml_collections.ConfigDict):
            yield from leaves(value, f"{prefix}{key}.")
        elif _is_derived(config, key):
            derived.append((f"{prefix}{key}", value))
        else:
            yield f"{prefix}{key}", value
    yield from derived


def suggest(key: str, known: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known key, or ``""``."""
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close:
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in known}
        close = [by_leaf[m] for m in difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.75)]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _reference(kind: str) -> dict[str, Any]:
    if kind not in REFERENCE:
        raise ValueError(f"kind must be one of {tuple(REFERENCE)}, got {kind!r}.")
    return dict(leaves(load_config(REFERENCE[kind])))


def _type_ok(value: Any, expected: Any) -> bool:
    """``value`` can stand where the reference holds ``expected``."""
    if expected is None or value is None:
        return True  # optional fields (data.augment) take None or their type
    if isinstance(expected, bool):
        return isinstance(value, bool)
    if isinstance(expected, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(expected, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(expected, str):
        return isinstance(value, str)
    if isinstance(expected, (list, tuple)):
        return isinstance(value, (list, tuple))
    return True


def _type_name(expected: Any) -> str:
    for t, name in ((bool, "true or false"), (int, "an integer"), (float, "a number"),
                    (str, "a string"), ((list, tuple), "a list")):
        if isinstance(expected, t):
            return name
    return type(expected).__name__


def check(config: ml_collections.ConfigDict, kind: str, where: str = "config",
          error: type[UserError] = ConfigError) -> None:
    """Raises ``error`` naming the first key or value of ``config`` that cannot work.

    Args:
      config: a ``kind`` config.
      kind: ``"search"``, ``"train"`` or ``"export"``.
      where: how messages name the config (its file, or ``--config``).
      error: the exception type (a :class:`UserError`).
    """
    reference = _reference(kind)
    values = dict(leaves(config))
    values = {**{k: v for k, v in values.items() if not isinstance(v, Underivable)},
              **{k: v for k, v in values.items() if isinstance(v, Underivable)}}
    # Every non-finite number at once: a NaN set on one key also reaches the keys
    # derived from it (schedule.epochs -> lambda_warmup_epochs).
    bad = [f"{k}={v}" for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise error(f"{where}: keys must be finite numbers, got {', '.join(bad)}.")
    for key, value in values.items():
        if key not in reference and not key.startswith("space."):
            raise error(f"{where}: unknown key {key!r} for spnas-{kind}{suggest(key, list(reference))}.")
        if key in reference and not _type_ok(value, reference[key]):
            raise error(f"{where}: {key} must be {_type_name(reference[key])}, got {value!r}.")
        if isinstance(value, Underivable):
            raise error(f"{where}: {key} cannot be derived: {value.error}.")
        rule = RULES.get(key)
        if rule is not None and value is not None:
            ok, allowed = rule
            if not ok(value):
                raise error(f"{where}: {key} must be {allowed}, got {value!r}.")
    _check_lengths(values, where, error)
    if kind == "search":
        _check_space(config, values, where, error)


def _check_lengths(values: dict[str, Any], where: str, error: type[UserError]) -> None:
    epochs, steps = values.get("schedule.epochs"), values.get("schedule.train_steps", 0)
    if epochs is not None and epochs <= 0 and not steps:
        raise error(f"{where}: schedule.epochs must be > 0 (or schedule.train_steps > 0), "
                    f"got {epochs!r}.")
    warmup = values.get("lambda_warmup_epochs")
    if warmup is not None and epochs and not steps and warmup >= epochs:
        raise error(f"{where}: lambda_warmup_epochs must be < schedule.epochs ({epochs:g}) so "
                    f"lambda acts for some steps, got {warmup!r} (use lambda_=0 for no latency loss).")


def _check_space(config: ml_collections.ConfigDict, values: dict[str, Any], where: str,
                 error: type[UserError]) -> None:
    """The search space builds (:class:`spnas.space.SearchSpace` checks its own fields)."""
    if "space" not in config:
        raise error(f"{where}: a search config needs a 'space' section.")
    fields = dict(config.space.to_dict())
    fields["input_size"] = int(values.get("data.image_size", 224))
    classes = int(values.get("data.num_classes", -1))
    fields["num_classes"] = classes if classes >= 2 else 2  # the dataset's count comes later
    try:
        SearchSpace.from_dict(fields).layers()
    except (TypeError, ValueError) as e:
        raise error(f"{where}: space: {e}") from None
