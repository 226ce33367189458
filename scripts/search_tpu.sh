#!/usr/bin/env bash
# The paper's Single-Path NAS search on a Cloud TPU: ImageNet, Pixel 1 table, 8 epochs.
#
# Usage:
#   TPU_NAME=my-tpu BUCKET=gs://my-bucket IMAGENET_MANUAL_DIR=/data/imagenet_tars \
#     PIXEL1_TABLE=/path/to/pixel1_runtime_model.json bash scripts/search_tpu.sh [extra --config.key=value ...]
#
# Expected (paper, Table 1): 8 epochs = 10,008 steps at batch 1024; "30 TPU-hours"
# on TPUv2 (the paper counts TPU hours); the searched net predicts ~80 ms on the
# Pixel 1 table (the paper's: 80.59 ms predicted, 79.48 ms measured).
# Requirements: a TPU VM (or a VM with a TPU node) with spnas installed
# (`pip install -e ".[tpu]"`), ImageNet prepared by tensorflow-datasets
# (imagenet2012, from the manual tar files) in $BUCKET/tfds or locally.
# Untested on a TPU by us: the same code path (tf.distribute + Keras fit) runs on CPU in CI.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME to the TPU name or grpc:// address}"
: "${BUCKET:?set BUCKET to a gs:// bucket for the workdir and tfds data}"
: "${PIXEL1_TABLE:?set PIXEL1_TABLE to the Pixel 1 latency table (the release JSON or ours)}"
WORKDIR="${WORKDIR:-$BUCKET/spnas/search_pixel1_$(date +%Y%m%d_%H%M%S)}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
exec spnas-search \
  --config="$HERE/configs/imagenet_pixel1.py" \
  --workdir="$WORKDIR" \
  --config.execution.tpu="$TPU_NAME" \
  --config.data.data_dir="${TFDS_DATA_DIR:-$BUCKET/tfds}" \
  --config.data.manual_dir="${IMAGENET_MANUAL_DIR:-}" \
  --config.latency_table="$PIXEL1_TABLE" \
  "$@"
