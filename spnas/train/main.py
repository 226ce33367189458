"""``spnas-train --workdir=DIR [--config=configs/x.py --config.key=value ...] [--arch=A]``.

Without ``--config`` it runs the embedded default (``configs/train_default.py``).
``--arch`` (a registry name, an arch.json path or comma-separated stage
strings) sets ``config.arch``; without it the run trains ``DIR/arch.json``
when a search left one there. The config, the architecture and the work
directory are checked (:func:`spnas.train.checks.prepare`) before TensorFlow loads.
"""

from __future__ import annotations

from absl import flags

from spnas import cli
from spnas.train import checks

FLAGS = flags.FLAGS
CONFIGS = (cli.ConfigFlag("config", "train_default.py", "train", "Training configuration file."),)
flags.DEFINE_string("workdir", None, "Output directory (model.keras, train_report.json, logs, "
                    "checkpoints); a rerun of the same command resumes there.")
flags.DEFINE_string("arch", None, "Architecture to train: a registry name, an arch.json path, "
                    "or comma-separated stage strings (sets config.arch).")
flags.mark_flag_as_required("workdir")


def _body(argv):
    cli.no_arguments(argv)
    config = FLAGS.config
    if FLAGS.arch:
        config.arch = FLAGS.arch
    prepared = checks.prepare(config, FLAGS.workdir)  # Keras-free: fails in a second
    cli.call("spnas.train.run:run", config, FLAGS.workdir, prepared=prepared)


main = cli.entry_point("spnas-train", _body, CONFIGS)

if __name__ == "__main__":
    main()
