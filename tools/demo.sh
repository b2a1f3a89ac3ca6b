#!/usr/bin/env bash
# `make demo`: the largest part of the pipeline that works end to end today.
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=.venv/bin/caffe-mlic
OUT=${DEMO_DIR:-demo_run}
echo "== caffe-mlic doctor"
$CLI doctor
echo
echo "== generating the release nets into $OUT/prototxt"
$CLI netgen -o "$OUT/prototxt" >/dev/null && ls -R "$OUT/prototxt"
echo
echo "Not in the demo yet: synthetic data, proposals, teacher training, distillation"
echo "and evaluation (open issues)."
