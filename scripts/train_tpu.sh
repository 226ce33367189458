#!/usr/bin/env bash
# Train a Single-Path NAS network on ImageNet on a Cloud TPU (the paper's Sec. 4.1 run).
#
# UNTESTED ON A TPU: written for a Cloud TPU VM (v2-8/v3-8 or larger) with spnas
# installed (pip install -e .); nobody has run it end to end yet.
#
# Recipe: configs/imagenet_train.py (MnasNet schedule: 350 epochs = 437,898 steps at
# batch 1024, RMSProp, LR 0.064 with 5-epoch warm-up, EMA 0.9999, float32).
# Expected result: the paper reports 74.96 % top-1 for spnas_pixel1 (timm's own training
# of the same net: 74.09 %). Expected cost, an estimate only: the paper's 8-epoch search
# took 3.75 h on a TPUv2-8 with the heavier supernet; 350 epochs are 44x as many, so at most
# ~160 h on a v2-8 (less, as the trained net is lighter): days, not hours. Preparing
# imagenet2012 from the tars once takes hours and ~150 GB of disk (plus the tars).
#
# Usage:
#   scripts/train_tpu.sh TPU_NAME MANUAL_DIR DATA_DIR WORKDIR [GCS_OUTPUT] [-- extra spnas-train flags]
# or set the same values as environment variables:
#   TPU_NAME     TPU name or grpc:// address ("local" on a TPU VM).
#   MANUAL_DIR   directory with ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar
#                (only read the first time, to prepare the TFDS dataset).
#   DATA_DIR     TFDS data directory (local disk or gs://BUCKET/tfds).
#   WORKDIR      local run directory on the VM (checkpoints, model.keras, train_report.json,
#                train_log.csv, tb/). Re-running the same command resumes there.
#   GCS_OUTPUT   optional gs:// directory; WORKDIR is copied there every SYNC_SECONDS
#                (default 1800) while training and once at the end (needs gsutil).
#   ARCH         architecture (default: WORKDIR/arch.json if present, else spnas_pixel1).
# Example:
#   scripts/train_tpu.sh my-tpu /mnt/disks/imagenet gs://my-bucket/tfds /mnt/disks/run \
#       gs://my-bucket/spnas/run1 -- --arch=/mnt/disks/run/arch.json
set -euo pipefail

positional=()
while [[ $# -gt 0 && "$1" != "--" ]]; do positional+=("$1"); shift; done
[[ "${1:-}" == "--" ]] && shift
extra=("$@")

TPU_NAME="${positional[0]:-${TPU_NAME:-}}"
MANUAL_DIR="${positional[1]:-${MANUAL_DIR:-}}"
DATA_DIR="${positional[2]:-${DATA_DIR:-}}"
WORKDIR="${positional[3]:-${WORKDIR:-}}"
GCS_OUTPUT="${positional[4]:-${GCS_OUTPUT:-}}"
SYNC_SECONDS="${SYNC_SECONDS:-1800}"

usage() { sed -n '2,30p' "$0" >&2; exit 2; }
[[ -n "$TPU_NAME" && -n "$DATA_DIR" && -n "$WORKDIR" ]] || usage
if [[ "$TPU_NAME" == "local" ]]; then TPU_NAME=""; fi
if [[ -n "$GCS_OUTPUT" && "$GCS_OUTPUT" != gs://* ]]; then
  echo "train_tpu.sh: GCS_OUTPUT must start with gs://, got '$GCS_OUTPUT'" >&2; exit 2
fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
args=(--config="$REPO/configs/imagenet_train.py" --workdir="$WORKDIR"
      --config.execution.tpu="$TPU_NAME" --config.data.data_dir="$DATA_DIR")
[[ -n "$MANUAL_DIR" ]] && args+=(--config.data.manual_dir="$MANUAL_DIR")
[[ -n "${ARCH:-}" ]] && args+=(--arch="$ARCH")

sync_out() { [[ -n "$GCS_OUTPUT" ]] && gsutil -m -q rsync -r "$WORKDIR" "$GCS_OUTPUT" || true; }
if [[ -n "$GCS_OUTPUT" ]]; then
  ( while sleep "$SYNC_SECONDS"; do sync_out; done ) &
  syncer=$!
  trap 'kill "$syncer" 2>/dev/null || true' EXIT
fi

mkdir -p "$WORKDIR"
echo "spnas-train ${args[*]} ${extra[*]:-}"
status=0
spnas-train "${args[@]}" "${extra[@]}" || status=$?
sync_out
exit "$status"
