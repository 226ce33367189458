"""``spnas-pipeline``: search -> train -> export -> measure, in one command.

  spnas-pipeline --workdir=DIR [--search=configs/x.py] [--search.lambda_=0.2]
                 [--train=configs/y.py] [--train.schedule.epochs=20]
                 [--export=configs/z.py] [--export.threads=1]

One data section drives all three stages: ``--search.data.*`` (the training
and export configs get the search's ``data``; see :mod:`spnas.pipeline.run`). The
three configs are checked before TensorFlow loads; a rerun of the same
command resumes in DIR.
"""

from __future__ import annotations

from absl import flags

from spnas import cli

FLAGS = flags.FLAGS
CONFIGS = (
    cli.ConfigFlag("search", "default.py", "search", "Search configuration."),
    cli.ConfigFlag("train", "train_default.py", "train", "Training configuration."),
    cli.ConfigFlag("export", "export_default.py", "export", "Export configuration."),
)
flags.DEFINE_string("workdir", None, "Output directory of every stage.")
flags.mark_flag_as_required("workdir")


def _body(argv):
    cli.no_arguments(argv)
    cli.call("spnas.pipeline.run:run", FLAGS.search, FLAGS.train, FLAGS.workdir,
             export_config=FLAGS.export)


main = cli.entry_point("spnas-pipeline", _body, CONFIGS)

if __name__ == "__main__":
    main()
