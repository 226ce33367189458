"""``spnas-train --workdir=DIR [--config=configs/x.py --config.key=value ...] [--arch=A]``.

Without ``--config`` it runs the embedded default (``configs/train_default.py``).
``--arch`` (a registry name, an arch.json path or comma-separated stage
strings) sets ``config.arch``; without it the run trains ``DIR/arch.json``
when a search left one there.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from spnas.configs_path import default_config_path

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config",
    default_config_path("train_default.py"),
    "Training configuration file.",
    lock_config=True,
)
flags.DEFINE_string(
    "workdir",
    None,
    "Output directory (model.keras, train_report.json, logs, "
    "checkpoints); a rerun of the same command resumes there.",
)
flags.DEFINE_string(
    "arch",
    None,
    "Architecture to train: a registry name, an arch.json path, "
    "or comma-separated stage strings (sets config.arch).",
)
flags.mark_flag_as_required("workdir")


def main_(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from spnas.train.run import run

    config = FLAGS.config
    if FLAGS.arch:
        config.arch = FLAGS.arch
    try:
        run(config, FLAGS.workdir)
    except Exception as e:
        if not _is_user_error(e):
            raise
        print(f"spnas-train: error: {e}", file=sys.stderr)
        sys.exit(2)


def _is_user_error(e: Exception) -> bool:
    # The checks before training raise only these, and spnas.errors imports
    # TensorFlow: a bad command should not wait for it to fail.
    if isinstance(e, (ValueError, FileNotFoundError, PermissionError)):
        return True
    from spnas.errors import USER_ERRORS

    return isinstance(e, USER_ERRORS)


def main():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main_)


if __name__ == "__main__":
    main()
