#!/usr/bin/env bash
# Build (or reuse) CPU-only Caffe with Python layers from the brocolli-caffe
# source distribution on PyPI. Idempotent: a cached build whose inputs (the
# pinned sdist and the Makefile.config we generate) are unchanged is reused.
#
# With --gpu (or CAFFE_MLIC_GPU=1) the same sdist is built with CUDA into its
# own folder with its own stamp; the CPU build is untouched. The nvcc of
# CUDA_HOME (default /usr/local/cuda), 12.x or 13.x, decides the CUDA libraries
# and default architectures. cuBLAS and cuRAND come from the toolkit when it has
# them, else from pinned PyPI wheels unpacked into the cache; cuDNN (8 or newer)
# from the system when it has one, else from the pinned cuDNN 9 wheel;
# CAFFE_MLIC_CUDNN=0 builds without. Folders: caffe-VERSION-gpu (CUDA 13 with
# cuDNN), -gpu-nocudnn, -gpu-cuda12, -gpu-cuda12-nocudnn (tools/caffe-patches/gpu/).
#
# Usage: tools/build_caffe.sh [--gpu] [--config-only] [CACHE_DIR]    (prints the Caffe root on stdout)
set -euo pipefail

GPU=${CAFFE_MLIC_GPU:-0}
CONFIG_ONLY=0
while [[ ${1:-} == --* ]]; do
  case $1 in
    --gpu) GPU=1 ;;
    --config-only) CONFIG_ONLY=1 ;;   # print the build folder and its Makefile.config; build nothing
    *) echo "[caffe] unknown option $1 (--gpu, --config-only)" >&2; exit 2 ;;
  esac
  shift
done
[[ $GPU == 0 || $GPU == 1 ]] || { echo "[caffe] CAFFE_MLIC_GPU must be 0 or 1, not '$GPU'" >&2; exit 2; }

CAFFE_VERSION=9.0.2
CAFFE_SHA256=c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a
PY=${CAFFE_MLIC_PYTHON:-/usr/bin/python3}
CACHE=${1:-${CAFFE_MLIC_CACHE:-$HOME/.cache/caffe-mlic}}
SDIST=brocolli-caffe-$CAFFE_VERSION.tar.gz
ROOT=$CACHE/caffe-$CAFFE_VERSION
CUDNN=${CAFFE_MLIC_CUDNN:-1}
[[ $CUDNN == 0 || $CUDNN == 1 ]] || { echo "[caffe] CAFFE_MLIC_CUDNN must be 0 or 1, not '$CUDNN'" >&2; exit 2; }
JOBS=${CAFFE_MLIC_JOBS:-$(( $(nproc) + 1 ))}

log() { echo "[caffe] $*" >&2; }
mkdir -p "$CACHE"

# The CUDA libraries from PyPI, pinned for each CUDA major the build takes
# (the toolkit may ship without them): "spec file sha256 prefix", the prefix
# being the wheel's folder that holds include/ and lib/. The wheels hold only
# versioned files (libcublas.so.13, ...) with an $ORIGIN runpath: the
# unversioned links the linker wants (-lcublas ...) are made beside them.
CUDA13_WHEELS=(
  "nvidia-cublas==13.0.2.14 nvidia_cublas-13.0.2.14-py3-none-manylinux_2_27_x86_64.whl 0cf238ffdbe46c00cb9aa98e7bca745c223a5ca5a53e686ac8b3e5a08fe80d6c nvidia/cu13/"
  "nvidia-curand==10.4.0.35 nvidia_curand-10.4.0.35-py3-none-manylinux_2_27_x86_64.whl 1aee33a5da6e1db083fe2b90082def8915f30f3248d5896bcec36a579d941bfc nvidia/cu13/"
)
CUDA13_LINKS="libcublas.so:libcublas.so.13 libcublasLt.so:libcublasLt.so.13 libcurand.so:libcurand.so.10"
CUDA12_WHEELS=(
  "nvidia-cublas-cu12==12.9.1.4 nvidia_cublas_cu12-12.9.1.4-py3-none-manylinux_2_27_x86_64.whl 453611eb21a7c1f2c2156ed9f3a45b691deda0440ec550860290dc901af5b4c2 nvidia/cublas/"
  "nvidia-curand-cu12==10.3.10.19 nvidia_curand_cu12-10.3.10.19-py3-none-manylinux_2_27_x86_64.whl 49b274db4780d421bd2ccd362e1415c13887c53c214f0d4b761752b8f9f6aa1e nvidia/curand/"
)
CUDA12_LINKS="libcublas.so:libcublas.so.12 libcublasLt.so:libcublasLt.so.12 libcurand.so:libcurand.so.10"
# cuDNN 9 (Caffe's cuDNN layers patched for cuDNN 8+: gpu/0005-cudnn8.patch).
CUDNN13_WHEELS=(
  "nvidia-cudnn-cu13==9.27.0.42 nvidia_cudnn_cu13-9.27.0.42-py3-none-manylinux_2_27_x86_64.whl 9677e76f21862eb5da7ee5ed69d544738b2d8b5c3ce7e5ec125c5592e6cdbdc8 nvidia/cudnn/"
)
CUDNN12_WHEELS=(
  "nvidia-cudnn-cu12==9.27.0.42 nvidia_cudnn_cu12-9.27.0.42-py3-none-manylinux_2_27_x86_64.whl 0a4aa3a7d2264256506c6857fc41fc0c499982f78d70195b1cfcc9055c1957cd nvidia/cudnn/"
)
CUDNN_LINKS="libcudnn.so:libcudnn.so.9"

# wheel_libs DIR WHAT LINKS WHEEL...: DIR holds the wheels' include/ and lib/
# (downloaded, checked and unpacked unless DIR already holds these ones).
wheel_libs() {
  local dir=$1 what=$2 links=$3; shift 3
  local want w spec file sha prefix link
  # What the stamp and the cache record: spec, file and hash of each wheel.
  want=$(for w in "$@"; do read -r spec file sha prefix <<<"$w"; echo "$spec $file $sha"; done; echo "$links")
  [[ -f $dir/.caffe-mlic-wheels && $(cat "$dir/.caffe-mlic-wheels") == "$want" ]] && return
  log "downloading $what from PyPI into $dir"
  rm -rf "$dir" "$dir.tmp"; mkdir -p "$dir.tmp/wheels"
  for w in "$@"; do
    read -r spec file sha prefix <<<"$w"
    "${CAFFE_MLIC_PIP:-pip3}" download --quiet --no-deps --only-binary :all: --no-cache-dir "$spec" -d "$dir.tmp/wheels"
    echo "$sha  $dir.tmp/wheels/$file" | sha256sum -c --quiet - \
      || { log "sha256 mismatch for $file: refusing to use it"; rm -rf "$dir.tmp"; exit 1; }
    "$PY" - "$dir.tmp/wheels/$file" "$dir.tmp" "$prefix" <<'PY'
import os, shutil, sys, zipfile
wheel, out_dir, prefix = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for m in z.infolist():
        if m.filename.startswith(prefix) and not m.is_dir():
            out = os.path.join(out_dir, m.filename[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(m) as src, open(out, 'wb') as dst:
                shutil.copyfileobj(src, dst)
            os.chmod(out, 0o755 if '.so' in m.filename else 0o644)
PY
    rm -f "$dir.tmp/wheels/$file"
  done
  rm -rf "$dir.tmp/wheels"
  for link in $links; do
    [[ -f $dir.tmp/lib/${link#*:} ]] || { log "the wheels lack lib/${link#*:}"; exit 1; }
    ln -sfn "${link#*:}" "$dir.tmp/lib/${link%%:*}"
  done
  echo "$want" > "$dir.tmp/.caffe-mlic-wheels"
  mv "$dir.tmp" "$dir"
}

# The major version (e.g. 9) of the cuDNN whose cudnn_version.h is in $1, or "".
cudnn_major() {
  sed -n 's/^#define CUDNN_MAJOR[[:space:]]*\([0-9]*\).*/\1/p' "$1/cudnn_version.h" 2>/dev/null | head -1
}

# Sets CUDA_DIR, CUDA_MAJOR, CUDA_ARCH_DEFAULT, CUDA_LIBS_INC, CUDA_LIBS_LIB,
# CUDNN_INC, CUDNN_LIB and CUDA_LIBS_ID (what the stamp records of them).
cuda_setup() {
  CUDA_DIR=${CUDA_HOME:-/usr/local/cuda}
  [[ -x $CUDA_DIR/bin/nvcc ]] \
    || { log "no nvcc at $CUDA_DIR/bin/nvcc: install the CUDA toolkit (12.x or 13.x) or set CUDA_HOME"; exit 1; }
  CUDA_MAJOR=$("$CUDA_DIR/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
  local cudnn_wheels links
  case $CUDA_MAJOR in
    13) # CUDA 13 compiles for Turing (sm_75) and newer only.
        CUDA_ARCH_DEFAULT="-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90"
        CUDA_LIBS_DIR=$CACHE/cuda-libs; links=$CUDA13_LINKS; cudnn_wheels=("${CUDNN13_WHEELS[@]}") ;;
    12) # Pascal (P100, sm_60) and Volta (V100, sm_70) too.
        CUDA_ARCH_DEFAULT="-gencode arch=compute_60,code=sm_60 -gencode arch=compute_70,code=sm_70 -gencode arch=compute_75,code=sm_75 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90"
        CUDA_LIBS_DIR=$CACHE/cuda12-libs; links=$CUDA12_LINKS; cudnn_wheels=("${CUDNN12_WHEELS[@]}") ;;
    *)  log "nvcc in $CUDA_DIR is CUDA ${CUDA_MAJOR:-of unknown version}: this build takes CUDA 12 or 13 (set CUDA_HOME)"; exit 1 ;;
  esac
  if [[ -f $CUDA_DIR/include/cublas_v2.h && -f $CUDA_DIR/include/curand.h ]] \
     && ls "$CUDA_DIR"/lib64/libcublas.so "$CUDA_DIR"/lib64/libcurand.so >/dev/null 2>&1; then
    log "cuBLAS and cuRAND from the toolkit in $CUDA_DIR"
    CUDA_LIBS_INC=$CUDA_DIR/include CUDA_LIBS_LIB=$CUDA_DIR/lib64 CUDA_LIBS_ID=toolkit
  else
    local -n wheels=CUDA${CUDA_MAJOR}_WHEELS
    wheel_libs "$CUDA_LIBS_DIR" "cuBLAS and cuRAND for CUDA $CUDA_MAJOR (about 550 MB; 700 MB unpacked)" \
      "$links" "${wheels[@]}"
    CUDA_LIBS_INC=$CUDA_LIBS_DIR/include CUDA_LIBS_LIB=$CUDA_LIBS_DIR/lib
    CUDA_LIBS_ID=$(cat "$CUDA_LIBS_DIR/.caffe-mlic-wheels")
  fi
  CUDNN_INC= CUDNN_LIB=
  [[ $CUDNN == 1 ]] || return 0
  local d lib
  for d in "$CUDA_DIR/include" /usr/include "/usr/include/$multiarch"; do
    [[ $(cudnn_major "$d") -ge 8 ]] 2>/dev/null || continue
    for lib in "$CUDA_DIR/lib64" "/usr/lib/$multiarch" /usr/lib; do
      if [[ -e $lib/libcudnn.so ]]; then
        log "cuDNN $(cudnn_major "$d") from $d and $lib"
        CUDNN_INC=$d CUDNN_LIB=$lib; CUDA_LIBS_ID+=" cudnn:system"; return 0
      fi
    done
  done
  wheel_libs "$CACHE/cudnn-cu$CUDA_MAJOR" "cuDNN 9 for CUDA $CUDA_MAJOR (about 540 MB; 930 MB unpacked)" \
    "$CUDNN_LINKS" "${cudnn_wheels[@]}"
  CUDNN_INC=$CACHE/cudnn-cu$CUDA_MAJOR/include CUDNN_LIB=$CACHE/cudnn-cu$CUDA_MAJOR/lib
  CUDA_LIBS_ID+=" $(cat "$CACHE/cudnn-cu$CUDA_MAJOR/.caffe-mlic-wheels")"
}

multiarch=$(gcc -print-multiarch)
pyver=$($PY -c 'import sys; print("%d.%d" % sys.version_info[:2])')
numpy_inc=$($PY -c 'import numpy; print(numpy.get_include())')
config=$(cat <<CFG
# Generated by caffe-mlic tools/build_caffe.sh; edits are overwritten.
CPU_ONLY := 1
USE_OPENCV := 0
USE_LEVELDB := 0
USE_LMDB := 1
BLAS := open
BLAS_INCLUDE := /usr/include/$multiarch/openblas-pthread
PYTHON_LIBRARIES := boost_python${pyver/./} python$pyver
PYTHON_INCLUDE := /usr/include/python$pyver $numpy_inc
PYTHON_LIB := /usr/lib/$multiarch
WITH_PYTHON_LAYER := 1
INCLUDE_DIRS := \$(PYTHON_INCLUDE) /usr/local/include /usr/include/hdf5/serial
LIBRARY_DIRS := \$(PYTHON_LIB) /usr/local/lib /usr/lib /usr/lib/$multiarch/hdf5/serial
BUILD_DIR := build
DISTRIBUTE_DIR := distribute
Q ?= @
CFG
)
# Our fixes to the sdist (tools/caffe-patches/*.patch) are part of the inputs.
PATCH_DIR=$(cd "$(dirname "$0")" && pwd)/caffe-patches
PATCHES=("$PATCH_DIR"/*.patch)
if [[ $GPU == 1 ]]; then
  # The GPU build: CUDA's nvcc, cuBLAS and cuRAND; the CUDA-only fixes in gpu/.
  # Each CUDA major and cuDNN choice is a build of its own, side by side:
  # caffe-V-gpu (CUDA 13, cuDNN), caffe-V-gpu-nocudnn, caffe-V-gpu-cuda12, ...
  cuda_setup
  ROOT+=-gpu
  [[ $CUDA_MAJOR == 13 ]] || ROOT+=-cuda$CUDA_MAJOR
  [[ $CUDNN == 1 ]] || ROOT+=-nocudnn
  cuda_arch=${CAFFE_MLIC_CUDA_ARCH:-$CUDA_ARCH_DEFAULT}
  config=$(echo "$config" | grep -vx 'CPU_ONLY := 1')
  if [[ $CUDNN == 1 ]]; then
    config+=$(cat <<CFG

# GPU build (tools/build_caffe.sh --gpu): CUDA $CUDA_MAJOR with cuDNN (Caffe's
# cuDNN layers patched for cuDNN 8+), rpaths to the CUDA and cuDNN libraries.
CUDA_DIR := $CUDA_DIR
CUDA_ARCH := $cuda_arch
USE_CUDNN := 1
INCLUDE_DIRS += $CUDA_LIBS_INC $CUDNN_INC
LIBRARY_DIRS += $CUDA_LIBS_LIB $CUDNN_LIB
LDFLAGS := -Wl,-rpath,$CUDA_LIBS_LIB -Wl,-rpath,$CUDNN_LIB -Wl,-rpath,$CUDA_DIR/lib64
CFG
)
    # CUDA 13 keeps Thrust and CUB, which Caffe's cuDNN layers include from
    # C++ files (not only from nvcc's), under include/cccl.
    [[ ! -d $CUDA_DIR/include/cccl ]] || config+=$'\n'"INCLUDE_DIRS += $CUDA_DIR/include/cccl"
  else
    # (This text is the one the no-cuDNN build has always had: a cached one
    # stays current.)
    config+=$(cat <<CFG

# GPU build (tools/build_caffe.sh --gpu): CUDA $CUDA_MAJOR, no cuDNN (Caffe 1.0's
# cuDNN calls are gone from cuDNN 8+), an rpath to the CUDA libraries.
CUDA_DIR := $CUDA_DIR
CUDA_ARCH := $cuda_arch
USE_CUDNN := 0
INCLUDE_DIRS += $CUDA_LIBS_INC
LIBRARY_DIRS += $CUDA_LIBS_LIB
LDFLAGS := -Wl,-rpath,$CUDA_LIBS_LIB -Wl,-rpath,$CUDA_DIR/lib64
CFG
)
  fi
  PATCHES+=("$PATCH_DIR"/gpu/*.patch)
  stamp=$( { echo "$CAFFE_SHA256"; echo "$config"; cat "${PATCHES[@]}"; echo "$CUDA_LIBS_ID"; } | sha256sum | cut -c1-64)
else
  stamp=$( { echo "$CAFFE_SHA256"; echo "$config"; cat "$PATCH_DIR"/*.patch; } | sha256sum | cut -c1-64)
fi

if [[ $CONFIG_ONLY == 1 ]]; then
  echo "$ROOT"; echo "$config"; exit 0
fi
if [[ -f $ROOT/.caffe-mlic-stamp && $(cat "$ROOT/.caffe-mlic-stamp") == "$stamp" ]]; then
  log "cached build is current: $ROOT"
  echo "$ROOT"; exit 0
fi

if [[ ! -f $CACHE/$SDIST ]] || ! echo "$CAFFE_SHA256  $CACHE/$SDIST" | sha256sum -c --quiet - 2>/dev/null; then
  log "downloading $SDIST from PyPI"
  tmp=$(mktemp -d "$CACHE/dl.XXXXXX")
  pip=${CAFFE_MLIC_PIP:-pip3}
  # --no-build-isolation: pip only prepares metadata, with the setuptools we have.
  "$pip" download --quiet --no-deps --no-binary :all: --no-build-isolation \
    "brocolli-caffe==$CAFFE_VERSION" -d "$tmp"
  mv "$tmp/$SDIST" "$CACHE/$SDIST.part"; rm -rf "$tmp"
  echo "$CAFFE_SHA256  $CACHE/$SDIST.part" | sha256sum -c --quiet - \
    || { log "sha256 mismatch for $SDIST: refusing to build"; rm -f "$CACHE/$SDIST.part"; exit 1; }
  mv "$CACHE/$SDIST.part" "$CACHE/$SDIST"
fi

# A tree unpacked from this sdist with this config is resumed (make is
# incremental); anything else is unpacked afresh.
if [[ -f $ROOT/.caffe-mlic-sdist && $(cat "$ROOT/.caffe-mlic-sdist") == "$CAFFE_SHA256" \
      && -f $ROOT/Makefile.config && $(cat "$ROOT/Makefile.config") == "$config" ]]; then
  log "resuming the build in $ROOT"
else
  log "building Caffe $CAFFE_VERSION in $ROOT with $JOBS jobs ($( [[ $GPU == 1 ]] && echo "GPU build: 15-25 min" || echo "5-8 min") on 2 cores)"
  rm -rf "$ROOT" "$ROOT.tmp"; mkdir -p "$ROOT.tmp"
  tar xzf "$CACHE/$SDIST" -C "$ROOT.tmp" --strip-components=1
  echo "$config" > "$ROOT.tmp/Makefile.config"
  echo "$CAFFE_SHA256" > "$ROOT.tmp/.caffe-mlic-sdist"
  mv "$ROOT.tmp" "$ROOT"
fi
for p in "${PATCHES[@]}"; do
  # Skip a patch that is already in the tree (a resumed build).
  if ! patch -d "$ROOT" -p1 -R --dry-run -s -f < "$p" >/dev/null 2>&1; then
    log "applying ${p#"$PATCH_DIR"/}"
    patch -d "$ROOT" -p1 -s -f < "$p" >&2
  fi
done
( cd "$ROOT" && make -j"$JOBS" all pycaffe >"$ROOT/build.log" 2>&1 ) \
  || { tail -40 "$ROOT/build.log" >&2; log "build failed; full log: $ROOT/build.log"; exit 1; }
# The sdist's Makefile builds into .temp_release but gives _caffe.so the rpath
# $ORIGIN/../../build/lib; this link makes that rpath resolve.
ln -sfn .temp_release "$ROOT/build"
echo "$stamp" > "$ROOT/.caffe-mlic-stamp"
log "built: $ROOT"
echo "$ROOT"
