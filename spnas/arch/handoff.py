"""``arch.json``, the hand-off from search to training and export: its format,
building, validation, reading and writing, in one place.

A search decodes one choice per supernet layer (the rule is
:func:`spnas.space.choice_from_decisions`); :func:`make_arch` turns those into
the file's dictionary (stage strings, predicted latency, which table, the
space, the config), :func:`write_arch` writes it atomically, and
:func:`load_arch` reads and validates it once into an :class:`Arch`, the
object the trainer, the exporter and the pipeline pass along. Every problem
with such a file is an :class:`ArchError` naming the file.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from spnas.arch.stages import ArchError, StageSpec, encode
from spnas.choices import choice_from_decisions
from spnas.fileio import atomic_write_json, read_json, sha256_file
from spnas.layer_plan import PROJECTION
from spnas.space import SearchSpace, validate_choices
from spnas.tables.runtime_model import BoundTable, bind
from spnas.tables.table import LatencyTable

__all__ = [
    "ARCH_FORMAT",
    "Arch",
    "ArchError",
    "choice_from_decisions",
    "load_arch",
    "make_arch",
    "stage_strings",
    "validate_arch",
    "write_arch",
]

ARCH_FORMAT = "spnas.arch/1"
_REQUIRED_KEYS = ("format", "layers", "stages")


def stage_strings(space: SearchSpace, choices: Sequence[str]) -> list[str]:
    """timm-style stage strings of the decoded net; skipped layers vanish (a
    projection skip, where the layer changes the shape, is a ``pj`` stage).

    Consecutive layers of one block with the same choice form one stage string
    (its stride is that of its first layer).
    """
    choices = validate_choices(space, choices)
    blocks = space.block_specs()
    runs: list[tuple[int, StageSpec]] = []
    for layer, choice in zip(space.layers(), choices):
        plain = layer.decoded(choice) if layer.searchable else layer
        if plain is None:  # an identity skip
            continue
        projection = plain.op == PROJECTION
        spec = StageSpec(
            block_type="pj" if projection else ("ds" if plain.expansion == 1 else "ir"),
            repeats=1,
            kernel=plain.kernel,
            stride=layer.stride,
            expansion=plain.expansion,
            channels=layer.out_ch,
            noskip=projection or blocks[layer.block].noskip,
        )
        if runs and runs[-1][0] == layer.block and layer.stride == 1 and not projection:
            last = runs[-1][1]
            if (last.kernel, last.expansion, last.block_type) == \
                    (spec.kernel, spec.expansion, spec.block_type):
                runs[-1] = (layer.block, StageSpec(**{**last.__dict__, "repeats": last.repeats + 1}))
                continue
        runs.append((layer.block, spec))
    return [encode(spec) for _, spec in runs]


def make_arch(
    space: SearchSpace,
    choices: Sequence[str],
    table: BoundTable | LatencyTable | None = None,
    strict_table: bool = True,
    **extra: Any,
) -> dict:
    """Builds the arch.json dictionary (format ``spnas.arch/1``).

    Args:
      space: the search space the choices belong to.
      choices: one choice per supernet layer (fixed layers included).
      table: the table the latency is predicted with; a :class:`BoundTable`
        (bound to ``space``) is used as it is, a plain table is bound here with
        ``strict_table`` (False accepts a proxy table).
      **extra: further top-level keys (``search``, ``decisions``, ``config``...).
    """
    choices = validate_choices(space, choices)
    bound = bind(table, space, strict_table) if table is not None else None
    arch: dict[str, Any] = {
        "format": ARCH_FORMAT,
        "layers": choices,
        "stages": stage_strings(space, choices),
        "predicted_ms": bound.predict_ms(choices) if bound else None,
        "predicted_ms_exact": bound.predict_ms(choices, model="exact") if bound else None,
        "latency_table": bound.summary() if bound else None,
        "space": space.to_dict(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    arch.update(extra)
    return arch


def write_arch(path: str, arch: Mapping) -> None:
    """Validates then writes ``arch`` atomically (never a half-written file)."""
    data = dict(arch)
    validate_arch(data, where=path)
    atomic_write_json(path, data)


def validate_arch(arch: Any, where: str = "(in memory)") -> dict:
    """Checks an arch.json dictionary; returns it.

    Raises:
      ArchError: naming ``where`` and what is wrong (format, missing keys,
        choices that do not fit the recorded space).
    """
    if not isinstance(arch, dict):
        raise ArchError(f"arch {where!r} must be a JSON object.")
    fmt = arch.get("format")
    if fmt != ARCH_FORMAT:
        raise ArchError(f"arch {where!r} has format {fmt!r}; this spnas reads {ARCH_FORMAT!r}.")
    missing = [k for k in _REQUIRED_KEYS if k not in arch]
    if missing:
        raise ArchError(f"arch {where!r} lacks {missing}.")
    if not isinstance(arch["layers"], list) or not isinstance(arch["stages"], list):
        raise ArchError(f"arch {where!r}: 'layers' and 'stages' must be lists.")
    if "space" in arch:
        try:
            space = SearchSpace.from_dict(arch["space"])
            validate_choices(space, arch["layers"])
        except (TypeError, ValueError) as e:
            raise ArchError(f"arch {where!r}: {e}") from None
    return arch


@dataclasses.dataclass(frozen=True)
class Arch(Mapping):
    """A validated arch.json, read once and passed along as an object.

    It reads like the file's dictionary (``arch["layers"]``, ``arch.get(...)``)
    and adds where it came from.

    Attributes:
      data: the validated dictionary.
      path: the file it was read from (None for one built in memory).
      sha256: that file's hash.
    """

    data: dict
    path: str | None = None
    sha256: str | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "(in memory)") -> Arch:
        return cls(validate_arch(data, where=where))

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def layers(self) -> list[str]:
        return list(self.data["layers"])

    @property
    def stages(self) -> list[str]:
        return list(self.data["stages"])

    @property
    def space(self) -> SearchSpace | None:
        """The search space it was decoded from (None for a hand-written file)."""
        return SearchSpace.from_dict(self.data["space"]) if "space" in self.data else None

    @property
    def where(self) -> str:
        return self.path or "(in memory)"


def load_arch(path: str) -> Arch:
    """Reads and validates an arch.json file, once.

    Raises:
      FileNotFoundError: the file does not exist.
      ArchError: a directory, not UTF-8 JSON, or not a valid arch (names the file).
    """
    path = os.fspath(path)
    data = read_json(path, ArchError, "arch", missing="Architecture file")
    return Arch(validate_arch(data, where=path), path=os.path.abspath(path), sha256=sha256_file(path))
