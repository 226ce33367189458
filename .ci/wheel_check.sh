#!/usr/bin/env bash
# CI: the wheel, installed (not editable) into a fresh venv, works away from the checkout.
#
# Builds the wheel from a copy of the working tree (tracked and untracked-not-ignored
# files, so no build/ or stale egg-info of the checkout leaks into it), installs it with
# its dependencies from the package index (through pip's cache: the second run installs
# in about a minute), then, from a temporary folder outside the repository, runs the
# smoke search with the shipped smoke config and predicts the found architecture's
# latency with the shipped smoke table, by name.
#
#   bash .ci/wheel_check.sh        (PYTHON=python3.x to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off
unset PIP_NO_CACHE_DIR PYTHONPATH  # the cache keeps the TensorFlow download; no repo on the path
start=$SECONDS
TMP=$(mktemp -d "${TMPDIR:-/tmp}/spnas-wheel.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
log=$TMP/step.log
step() { echo "wheel check: $1 ($((SECONDS - start)) s)"; }
quiet() { "$@" > "$log" 2>&1 || { tail -n 60 "$log"; return 1; }; }
fail() { echo "wheel check: FAILED: $*" >&2; exit 1; }

step "building the wheel"
mkdir "$TMP/src"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"  # skip files deleted in the working tree
done | tar -c --null -T - | tar -x -C "$TMP/src"
(cd "$TMP/src" && quiet "$PY" -m pip wheel --no-deps -w "$TMP/dist" .)
wheel=$(ls "$TMP"/dist/spnas-*.whl)
"$PY" - "$wheel" <<'EOF' || fail "wheel contents"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = ["spnas/configs/smoke.py", "spnas/configs/default.py",
        "spnas/tables/shipped/smoke_cpu.json", "spnas/tables/shipped/embedded_cpu.json"]
missing = [n for n in need if n not in names]
stray = sorted({n.split("/")[0] for n in names} - {"spnas"} - {n.split("/")[0] for n in names
                                                           if ".dist-info/" in n})
assert not missing and not stray, f"missing {missing}, stray top-level {stray}"
EOF

step "installing $(basename "$wheel") into a fresh venv (pip cache: $("$PY" -m pip cache dir 2>/dev/null || echo off))"
"$PY" -m venv "$TMP/venv"
V=$TMP/venv/bin
quiet "$V/python" -m pip install "$wheel"

mkdir "$TMP/run" && cd "$TMP/run"  # outside the repository: only the installed package is seen
export TF_CPP_MIN_LOG_LEVEL=3 KERAS_BACKEND=tensorflow
where=$("$V/python" -c 'import spnas; print(spnas.__file__)')
case "$where" in "$TMP/venv/"*) ;; *) fail "spnas imported from $where, not the venv" ;; esac
config=$("$V/python" -c 'from spnas.configs_path import default_config_path as p; print(p("smoke.py"))')
case "$config" in "$TMP/venv/"*) ;; *) fail "smoke config at $config, not in the venv" ;; esac

step "spnas-search with the shipped smoke config"
quiet "$V/spnas-search" --config="$config" --workdir="$TMP/w" || fail "spnas-search"
[ -s "$TMP/w/arch.json" ] || fail "no arch.json in the search's workdir"

step "spnas-latency predict with the shipped table smoke_cpu, by name"
"$V/spnas-latency" predict --table=smoke_cpu --arch="$TMP/w/arch.json" > "$log" 2>&1 \
  || { tail -n 20 "$log"; fail "spnas-latency predict"; }
grep '^predicted_ms: ' "$log" || { tail -n 20 "$log"; fail "no predicted_ms line"; }

step "OK"
