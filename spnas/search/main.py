"""``spnas-search --workdir=DIR [--config=configs/x.py --config.key=value ...]``.

Without ``--config`` it runs the embedded default (``configs/default.py``).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from spnas.configs_path import default_config_path

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", default_config_path("default.py"),
                                "Search configuration file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Output directory (arch.json, logs, figures, checkpoints).")
flags.mark_flag_as_required("workdir")


def main_(argv):
    del argv
    from spnas.errors import USER_ERRORS
    from spnas.search.run import run

    try:
        run(FLAGS.config, FLAGS.workdir)
    except USER_ERRORS as e:
        print(f"spnas-search: error: {e}", file=sys.stderr)
        sys.exit(2)


def main():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main_)


if __name__ == "__main__":
    main()
