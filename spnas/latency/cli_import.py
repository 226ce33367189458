"""``spnas-latency import --table=ORIGINAL.json --out=TABLE.json [--device=...]``.

``--table`` is read like every table argument (a file, or a shipped table's
name, which is then rejected for being in spnas format already).
"""

from __future__ import annotations

from absl import flags

from spnas import cli
from spnas.latency.cli_flags import require

FLAGS = flags.FLAGS
flags.DEFINE_float("constant_ms", 19.5999, "Constant term for import (stem, head, fixed layers).")


def body() -> None:
    require("import", ("table", "out"), "--table (original format) and --out")
    table = cli.call("spnas.latency.offline:import_table", FLAGS.table, FLAGS.out,
                     constant_ms=FLAGS.constant_ms, device=FLAGS.device)
    print(f"wrote {FLAGS.out} ({len(table.layers)} searchable layers, device {table.device!r})")
