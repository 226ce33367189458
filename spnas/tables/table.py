"""Latency tables: per-layer runtimes of the MBConv candidates on a device.

Our format is a self-describing JSON (``format: spnas.latency_table/1``)::

  {
    "format": "spnas.latency_table/1",
    "device": "Pixel 1", "units": "ms", "input_size": 224,
    "runtime": "TFLite", "runtime_version": "1.12", "date": "2019-04-05",
    "constant_ms": 19.5999,          # stem, head, FC and the fixed layers
    "layers": {"1": {"k3_e3": ..., "k3_e6": ..., "k5_e3": ..., "k5_e6": ...}, ...},
    "deployment": {"precision": "int8", "runtime": "litert"},  # optional
    ...                              # optional: source, space, fixed_layers, spread
  }

``deployment`` says what the entries time: ``precision`` ``float32`` or
``int8`` (full-integer models), ``runtime`` ``litert`` (TFLite: LiteRT or
``benchmark_model``) or ``onnxruntime``. A table without it (every table made
before it existed, the Pixel 1 import) reads as float32 on LiteRT.

``layers`` is keyed by the supernet layer index of each searchable layer; each
holds the layer's candidates (all four in the paper's spaces) and, where skipping
the layer is a projection (a 1x1 conv where it changes the shape), ``skip``. The
original release's table (keyed ``"0".."21"`` then ``"0".."3"``, ms, no
metadata) is detected and imported by :func:`load_table`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from spnas.errors import UserError
from spnas.fileio import atomic_write_json, read_json, sha256_file
from spnas.space import CANDIDATES, SKIP, SearchSpace
from spnas.tables import shipped
from spnas.tables.cost import needed_keys

FORMAT = "spnas.latency_table/1"
ORIGINAL_CONSTANT_MS = 19.5999  # Pixel 1 stem+head+FC+fixed layers, from the paper's release
_REQUIRED = ("device", "units", "input_size", "constant_ms", "layers")
PRECISIONS = ("float32", "int8")
RUNTIMES = ("litert", "onnxruntime")
DEFAULT_DEPLOYMENT = {"precision": "float32", "runtime": "litert"}  # tables without one


class LatencyTableError(UserError):
    """A latency table is malformed or does not match the supernet."""


@dataclasses.dataclass(frozen=True)
class LatencyTable:
    """A validated latency table (all runtimes in milliseconds)."""

    device: str
    input_size: int
    constant_ms: float
    layers: dict[int, dict[str, float]]
    units: str = "ms"
    runtime: str = "unknown"
    runtime_version: str = "unknown"
    date: str = "unknown"
    source: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    path: str | None = None
    sha256: str | None = None
    precision: str = "float32"
    deployment_runtime: str = "litert"

    @property
    def deployment(self) -> dict[str, str]:
        """``{"precision": "float32"|"int8", "runtime": "litert"|"onnxruntime"}``."""
        return {"precision": self.precision, "runtime": self.deployment_runtime}

    @property
    def statistic(self) -> str | None:
        """The statistic the entries hold (``median``, ``p10``, ``avg``, ``min``), if recorded."""
        text = self.extra.get("statistic")
        if not isinstance(text, str) or not text.split():
            return None
        return text.split()[0]

    @property
    def searchable_indices(self) -> list[int]:
        return sorted(self.layers)

    def entries(self, index: int) -> dict[str, float]:
        return self.layers[index]

    def to_json(self) -> dict:
        d = {
            "format": FORMAT,
            "device": self.device,
            "units": self.units,
            "input_size": self.input_size,
            "runtime": self.runtime,
            "runtime_version": self.runtime_version,
            "date": self.date,
            "source": self.source,
            "constant_ms": self.constant_ms,
            "deployment": self.deployment,
            "layers": {str(i): dict(self.layers[i]) for i in sorted(self.layers)},
        }
        d.update(self.extra)
        return d

    def summary(self) -> dict:
        """What arch.json records about the table it was searched with."""
        return {
            "device": self.device,
            "units": self.units,
            "input_size": self.input_size,
            "runtime": self.runtime,
            "precision": self.precision,
            "deployment": self.deployment,
            "path": self.path,
            "sha256": self.sha256,
        }

    def validate_for(self, space: SearchSpace, strict: bool = True) -> None:
        """Checks the table covers exactly the searchable layers of ``space``.

        With ``strict=False`` (a *proxy* table, e.g. the Pixel 1 table driving a
        search on tiny images) only the layer indices must match; the input
        size and the profiled layer shapes may differ.

        Raises:
          LatencyTableError: naming the layer (and key) that does not match.
        """
        expected = space.searchable_indices()
        have = self.searchable_indices
        if len(have) != len(expected):
            raise LatencyTableError(
                f"Latency table {self._name()} has {len(have)} searchable layers but the "
                f"supernet has {len(expected)} (layers {expected[0]}..{expected[-1]})."
            )
        missing = sorted(set(expected) - set(have))
        if missing:
            raise LatencyTableError(f"Latency table {self._name()} lacks layer {missing[0]}.")
        for layer in space.layers():
            if layer.searchable:
                missing = [k for k in needed_keys(layer) if k not in self.layers[layer.index]]
                if missing:
                    raise LatencyTableError(
                        f"Latency table {self._name()}, layer {layer.index}: missing key "
                        f"{missing[0]!r} (the layer's choices: {layer.options}).")
        if not strict:
            return
        if self.input_size != space.input_size:
            raise LatencyTableError(
                f"Latency table {self._name()} was measured at input size {self.input_size}, "
                f"the supernet takes {space.input_size}."
            )
        shapes = self.extra.get("layer_shapes")
        if shapes:
            for layer in space.layers():
                if not layer.searchable:
                    continue
                got = shapes.get(str(layer.index))
                want = {"in": layer.in_ch, "out": layer.out_ch, "stride": layer.stride,
                        "hw": layer.input_hw}
                if got is not None and {k: got.get(k) for k in want} != want:
                    raise LatencyTableError(
                        f"Latency table {self._name()}: layer {layer.index} was profiled as "
                        f"{got}, the supernet has {want}."
                    )

    def _name(self) -> str:
        return repr(self.path) if self.path else f"for {self.device!r}"


def _check_value(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LatencyTableError(f"{where}, key {key!r}: runtime {value!r} is not a number.")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise LatencyTableError(f"{where}, key {key!r}: runtime {value!r} must be positive and finite.")
    return v


def _parse_layers(raw: Any, name: str) -> dict[int, dict[str, float]]:
    if not isinstance(raw, dict) or not raw:
        raise LatencyTableError(f"Latency table {name}: 'layers' must be a non-empty object.")
    out: dict[int, dict[str, float]] = {}
    for key, entries in raw.items():
        try:
            index = int(key)
        except ValueError:
            raise LatencyTableError(f"Latency table {name}: layer key {key!r} is not an integer.") from None
        where = f"Latency table {name}, layer {index}"
        if not isinstance(entries, dict):
            raise LatencyTableError(f"{where}: entries must be an object.")
        unknown = set(entries) - set(CANDIDATES) - {SKIP}
        if unknown:
            raise LatencyTableError(f"{where}: unknown keys {sorted(unknown)}; expected "
                                    f"candidates of {CANDIDATES} and {SKIP!r}.")
        if not set(entries) & set(CANDIDATES):
            raise LatencyTableError(f"{where}: no candidate entries; expected some of "
                                    f"{CANDIDATES}.")
        keys = [c for c in (*CANDIDATES, SKIP) if c in entries]
        out[index] = {c: _check_value(where, c, entries[c]) for c in keys}
    return out


def _parse_deployment(raw: Any, name: str) -> dict[str, str]:
    if raw is None:
        return dict(DEFAULT_DEPLOYMENT)
    if not isinstance(raw, dict) or set(raw) - set(DEFAULT_DEPLOYMENT):
        raise LatencyTableError(
            f"Latency table {name}: 'deployment' must be an object with 'precision' and "
            f"'runtime', got {raw!r}.")
    out = {**DEFAULT_DEPLOYMENT, **raw}
    for key, allowed in (("precision", PRECISIONS), ("runtime", RUNTIMES)):
        if out[key] not in allowed:
            raise LatencyTableError(
                f"Latency table {name}: deployment {key} {out[key]!r} is not one of {allowed}.")
    return out


def table_from_json(data: Any, path: str | None = None) -> LatencyTable:
    """Validates a parsed table in our format (or the original release's)."""
    name = repr(path) if path else "(in memory)"
    if is_original_format(data):
        return import_original(data, path=path)
    if not isinstance(data, dict):
        raise LatencyTableError(f"Latency table {name} must be a JSON object.")
    fmt = data.get("format")
    if fmt != FORMAT:
        raise LatencyTableError(
            f"Latency table {name} has format {fmt!r}; expected {FORMAT!r} or the original "
            "release's layer-indexed table."
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise LatencyTableError(f"Latency table {name} lacks {missing}.")
    if data["units"] != "ms":
        raise LatencyTableError(
            f"Latency table {name} has units {data['units']!r}; spnas tables are in 'ms' "
            "(convert the entries to milliseconds)."
        )
    constant = data["constant_ms"]
    if isinstance(constant, bool) or not isinstance(constant, (int, float)) \
            or not math.isfinite(constant) or constant < 0:
        raise LatencyTableError(
            f"Latency table {name}: 'constant_ms' {constant!r} must be a finite number >= 0."
        )
    size = data["input_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise LatencyTableError(
            f"Latency table {name}: 'input_size' {size!r} must be a positive integer."
        )
    known = {"format", "device", "units", "input_size", "runtime", "runtime_version", "date",
             "source", "constant_ms", "layers", "deployment"}
    deployment = _parse_deployment(data.get("deployment"), name)
    return LatencyTable(
        device=str(data["device"]),
        units="ms",
        input_size=size,
        runtime=str(data.get("runtime", "unknown")),
        runtime_version=str(data.get("runtime_version", "unknown")),
        date=str(data.get("date", "unknown")),
        source=str(data.get("source", "")),
        constant_ms=float(constant),
        layers=_parse_layers(data["layers"], name),
        extra={k: v for k, v in data.items() if k not in known},
        path=path,
        precision=deployment["precision"],
        deployment_runtime=deployment["runtime"],
    )


def is_original_format(data: Any) -> bool:
    """The release's table: ``{"0": {"0": ms, .., "3": ms}, .., "21": {...}}``."""
    return (
        isinstance(data, dict)
        and "format" not in data
        and len(data) > 0
        and all(k.isdigit() and isinstance(v, dict) for k, v in data.items())
        and all(set(v) == {"0", "1", "2", "3"} for v in data.values())
    )


def import_original(
    data: dict,
    constant_ms: float = ORIGINAL_CONSTANT_MS,
    device: str = "Pixel 1",
    input_size: int = 224,
    path: str | None = None,
) -> LatencyTable:
    """Converts the release's table; its first and last layers are fixed.

    Candidate columns "0".."3" are k3e3, k3e6, k5e3, k5e6. The fixed layers'
    runtimes are already inside ``constant_ms`` and are kept for reference.
    """
    name = repr(path) if path else "(original format)"
    indices = sorted(int(k) for k in data)
    if indices != list(range(len(indices))) or len(indices) < 3:
        raise LatencyTableError(
            f"Latency table {name}: original-format layers must be '0'..'N' without gaps, "
            f"got {indices[:3]}...{indices[-1:]}."
        )
    first, last = indices[0], indices[-1]

    def row(i: int) -> dict[str, float]:
        where = f"Latency table {name}, layer {i}"
        return {c: _check_value(where, c, data[str(i)][str(j)]) for j, c in enumerate(CANDIDATES)}

    layers = {i: row(i) for i in indices[1:-1]}
    return LatencyTable(
        device=device,
        units="ms",
        input_size=input_size,
        runtime="TFLite (FAI-PEP)",
        runtime_version="unknown (2019)",
        date="2019",
        source="imported from the Single-Path NAS release (pixel1_runtime_model.json, Apache-2.0)",
        constant_ms=float(constant_ms),
        layers=layers,
        extra={"fixed_layers": {str(first): row(first), str(last): row(last)}},
        path=path,
    )


def read_table_json(value: str) -> tuple[str, Any]:
    """Resolves a table argument (a path or a shipped name) and reads its JSON.

    The one reader of table files: every failure is one line naming the file.

    Returns:
      ``(path, parsed JSON)``.

    Raises:
      FileNotFoundError: no such file and no shipped table of that name.
      PermissionError: the file cannot be read.
      LatencyTableError: a directory, empty, binary, truncated or malformed JSON.
    """
    path = shipped.resolve(value)
    return path, read_json(path, LatencyTableError, "Latency table")


def load_table(path: str, space: SearchSpace | None = None) -> LatencyTable:
    """Loads and validates a table file (our format or the original's, detected).

    Args:
      path: the JSON file, or a shipped table's name (``"embedded_cpu"``).
      space: if given, the table must match this supernet's searchable layers.

    Raises:
      LatencyTableError: what is wrong, naming the file, layer and key.
      FileNotFoundError: the file does not exist (and no shipped table has that name).
      PermissionError: the file cannot be read.
    """
    path, data = read_table_json(os.fspath(path))
    table = table_from_json(data, path=path)
    table = dataclasses.replace(table, sha256=sha256_file(path))
    if space is not None:
        table.validate_for(space)
    return table


def save_table(table: LatencyTable, path: str) -> None:
    """Writes the table in our format, atomically."""
    atomic_write_json(path, table.to_json())
