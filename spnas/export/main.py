"""``spnas-export``: a trained model to float and int8 TFLite, with a report.

  spnas-export --workdir=DIR [--model=PATH.keras] [--dataset=embedded]
               [--num_calibration=200] [--num_eval=200] [--threads=1]

Reads ``DIR/model.keras`` (the EMA weights spnas-train saves) unless
``--model`` is given; writes ``DIR/model_float.tflite``,
``DIR/model_int8.tflite`` and ``DIR/export_report.json``. On the embedded
digits this takes well under a minute on a laptop CPU.
"""

from __future__ import annotations

import sys

from absl import app, flags

from spnas.export import litert, report
from spnas.export.tflite import DEFAULT_NUM_CALIBRATION

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Work directory (reads model.keras, writes the exports).")
flags.DEFINE_string("model", None, "Keras model to export (default: <workdir>/model.keras).")
flags.DEFINE_string("dataset", "embedded", "Dataset for calibration and comparison images.")
flags.DEFINE_string("data_dir", None, "TFDS data directory.")
flags.DEFINE_string("eval_split", "validation", "Split of the comparison images.")
flags.DEFINE_integer("num_calibration", DEFAULT_NUM_CALIBRATION, "int8 calibration images.")
flags.DEFINE_integer("num_eval", report.DEFAULT_NUM_EVAL, "Images to compare Keras and LiteRT on.")
flags.DEFINE_integer("threads", 1, "LiteRT interpreter threads for the latency measurement.")
flags.DEFINE_integer("warmup", litert.DEFAULT_WARMUP, "Untimed invokes before timing.")
flags.DEFINE_integer("repeats", litert.DEFAULT_REPEATS, "Timed invokes.")
flags.DEFINE_bool("int8_io", False, "int8 input/output tensors (default float32 I/O).")


def main_(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required.")
    try:
        result = report.run(
            FLAGS.workdir,
            model_path=FLAGS.model,
            dataset=FLAGS.dataset,
            num_calibration=FLAGS.num_calibration,
            num_eval=FLAGS.num_eval,
            eval_split=FLAGS.eval_split,
            threads=FLAGS.threads,
            warmup=FLAGS.warmup,
            repeats=FLAGS.repeats,
            int8_io=FLAGS.int8_io,
            data_dir=FLAGS.data_dir,
        )
    # ExportError and spnas.data's DatasetError are ValueErrors.
    except (ValueError, FileNotFoundError, PermissionError) as e:
        print(f"spnas-export: error: {e}", file=sys.stderr)
        sys.exit(2)
    f, q = result["float"], result["int8"]
    print(f"float: {f['size_bytes']} bytes, max |diff| {f['max_abs_diff']:.3g} "
          f"(rel {f['max_rel_diff']:.3g}), {f['latency_ms']:.4f} ms")
    print(f"int8:  {q['size_bytes']} bytes, top-1 agreement {q['top1_agreement_pct']:.1f} %, "
          f"{q['latency_ms']:.4f} ms")
    print(f"wrote {FLAGS.workdir}/{report.REPORT_FILE}")


def main():
    app.run(main_)


if __name__ == "__main__":
    main()
