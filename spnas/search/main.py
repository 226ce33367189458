"""``spnas-search --workdir=DIR [--config=configs/x.py --config.key=value ...]``.

Without ``--config`` it runs the embedded default (``configs/default.py``).
"""

from __future__ import annotations

from absl import flags

from spnas import cli

FLAGS = flags.FLAGS
CONFIGS = (cli.ConfigFlag("config", "default.py", "search", "Search configuration file."),)
flags.DEFINE_string("workdir", None, "Output directory (arch.json, logs, figures, checkpoints).")
flags.mark_flag_as_required("workdir")


def _body(argv):
    cli.no_arguments(argv)
    cli.call("spnas.search.run:run", FLAGS.config, FLAGS.workdir)


main = cli.entry_point("spnas-search", _body, CONFIGS)

if __name__ == "__main__":
    main()
