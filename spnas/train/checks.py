"""What ``spnas-train`` checks before TensorFlow loads (Keras-free).

The config's numbers, the architecture (read once: an arch.json becomes an
:class:`spnas.arch.handoff.Arch`), its plan and downsampling, and the work
directory: ``spnas/train/main.py`` runs :func:`prepare` before the seam
(``cli.call("spnas.train.run:run", ...)``), so a bad command fails in about a
second with one line, and :func:`spnas.train.run.run` trains the plan it returns.
"""

from __future__ import annotations

import dataclasses
import os

import ml_collections

from spnas.arch.handoff import Arch, load_arch
from spnas.arch.plan import ArchLike, ModelPlan, plan_model
from spnas.config_check import ConfigError
from spnas.config_check import check as check_keys_and_values
from spnas.fileio import check_writable_dir

ARCH_FILE = "arch.json"  # written by spnas-search into the same work directory


class TrainConfigError(ConfigError):
    """The training configuration cannot work (checked before anything is built)."""


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A checked training run: what to train, from where, its plan, the work directory.

    ``plan.num_classes`` is ``data.num_classes`` or the architecture's own until
    the dataset is known (:func:`with_classes`).
    """

    arch: ArchLike  # an Arch (arch.json read once), a registry name or stage strings
    source: str
    plan: ModelPlan
    workdir: str


def parse_arch(value: str) -> str | list[str]:
    """A ``config.arch`` value as :func:`spnas.arch.plan.plan_model` takes it.

    Stage strings (``ir_r2_k3_s2_e6_c24,...``, comma separated) become a list;
    anything else (a registry name or an arch.json path) stays a string.
    """
    value = value.strip()
    if value.startswith(("ir_", "ds_")):
        return [s.strip() for s in value.split(",") if s.strip()]
    return value


def resolve_arch(config: ml_collections.ConfigDict, workdir: str) -> tuple[str | list[str], str]:
    """Which architecture to train, and a description of where it came from.

    ``config.arch`` when set (``--arch`` sets it); else ``<workdir>/arch.json``
    when a search left one there; else ``config.fallback_arch``.
    """
    if config.arch:
        return parse_arch(config.arch), f"config.arch={config.arch}"
    searched = os.path.join(workdir, ARCH_FILE)
    if os.path.lexists(searched):  # a damaged or odd one is reported by load_arch, not skipped
        return searched, f"searched ({searched})"
    if not config.fallback_arch:
        raise TrainConfigError(
            f"No architecture: config.arch is empty, there is no {searched!r}, and "
            "config.fallback_arch is empty. Pass --arch=NAME_OR_ARCH_JSON."
        )
    return parse_arch(config.fallback_arch), f"config.fallback_arch={config.fallback_arch}"


def load_once(arch: ArchLike) -> ArchLike:
    """An arch.json path becomes its :class:`Arch` (read and validated once); other
    architectures (registry names, stage strings, objects) are returned as they are."""
    if isinstance(arch, (str, os.PathLike)):
        path = os.fspath(arch)
        if (path.endswith(".json") or os.sep in path) and os.path.lexists(path):
            return load_arch(path)
    return arch


def check_config(config: ml_collections.ConfigDict, where: str = "config") -> None:
    """Raises TrainConfigError naming the first key or value that cannot work
    (:func:`spnas.config_check.check` with the training config's keys)."""
    check_keys_and_values(config, "train", where=where, error=TrainConfigError)


def plan_for(config: ml_collections.ConfigDict, arch: ArchLike) -> ModelPlan:
    """The model plan of ``arch`` at the config's input size, width and dropout."""
    n = int(config.data.num_classes)
    return plan_model(
        arch,
        num_classes=n if n > 0 else None,
        input_size=int(config.data.image_size),
        width=float(config.width) or None,
        dropout=float(config.dropout),
    )


def with_classes(plan: ModelPlan, num_classes: int) -> ModelPlan:
    """The plan with the dataset's class count (only the classifier depends on it)."""
    if num_classes < 2:
        raise TrainConfigError(f"num_classes must be >= 2, got {num_classes}.")
    if plan.num_classes == num_classes:
        return plan
    return dataclasses.replace(plan, num_classes=int(num_classes))


def prepare(config: ml_collections.ConfigDict, workdir: str, arch: ArchLike | None = None) -> Prepared:
    """Checks everything that can be wrong before training; returns what to train.

    Args:
      config: a training config (configs/train_default.py).
      workdir: the work directory (created; must be writable).
      arch: what to train (an :class:`Arch`, as spnas-pipeline passes the search's);
        None resolves ``config.arch``, ``<workdir>/arch.json``, ``config.fallback_arch``.

    Raises:
      TrainConfigError, ArchError, UnknownArchError, FileNotFoundError,
      PermissionError: each naming the problem; nothing is written before.
    """
    check_config(config)
    if arch is None:
        arch, source = resolve_arch(config, os.path.abspath(workdir))
    elif isinstance(arch, Arch):
        source = f"searched ({arch.where})"
    else:
        source = f"given ({arch})"
    arch = load_once(arch)
    plan = plan_for(config, arch)  # architecture and downsampling, before TF loads
    return Prepared(arch, source, plan, check_writable_dir(workdir))
