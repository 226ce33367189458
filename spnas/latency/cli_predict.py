"""``spnas-latency predict --table=T --arch=NAME_OR_ARCH_JSON [--model=paper|exact]``.

``--table`` is a table file or a shipped table's name; the last line printed
is ``predicted_ms: <value>``.
"""

from __future__ import annotations

from absl import flags

from spnas import cli
from spnas.latency.cli_flags import require
from spnas.tables.runtime_model import MODELS

FLAGS = flags.FLAGS
flags.DEFINE_string("arch", None, "Registry name, arch.json path, or all_<choice>.")
flags.DEFINE_enum("model", "paper", list(MODELS), "Runtime model to use.")


def body() -> float:
    require("predict", ("table", "arch"), "--table and --arch")
    result = cli.call("spnas.latency.offline:predict", FLAGS.table, FLAGS.arch, FLAGS.model)
    print(f"table: {result['table'].device} ({FLAGS.table})")
    print(f"arch: {FLAGS.arch}")
    print(f"layers: {' '.join(result['choices'])}")
    print(f"model: {FLAGS.model}")
    print(f"predicted_ms: {result['ms']:.4f}")
    return result["ms"]
