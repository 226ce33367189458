"""``spnas-search --workdir=DIR [--config=configs/x.py --config.key=value ...]``.

Without ``--config`` it runs the embedded default (``configs/default.py``).
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from spnas import cli
from spnas.configs_path import default_config_path

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", default_config_path("default.py"),
                                "Search configuration file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Output directory (arch.json, logs, figures, checkpoints).")
flags.mark_flag_as_required("workdir")


def _body(argv):
    cli.no_arguments(argv)
    cli.call("spnas.search.run:run", FLAGS.config, FLAGS.workdir)


main = cli.entry_point("spnas-search", _body)

if __name__ == "__main__":
    main()
