"""From layer decisions to ``arch.json``, the hand-off from search to training.

Per layer (reference-facts.md, "Decode"): ``d50c = 0`` -> skip; otherwise
kernel 5 if ``d5x5`` else 3, expansion 6 if ``d100c`` else 3. The authors'
encoder swapped e3/e6 for ``3x3-6`` and ``5x5-3`` (issue #8 of their release);
here the choice is spelt directly from the decisions, and a test pins it.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Sequence
from typing import Any

from spnas.fileio import atomic_write_json
from spnas.latency.runtime_model import predict_ms
from spnas.latency.table import LatencyTable
from spnas.models.arch_string import StageSpec, encode
from spnas.search.space import SKIP, SearchSpace, parse_choice, validate_choices

ARCH_FORMAT = "spnas.arch/1"
_REQUIRED_KEYS = ("format", "layers", "stages")


class ArchError(ValueError):
    """An arch.json file is malformed or of an unknown format."""


def choice_from_decisions(d5x5: float, d100c: float, d50c: float) -> str:
    """The MBConv choice encoded by three hard indicators."""
    if d50c < 0.5:
        return SKIP
    return f"k{5 if d5x5 > 0.5 else 3}_e{6 if d100c > 0.5 else 3}"


def stage_strings(space: SearchSpace, choices: Sequence[str]) -> list[str]:
    """timm-style stage strings of the decoded net; skipped layers vanish.

    Consecutive layers of one block with the same choice form one stage string
    (its stride is that of its first layer).
    """
    choices = validate_choices(space, choices)
    blocks = space.block_specs()
    runs: list[tuple[int, StageSpec]] = []
    for layer, choice in zip(space.layers(), choices):
        if choice == SKIP:
            continue
        k, e = parse_choice(choice)
        spec = StageSpec(
            block_type="ds" if e == 1 else "ir",
            repeats=1,
            kernel=k,
            stride=layer.stride,
            expansion=e,
            channels=layer.out_ch,
            noskip=blocks[layer.block].noskip,
        )
        if runs and runs[-1][0] == layer.block and layer.stride == 1:
            last = runs[-1][1]
            if (last.kernel, last.expansion, last.block_type) == (k, e, spec.block_type):
                runs[-1] = (layer.block, StageSpec(**{**last.__dict__, "repeats": last.repeats + 1}))
                continue
        runs.append((layer.block, spec))
    return [encode(spec) for _, spec in runs]


def make_arch(
    space: SearchSpace,
    choices: Sequence[str],
    table: LatencyTable | None = None,
    strict_table: bool = True,
    **extra: Any,
) -> dict:
    """Builds the arch.json dictionary (format ``spnas.arch/1``).

    ``strict_table=False`` accepts a proxy table (see LatencyTable.validate_for).
    """
    choices = validate_choices(space, choices)
    arch: dict[str, Any] = {
        "format": ARCH_FORMAT,
        "layers": choices,
        "stages": stage_strings(space, choices),
        "predicted_ms": predict_ms(table, choices, space, strict=strict_table) if table else None,
        "predicted_ms_exact": (
            predict_ms(table, choices, space, model="exact", strict=strict_table) if table else None
        ),
        "latency_table": table.summary() if table else None,
        "space": space.to_dict(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    arch.update(extra)
    return arch


def write_arch(path: str, arch: dict) -> None:
    """Validates then writes ``arch`` atomically (never a half-written file)."""
    validate_arch(arch, where=path)
    atomic_write_json(path, arch)


def validate_arch(arch: Any, where: str = "(in memory)") -> dict:
    if not isinstance(arch, dict):
        raise ArchError(f"arch {where!r} must be a JSON object.")
    fmt = arch.get("format")
    if fmt != ARCH_FORMAT:
        raise ArchError(
            f"arch {where!r} has format {fmt!r}; this spnas reads {ARCH_FORMAT!r}."
        )
    missing = [k for k in _REQUIRED_KEYS if k not in arch]
    if missing:
        raise ArchError(f"arch {where!r} lacks {missing}.")
    if "space" in arch:
        try:
            space = SearchSpace.from_dict(arch["space"])
            validate_choices(space, arch["layers"])
        except ValueError as e:
            raise ArchError(f"arch {where!r}: {e}") from None
    return arch


def load_arch(path: str) -> dict:
    """Reads and validates an arch.json file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Architecture file {path!r} does not exist.")
    with open(path) as f:
        try:
            arch = json.load(f)
        except json.JSONDecodeError as e:
            raise ArchError(f"arch {path!r} is not valid JSON: {e}.") from None
    return validate_arch(arch, where=path)
