"""``spnas-export``: a trained model to float and int8 TFLite, with a report.

  spnas-export --workdir=DIR [--config=configs/export_default.py] [--config.KEY=VALUE ...]
  spnas-export --workdir=DIR [--model=PATH.keras] [--dataset=embedded]
               [--num_calibration=200] [--num_eval=200] [--threads=1]

The old flags are aliases of config keys (``--dataset`` sets ``config.data.dataset``).

Reads ``DIR/model.keras`` (the EMA weights spnas-train saves) unless
``--model`` is given; writes ``DIR/model_float.tflite``,
``DIR/model_int8.tflite``, ``DIR/model.onnx`` (with the ``[onnx]`` extra) and
``DIR/export_report.json``; ``--config.int8_table=T`` adds an int8 table's
prediction for the int8 model (needs ``DIR/arch.json``). On the embedded
digits this takes well under a minute on a laptop CPU.
"""

from __future__ import annotations

from absl import app, flags

from spnas import cli, config_check

FLAGS = flags.FLAGS
CONFIGS = (cli.ConfigFlag("config", "export_default.py", "export", "Export configuration file."),)
flags.DEFINE_string("workdir", None, "Work directory (reads model.keras, writes the exports).")
# The flags spnas-export had before its config: thin aliases that set a config key.
ALIASES = {"model": "model", "dataset": "data.dataset", "data_dir": "data.data_dir",
           "eval_split": "eval_split", "num_calibration": "num_calibration",
           "num_eval": "num_eval", "threads": "threads", "warmup": "warmup",
           "repeats": "repeats", "int8_io": "int8_io"}
flags.DEFINE_string("model", None, "Keras model to export (config.model; default "
                    "<workdir>/model.keras).")
flags.DEFINE_string("dataset", None, "Dataset of the images (config.data.dataset).")
flags.DEFINE_string("data_dir", None, "TFDS data directory (config.data.data_dir).")
flags.DEFINE_string("eval_split", None, "Split of the comparison images (config.eval_split).")
flags.DEFINE_integer("num_calibration", None, "int8 calibration images (config.num_calibration).")
flags.DEFINE_integer("num_eval", None, "Images to compare Keras and LiteRT on (config.num_eval).")
flags.DEFINE_integer("threads", None, "LiteRT threads for the latency measurement (config.threads).")
flags.DEFINE_integer("warmup", None, "Untimed invokes before timing (config.warmup).")
flags.DEFINE_integer("repeats", None, "Timed invokes (config.repeats).")
flags.DEFINE_bool("int8_io", None, "int8 input/output tensors (config.int8_io).")


def _config():
    """``--config`` with the alias flags that were given applied."""
    config = FLAGS.config
    for name, key in ALIASES.items():
        value = FLAGS[name].value
        if value is not None:
            *parents, leaf = key.split(".")
            section = config
            for part in parents:
                section = section[part]
            section[leaf] = value
    return config


def _body(argv) -> None:
    cli.no_arguments(argv)
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required.")
    config = _config()
    config_check.check(config, "export", where="--config with the alias flags")
    result = cli.call("spnas.export.report:run", config, FLAGS.workdir)
    f, q = result["float"], result["int8"]
    print(f"float: {f['size_bytes']} bytes, max |diff| {f['max_abs_diff']:.3g} "
          f"(rel {f['max_rel_diff']:.3g}), {f['latency_ms']:.4f} ms")
    print(f"int8:  {q['size_bytes']} bytes, top-1 agreement {q['top1_agreement_pct']:.1f} %, "
          f"{q['latency_ms']:.4f} ms")
    o = result.get("onnx") or {}
    if "file" in o:
        print(f"onnx:  {o['size_bytes']} bytes, max |diff| {o['max_abs_diff']:.3g} "
              f"(rel {o['max_rel_diff']:.3g}), {o['latency_ms']:.4f} ms (ONNX Runtime)")
    p = q.get("table_prediction")
    if p:
        print(f"int8 table: predicted {p['predicted_ms_exact']:.4f} ms, measured "
              f"{p['measured_ms']:.4f} ms ({p['statistic']}), error {p['error_pct_exact']:+.1f} %")


main = cli.entry_point("spnas-export", _body, CONFIGS)

if __name__ == "__main__":
    main()
