"""``spnas-pipeline``: search -> train -> export -> measure, in one command.

  spnas-pipeline --workdir=DIR [--search=configs/x.py] [--search.lambda_=0.2]
                 [--train=configs/y.py] [--train.schedule.epochs=20]
                 [--export=configs/z.py] [--export.threads=1]

One data section drives all three stages: ``--search.data.*`` (the training
and export configs get the search's ``data``; see :mod:`spnas.pipeline.run`). The
training config is checked before TensorFlow loads; a rerun of the same
command resumes in DIR.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from spnas import cli
from spnas.configs_path import default_config_path
from spnas.train import checks

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("search", default_config_path("default.py"),
                                "Search configuration.", lock_config=True)
config_flags.DEFINE_config_file("train", default_config_path("train_default.py"),
                                "Training configuration.", lock_config=True)
config_flags.DEFINE_config_file("export", default_config_path("export_default.py"),
                                "Export configuration.", lock_config=True)
flags.DEFINE_string("workdir", None, "Output directory of every stage.")
flags.mark_flag_as_required("workdir")


def _body(argv):
    cli.no_arguments(argv)
    checks.check_config(FLAGS.train)  # Keras-free: a bad training value fails in a second
    cli.call("spnas.pipeline.run:run", FLAGS.search, FLAGS.train, FLAGS.workdir,
             export_config=FLAGS.export)


main = cli.entry_point("spnas-pipeline", _body)

if __name__ == "__main__":
    main()
