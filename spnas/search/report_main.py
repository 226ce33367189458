"""``spnas-report WORKDIR``: redraws a search's figures (Fig. 4 and Fig. 6) from its files."""

from __future__ import annotations

import os
import sys

from spnas.search.report import make_figures


def main(argv: list[str] | None = None) -> None:
    """``spnas-report WORKDIR``: redraws a search's figures."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: spnas-report WORKDIR", file=sys.stderr)
        sys.exit(2)
    workdir = argv[0]
    if not os.path.isdir(workdir):
        print(f"spnas-report: error: {workdir!r} is not a directory.", file=sys.stderr)
        sys.exit(2)
    paths = make_figures(workdir)
    if not paths:
        print(f"spnas-report: error: no search_log.csv or kernel_std.json in {workdir!r}.",
              file=sys.stderr)
        sys.exit(2)
    for p in paths:
        print(p)


if __name__ == "__main__":
    main()
