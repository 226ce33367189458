"""Default of ``spnas-export``: a trained model.keras to float and int8 TFLite, with a report.

The ``data`` section (configs/common.py) names the images: int8 calibration on
the first ``num_calibration`` images of the ``train`` split, the Keras/LiteRT
comparison on the first ``num_eval`` of ``eval_split``, both read without
augmentation and split with the top-level ``seed`` exactly as the trainer
splits them (spnas-pipeline passes the training run's data section and seed,
so the int8-agreement images are the training run's validation images).

Command (after ``spnas-train --workdir=/tmp/spnas``):
  spnas-export --workdir=/tmp/spnas
  spnas-export --workdir=/tmp/spnas --config.data.dataset=cifar10 --config.threads=4
The old flags still work and set these keys: --model, --dataset (data.dataset),
--data_dir (data.data_dir), --eval_split, --num_calibration, --num_eval,
--threads, --warmup, --repeats, --int8_io.
With --config.int8_table=embedded_cpu_int8 (an int8 table) and the net's arch.json in
the workdir, export_report.json also holds that table's prediction for the int8 model
next to its measured latency; with the [onnx] extra installed a model.onnx is written too.
Expected: well under a minute on a laptop CPU for the embedded digits; writes
model_float.tflite, model_int8.tflite and export_report.json in the workdir.
"""

import ml_collections
from spnas.configs import common

# Kept equal to spnas.export.tflite.DEFAULT_NUM_CALIBRATION and
# spnas.export.litert.DEFAULT_WARMUP / DEFAULT_REPEATS (pinned by a test):
# importing those would load TensorFlow.
NUM_CALIBRATION = 200
NUM_EVAL = 200
WARMUP = 200
REPEATS = 1000


def get_config(arg=None):
    del arg
    c = ml_collections.ConfigDict()
    c.model = ""  # "": <workdir>/model.keras (the EMA weights spnas-train saves)
    c.data = common.data("embedded", image_size=32)  # image_size: the model's own input
    c.eval_split = "validation"
    c.seed = 0  # the validation split's seed: the training run's
    c.batch_size = 64  # images read per batch (no effect on the results)
    c.num_calibration = NUM_CALIBRATION  # int8 calibration images (train split)
    c.num_eval = NUM_EVAL  # images Keras and LiteRT are compared on
    c.threads = 1  # LiteRT interpreter threads for the latency measurement
    c.warmup = WARMUP  # untimed invokes before timing
    c.repeats = REPEATS  # timed invokes
    c.int8_io = False  # int8 input/output tensors (default float32 I/O)
    c.int8_table = ""  # int8 LiteRT latency table (file or shipped name) to compare the int8 model with; "": none
    return c
