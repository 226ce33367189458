"""Random-search baseline of the paper's Table 1 (Stamoulis et al., 2019, Sec. 4).

"We randomly sample ten ConvNets based on our design space; we employ sampling
by rejection, where we keep samples with predicted runtime from 75ms to 80ms"
(on the Pixel 1 table). The paper reports 73.78 ± 0.85 % top-1 at 77.31 ms for
them. Each searchable layer takes one of its options uniformly (the four
candidates, plus skip where the layer may be skipped); a sample is kept when
the runtime model (``paper``, Eq. 11-12, by default) predicts a latency inside
the window. Each kept net is written as ``DIR/random_000/arch.json`` etc., ready
for ``spnas-train --arch=DIR/random_000/arch.json``.

  spnas-random-search --table=pixel1_runtime_model.json --space=paper --n=10 \\
      --window=75,80 --out_dir=/tmp/random --seed=0
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from absl import flags

from spnas import cli
from spnas.arch.handoff import load_arch, make_arch, write_arch
from spnas.errors import UserError
from spnas.fileio import check_writable_dir
from spnas.search.target import bound_cost
from spnas.space import SearchSpace, layer_options, resolve_space, sample_choices
from spnas.tables import shipped
from spnas.tables.cost import CostTable
from spnas.tables.runtime_model import MODELS, bind
from spnas.tables.table import LatencyTable, load_table

# sample_choices and layer_options live in spnas.space; importable from here as before.
__all__ = ["DEFAULT_MAX_TRIES", "PAPER_WINDOW_MS", "RandomSearchError", "layer_options", "main",
           "parse_window", "random_search", "run", "sample_choices"]

DEFAULT_MAX_TRIES = 1_000_000  # samples cost microseconds each; a narrow window needs many
PAPER_WINDOW_MS = (75.0, 80.0)  # Table 1, Pixel 1


class RandomSearchError(UserError):
    """The window cannot be met (unreachable, or too rare for the tries allowed)."""


def parse_window(window: str | Sequence[float]) -> tuple[float, float]:
    """``"75,80"`` -> ``(75.0, 80.0)``.

    Raises:
      RandomSearchError: not two numbers, or not ``0 <= lo < hi``.
    """
    try:
        parts = [float(x) for x in (window.split(",") if isinstance(window, str) else window)]
    except (TypeError, ValueError):
        parts = []
    if len(parts) != 2 or not 0 <= parts[0] < parts[1]:
        raise RandomSearchError(
            f"Latency window {window!r} must be two numbers LO,HI in ms with 0 <= LO < HI."
        )
    return parts[0], parts[1]


def random_search(
    table: LatencyTable | CostTable,
    space: SearchSpace,
    n: int = 10,
    window: tuple[float, float] = PAPER_WINDOW_MS,
    seed: int = 0,
    model: str = "paper",
    max_tries: int = DEFAULT_MAX_TRIES,
    strict: bool = True,
) -> tuple[list[tuple[list[str], float]], int]:
    """Samples architectures by rejection until ``n`` are predicted inside ``window``.

    Deterministic for a seed (NumPy's PCG64 generator).

    Args:
      table: the latency table (or any cost table already bound to ``space``: the
        window is then in its unit, e.g. MMAC).
      space: the search space.
      n: architectures to keep.
      window: (lo, hi) predicted latency in ms, inclusive.
      seed: sampling seed.
      model: runtime model, ``paper`` (Eq. 11-12) or ``exact``.
      max_tries: give up after this many samples.
      strict: check the table's input size and layer shapes against ``space``.

    Returns:
      ``([(choices, predicted_ms), ...], tries)``.

    Raises:
      RandomSearchError: the window lies outside the space's reachable range,
        or ``max_tries`` samples gave fewer than ``n`` hits.
    """
    if n < 1 or max_tries < 1:
        raise RandomSearchError(f"Need n >= 1 and max_tries >= 1, got {n} and {max_tries}.")
    if model not in MODELS:
        raise RandomSearchError(f"Unknown runtime model {model!r}; expected one of {MODELS}.")
    lo, hi = parse_window(window)
    bound = bound_cost(table, space, strict)
    unit = bound.unit
    fastest, slowest = bound.range(model)
    if hi < fastest or lo > slowest:
        raise RandomSearchError(
            f"Window {lo:g}-{hi:g} {unit} is outside what the space can reach with this table "
            f"({fastest:.4g}-{slowest:.4g} {unit}, model {model!r})."
        )
    options = layer_options(space)
    # The model is additive over layers: price every option once, then sum.
    costs = [{o: (bound.layer_cost(layer.index, o, model) if layer.searchable else 0.0)
              for o in opts} for layer, opts in zip(space.layers(), options)]
    rng = np.random.default_rng(seed)
    kept: list[tuple[list[str], float]] = []
    tries = 0
    while len(kept) < n:
        if tries >= max_tries:
            raise RandomSearchError(
                f"Only {len(kept)} of {n} random nets fell in {lo:g}-{hi:g} {unit} after {tries} "
                f"samples (reachable {fastest:.4g}-{slowest:.4g} {unit}); widen the window or "
                "raise --max_tries."
            )
        tries += 1
        choices = sample_choices(space, rng, options)
        ms = bound.constant + sum(c[o] for c, o in zip(costs, choices))
        if lo <= ms <= hi:
            kept.append((choices, ms))
    return kept, tries


def run(
    table_path: str,
    space: SearchSpace | None,
    out_dir: str,
    n: int = 10,
    window: tuple[float, float] = PAPER_WINDOW_MS,
    seed: int = 0,
    model: str = "paper",
    max_tries: int = DEFAULT_MAX_TRIES,
    strict: bool = True,
) -> list[str]:
    """Random search, then one ``arch.json`` per kept net; returns their paths.

    Nothing is written unless all ``n`` nets were found. ``space`` None takes
    the table's own (``extra["space"]``), else the paper's ImageNet space.
    """
    out_dir = check_writable_dir(out_dir)
    table = load_table(shipped.resolve(table_path))
    if space is None:
        saved = table.extra.get("space")
        space = SearchSpace.from_dict(saved) if isinstance(saved, dict) else SearchSpace()
    bound = bind(table, space, strict)
    kept, tries = random_search(bound, space, n=n, window=window, seed=seed, model=model,
                                max_tries=max_tries, strict=strict)
    lo, hi = parse_window(window)
    paths = []
    for i, (choices, _ms) in enumerate(kept):
        arch = make_arch(space, choices, bound, strict_table=strict,
                         random_search={"seed": seed, "index": i, "window_ms": [lo, hi],
                                        "model": model, "tries": tries, "n": n})
        path = os.path.join(out_dir, f"random_{i:03d}", "arch.json")
        write_arch(path, arch)
        paths.append(path)
    return paths


def _define_flags() -> None:
    # Defined when the command runs, not on import: the module is also a library.
    flags.DEFINE_string("table", None, "Latency table: a path or a shipped table's name.")
    flags.DEFINE_string("space", None, "'embedded', 'paper' or a search-space JSON file "
                        "(default: the table's own space, else 'paper').")
    flags.DEFINE_integer("n", 10, "Architectures to keep.")
    flags.DEFINE_string("window", "75,80", "Predicted-latency window LO,HI in ms (inclusive).")
    flags.DEFINE_string("out_dir", None, "Writes OUT_DIR/random_000/arch.json etc.")
    flags.DEFINE_integer("seed", 0, "Sampling seed.")
    flags.DEFINE_enum("model", "paper", list(MODELS), "Runtime model for the window.")
    flags.DEFINE_integer("max_tries", DEFAULT_MAX_TRIES, "Give up after this many samples.")
    flags.DEFINE_bool("table_proxy", False,
                      "Allow a table of another input size / layer shapes (only indices checked).")
    flags.mark_flags_as_required(["table", "out_dir"])


def _body(argv) -> None:
    cli.no_arguments(argv)
    fl = flags.FLAGS
    space = resolve_space(fl.space) if fl.space else None
    paths = run(fl.table, space, fl.out_dir, n=fl.n, window=parse_window(fl.window),
                seed=fl.seed, model=fl.model, max_tries=fl.max_tries, strict=not fl.table_proxy)
    for path in paths:
        arch = load_arch(path)
        print(f"{path}: predicted {arch['predicted_ms']:.4f} ms (paper), "
              f"{arch['predicted_ms_exact']:.4f} ms (exact)")
    print(f"wrote {len(paths)} architectures to {fl.out_dir}")


def main() -> None:
    """``spnas-random-search``: see the module docstring for the flags."""
    _define_flags()
    cli.entry_point("spnas-random-search", _body)()


if __name__ == "__main__":
    main()
