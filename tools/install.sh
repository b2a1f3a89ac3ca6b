#!/usr/bin/env bash
# `make install`: Debian packages, the venv, Caffe (cached build or $CAFFE_ROOT),
# and our package, editable. Each step is skipped when already done, so a
# second run takes seconds. CAFFE_MLIC_GPU=1 (`make install GPU=1`) builds and
# activates the CUDA build instead; without it the CPU build is (re)activated.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
SYS_PY=/usr/bin/python3

tools/install_deps.sh

if [[ ! -x $VENV/bin/python ]]; then
  echo "[install] creating $VENV from $SYS_PY (--system-site-packages)" >&2
  $SYS_PY -m venv --system-site-packages "$VENV"
fi
# pip reads $VIRTUAL_ENV/pip.conf: pin numpy<2 for every later install too.
printf '[global]\nconstraint = %s\n' "$PWD/constraints.txt" > "$VENV/pip.conf"
# COCO metrics of `eval det` (its one dependency, numpy, is Debian's; a no-op when present).
"$VENV/bin/pip" install --quiet --only-binary pycocotools pycocotools==2.0.10 >&2

if [[ -n ${CAFFE_ROOT:-} ]]; then
  [[ -d $CAFFE_ROOT/python/caffe ]] || { echo "CAFFE_ROOT=$CAFFE_ROOT has no python/caffe (pycaffe)" >&2; exit 1; }
  echo "[install] using the Caffe at CAFFE_ROOT=$CAFFE_ROOT; building nothing" >&2
  root=$(cd "$CAFFE_ROOT" && pwd)
else
  root=$(CAFFE_MLIC_PYTHON=$SYS_PY CAFFE_MLIC_PIP="$VENV/bin/pip" tools/build_caffe.sh)
fi
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [[ ! -f $site/caffe.pth || $(cat "$site/caffe.pth") != "$root/python" ]]; then
  echo "[install] $VENV now uses the Caffe at $root" >&2
  echo "$root/python" > "$site/caffe.pth"
fi

# Our layers' CUDA kernels (caffe_mlic/gpu/) need numba's CUDA target: with the
# GPU build, tools/gpu-requirements.txt (numba-cuda, a numba that keeps numpy
# 1.x); without it, Debian's numba alone (those are removed).
if [[ ${CAFFE_MLIC_GPU:-0} == 1 ]]; then
  if ! "$VENV/bin/python" -c 'import numba_cuda' 2>/dev/null; then
    echo "[install] numba-cuda for our layers' CUDA kernels (GPU build)" >&2
    "$VENV/bin/pip" install --quiet --only-binary :all: -r tools/gpu-requirements.txt >&2
  fi
elif "$VENV/bin/python" -c 'import numba_cuda' 2>/dev/null; then
  echo "[install] removing numba-cuda and its numba (the CPU build uses Debian's numba)" >&2
  "$VENV/bin/pip" uninstall --quiet -y $(grep -o '^[a-z0-9-]*' tools/gpu-requirements.txt) >&2
fi

stamp="$VENV/.caffe-mlic-installed"
want=$(cat setup.py | sha256sum | cut -c1-64)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" || ! -x $VENV/bin/caffe-mlic ]]; then
  echo "[install] installing caffe-mlic (editable) into $VENV" >&2
  "$VENV/bin/pip" install --quiet --no-deps --no-build-isolation -e . >&2
  echo "$want" > "$stamp"
fi
"$VENV/bin/python" -c 'import caffe, caffe_mlic' \
  || { echo "[install] pycaffe or caffe_mlic does not import from $VENV" >&2; exit 1; }
echo "[install] ready: $VENV/bin/caffe-mlic (Caffe at $root)" >&2
