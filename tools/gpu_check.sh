#!/usr/bin/env bash
# One self-contained check of the CUDA build of Caffe on a GPU machine that has
# no Debian dev libraries and no network: run from the repo root, with the
# bundle in .gpucheck/ (made on the build machine: the GPU build's caffe.bin and
# libcaffe.so plus every library they need but glibc, libstdc++, libgcc, the
# CUDA driver and the cuBLAS/cuRAND wheels, which are found in the machine's
# python3 site-packages, nvidia/cu13/lib, at run time).
#
# Make the bundle first, on the build machine: make test-gpu-build && tools/gpu_bundle.sh
#
# It prints the GPU (nvidia-smi), `caffe device_query -gpu 0`, the per-iteration
# forward/backward times of `caffe time` for (a) VGG16 conv1_1..fc8 at 224 px,
# batch 32 and (b) the release teacher's trunk, VGG16 conv1_1..conv5_3 at
# 672 px, batch 8, (b) again with the cuDNN build, with cuDNN and with every
# convolution's `engine: CAFFE` (when the machine has a libcudnn.so.9), and
# compares `caffe train` (20 SGD iterations, fixed seed, a small conv net on
# DummyData) in CPU and GPU mode, iteration by iteration.
#
#   tools/gpu_check.sh                 # on the GPU machine (about 1-2 minutes)
#   GPU_CHECK_CPU=1 tools/gpu_check.sh # anywhere: the same commands in CPU mode, tiny sizes
#
# Env: OUT (also write gpu_check.log and the raw Caffe logs there),
# GPU_CHECK_ITERS (caffe time iterations, 10), GPU_CHECK_CUDA_LIBS (folders,
# colon-separated, searched first for libcublas.so.13, libcublasLt.so.13,
# libcurand.so.10 and libcudnn.so.9),
# GPU_CHECK_NATIVE=1 / GPU_CHECK_COMPAT=1 (force the host's or the bundled
# glibc/libstdc++). Exit status: 0 when every step passed.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CPU=${GPU_CHECK_CPU:-0}
ITERS=${GPU_CHECK_ITERS:-10}
BUNDLE=$REPO/.gpucheck/bundle.tar.xz
# Every step's timeout is also cut to what is left of this budget (seconds).
BUDGET=${GPU_CHECK_BUDGET:-225}
export USER=${USER:-$(id -un 2>/dev/null || echo root)}  # glog asks for it (no NSS lookups)

main() {
  local t0=$SECONDS
  DEADLINE=$((SECONDS + BUDGET))
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpucheck.XXXXXX")
  LOGS=$WORK/logs; mkdir -p "$LOGS"
  trap 'rm -rf "$WORK"' EXIT
  FAILED=()
  echo "== gpu_check: $(date -u +%FT%TZ) $(uname -m) $( . /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}")," \
       "host glibc $(getconf GNU_LIBC_VERSION 2>/dev/null | cut -d' ' -f2), mode $([[ $CPU == 1 ]] && echo CPU || echo GPU)"

  # ---- the bundle
  [[ -f $BUNDLE ]] || { echo "no $BUNDLE: carry .gpucheck"; exit 1; }
  if [[ -f $REPO/.gpucheck/bundle.sha256 ]]; then
    (cd "$REPO/.gpucheck" && sha256sum -c --quiet bundle.sha256) || { echo "bundle.tar.xz: sha256 mismatch"; exit 1; }
  fi
  if command -v xz >/dev/null 2>&1; then
    tar -xJf "$BUNDLE" -C "$WORK"
  else  # no xz(1): Python's lzma
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' "$BUNDLE" "$WORK"
  fi
  B=$WORK/caffe
  BIN=$B/bin/caffe.bin
  echo "bundle unpacked into $B ($(du -sh "$B" | cut -f1)) in $((SECONDS - t0)) s"

  # ---- the CUDA libraries (cuBLAS, cuBLASLt, cuRAND) from the host
  local cuda_dir
  cuda_dir=$(find_cuda_libs) || { echo "FAIL: no libcublas.so.13/libcublasLt.so.13/libcurand.so.10 found"; FAILED+=(cuda-libs); }
  # The host's own LD_LIBRARY_PATH last: containers often put libcuda.so.1 there.
  LDP=$B/lib${cuda_dir:+:$cuda_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  echo "CUDA libraries: ${cuda_dir:-none found}"
  timeout 30 python3 - <<'PY' 2>/dev/null || true
from importlib import metadata
have = []
for d in ('nvidia-cublas', 'nvidia-cublas-cu13', 'nvidia-curand', 'nvidia-curand-cu13', 'nvidia-cuda-runtime',
          'nvidia-cuda-runtime-cu13', 'torch'):
    try:
        have.append('%s %s' % (d, metadata.version(d)))
    except Exception:
        pass
print('python3 packages: ' + (', '.join(have) or 'none of nvidia-cublas/-curand/-cuda-runtime/torch'))
PY
  echo "libcuda.so.1 (driver): $( { ldconfig -p 2>/dev/null | grep -m1 'libcuda\.so\.1 ' | sed 's/.*=> //'; } || true)"
  echo "LD_LIBRARY_PATH=$LDP"

  # ---- native (host glibc/libstdc++) or the bundled ones through the bundled loader
  CAFFE=(env LD_LIBRARY_PATH="$LDP" "$BIN")
  local native=0
  if [[ ${GPU_CHECK_COMPAT:-0} == 1 ]]; then
    echo "(GPU_CHECK_COMPAT=1: not tried)" > "$LOGS/version.log"
  elif "${CAFFE[@]}" --version >"$LOGS/version.log" 2>&1 || [[ ${GPU_CHECK_NATIVE:-0} == 1 ]]; then
    native=1
  fi
  if [[ $native == 1 ]]; then
    echo "caffe.bin runs on the host's glibc/libstdc++: $(head -1 "$LOGS/version.log")"
  else
    echo "caffe.bin with the host's glibc/libstdc++:"; head -5 "$LOGS/version.log" | sed 's/^/    /'
    echo "using the bundled ones (compat/, through compat/ld-linux-x86-64.so.2)"
    CAFFE=("$B/compat/ld-linux-x86-64.so.2" --library-path "$B/compat:$LDP" "$BIN")
    if ! "${CAFFE[@]}" --version >"$LOGS/version_compat.log" 2>&1; then
      echo "FAIL: caffe.bin does not load with the bundled glibc either:"; head -5 "$LOGS/version_compat.log" | sed 's/^/    /'
      env LD_LIBRARY_PATH="$LDP" ldd "$BIN" 2>&1 | grep -E 'not found' | sed 's/^/    ldd: /' || true
      exit 1
    fi
    echo "caffe.bin runs with the bundled glibc/libstdc++: $(head -1 "$LOGS/version_compat.log")"
  fi
  env LD_LIBRARY_PATH="$LDP" ldd "$BIN" 2>&1 | grep -Ei 'not found|cublas|curand|cudart|libcuda' | sed 's/^/    ldd: /' || true

  local GPUFLAG=(-gpu 0)
  if [[ $CPU == 1 ]]; then GPUFLAG=(); fi

  # ---- the GPU
  if [[ $CPU != 1 ]]; then
    step nvidia-smi 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    cat "$LOGS/nvidia-smi.log" || true
    step device_query 40 "${CAFFE[@]}" device_query -gpu 0 || true
    grep -E 'Device id|Major revision|Minor revision|^.*Name:|Total global memory|Multiprocessor count|Check failure|error' \
      "$LOGS/device_query.log" | sed 's/^.*\] /    /' || true
  fi

  # ---- caffe time: VGG16 (a) 224 px batch 32 to fc8, (b) 672 px batch 8 to conv5_3
  local na=32 sa=224 nb=8 sb=672
  if [[ $CPU == 1 ]]; then na=1 sa=32 nb=1 sb=64; ITERS=${GPU_CHECK_ITERS:-1}; fi
  vgg16 "$na" "$sa" full > "$WORK/vgg16_full.prototxt"
  vgg16 "$nb" "$sb" trunk > "$WORK/vgg16_trunk.prototxt"
  for spec in "vgg16_full:(a) VGG16 conv1_1..fc8 + softmax loss, ${sa} px, batch $na" \
              "vgg16_trunk:(b) VGG16 conv1_1..conv5_3 (teacher trunk) + sum loss, ${sb} px, batch $nb"; do
    local name=${spec%%:*}
    echo; echo "== caffe time ${spec#*:}, $ITERS iterations"
    if step "time_$name" 75 "${CAFFE[@]}" time -model "$WORK/$name.prototxt" -iterations "$ITERS" "${GPUFLAG[@]}"; then
      timing_summary "$LOGS/time_$name.log"
    fi
  done

  # ---- cuDNN: the cuDNN build (cudnn/ in the bundle) times the teacher trunk
  # with its default engines (cuDNN) and with every convolution set to
  # `engine: CAFFE`, in one run on one card: the conv trunk's speed-up.
  echo; echo "== cuDNN: the teacher trunk (b) with cuDNN convolutions and with Caffe's own, one binary"
  local cudnn_dir
  if [[ ! -x $B/cudnn/bin/caffe.bin ]]; then
    echo "skipped: the bundle has no cuDNN build (make caffe GPU=1, then tools/gpu_bundle.sh)"
  elif ! cudnn_dir=$(find_libs libcudnn.so.9); then
    echo "skipped: no libcudnn.so.9 on this machine (the nvidia-cudnn-cu13 wheel, or a system cuDNN 9)"
  else
    echo "cuDNN: $cudnn_dir$([[ $CPU == 1 ]] && echo " (CPU mode: both runs take Caffe's engines, a check of this step only)")"
    # CAFFE with cuDNN's folder before the library path and the cuDNN binary
    local CUDNN_CAFFE=() arg
    for arg in "${CAFFE[@]}"; do CUDNN_CAFFE+=("${arg/"$LDP"/"$cudnn_dir:$LDP"}"); done
    CUDNN_CAFFE[${#CUDNN_CAFFE[@]}-1]=$B/cudnn/bin/caffe.bin
    vgg16 "$nb" "$sb" trunk CAFFE > "$WORK/vgg16_trunk_caffe_engine.prototxt"
    local ok=1
    step time_trunk_cudnn 75 "${CUDNN_CAFFE[@]}" \
      time -model "$WORK/vgg16_trunk.prototxt" -iterations "$ITERS" "${GPUFLAG[@]}" || ok=0
    step time_trunk_caffe_engine 75 "${CUDNN_CAFFE[@]}" \
      time -model "$WORK/vgg16_trunk_caffe_engine.prototxt" -iterations "$ITERS" "${GPUFLAG[@]}" || ok=0
    if [[ $ok == 1 ]]; then
      echo "  with cuDNN:"; timing_summary "$LOGS/time_trunk_cudnn.log"
      echo "  engine: CAFFE:"; timing_summary "$LOGS/time_trunk_caffe_engine.log"
      local a c
      a=$(sed -n 's/.*Average Forward-Backward: \([0-9.]*\) ms\./\1/p' "$LOGS/time_trunk_cudnn.log")
      c=$(sed -n 's/.*Average Forward-Backward: \([0-9.]*\) ms\./\1/p' "$LOGS/time_trunk_caffe_engine.log")
      [[ -z $a || -z $c || $CPU == 1 ]] || awk -v a="$a" -v c="$c" 'BEGIN { printf "  conv trunk forward+backward: %.1f ms with cuDNN, %.1f ms without: %.2fx (target >= 1.5x)\n", a, c, c / a }'
    fi
  fi

  # ---- caffe train, CPU vs GPU (the same seed, so the same weights and data)
  echo; echo "== caffe train: 20 SGD iterations of a small conv net (DummyData, seed 1701), CPU vs $([[ $CPU == 1 ]] && echo 'CPU (GPU_CHECK_CPU)' || echo GPU)"
  small_net > "$WORK/small_net.prototxt"
  small_solver "$WORK/small_net.prototxt" > "$WORK/small_solver.prototxt"
  local ok=1
  step train_cpu 40 "${CAFFE[@]}" train -solver "$WORK/small_solver.prototxt" || ok=0
  step train_gpu 40 "${CAFFE[@]}" train -solver "$WORK/small_solver.prototxt" "${GPUFLAG[@]}" || ok=0
  if [[ $ok == 1 ]]; then
    compare_train "$LOGS/train_cpu.log" "$LOGS/train_gpu.log" || FAILED+=(train-compare)
  fi

  # ---- our layers' CUDA kernels (numba; the machine's own python3 with numba-cuda):
  # against numpy references, compiled to PTX for sm_75, sm_80, sm_90, timed at release sizes
  echo; echo "== caffe_mlic.gpu.check: our CUDA kernels"
  if [[ $CPU == 1 ]]; then   # (here: the project's venv when there is one)
    local py=python3; [[ ! -x $REPO/.venv/bin/python ]] || py=$REPO/.venv/bin/python
    (cd "$WORK" && NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=$REPO timeout 120 "$py" -m caffe_mlic.gpu.check) \
      || FAILED+=(kernels)
  else
    (cd "$WORK" && PYTHONPATH=$REPO timeout 180 python3 -m caffe_mlic.gpu.check --ptx --time) || FAILED+=(kernels)
  fi

  echo
  if [[ -n ${OUT:-} ]]; then
    mkdir -p "$OUT/gpu_check_raw"; cp "$LOGS"/*.log "$WORK"/*.prototxt "$OUT/gpu_check_raw/"
    echo "raw logs and prototxts: $OUT/gpu_check_raw/"
  fi
  rm -rf "$WORK"
  echo "== gpu_check done in $((SECONDS - t0)) s: $([[ ${#FAILED[@]} == 0 ]] && echo 'all steps passed' || echo "FAILED: ${FAILED[*]}")"
  [[ ${#FAILED[@]} == 0 ]]
}

# step NAME TIMEOUT CMD...: run CMD with glog to stderr, output to $LOGS/NAME.log.
step() {
  local name=$1 limit=$2; shift 2
  local t=$SECONDS rc=0 left=$((DEADLINE - SECONDS))
  if ((left < 10)); then
    echo "FAIL: $name: skipped, the ${BUDGET} s budget is spent"; FAILED+=("$name"); return 1
  fi
  ((limit <= left)) || limit=$left
  GLOG_logtostderr=1 GLOG_minloglevel=0 timeout -k 10 "$limit" "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
  if [[ $rc != 0 ]]; then
    echo "FAIL: $name: exit $rc$([[ $rc == 124 ]] && echo " (timed out after $limit s)") after $((SECONDS - t)) s; its log ends:"
    tail -15 "$LOGS/$name.log" | sed 's/^/    /'
    FAILED+=("$name"); return 1
  fi
  echo "[$name: $((SECONDS - t)) s]"
}

timing_summary() {
  local log=$1
  grep -E 'Initial loss|Average Forward pass|Average Backward pass|Average Forward-Backward|Total Time' "$log" \
    | sed 's/^.*\] /    /' || true
  echo "    per iteration (forward+backward, ms):" \
    $(sed -n 's/.*Iteration: [0-9]* forward-backward time: \([0-9.]*\) ms\./\1/p' "$log")
  echo "    slowest layers (forward / backward, ms per iteration):"
  awk '/\tforward: /{n=$(NF-3); f[n]=$(NF-1)} /\tbackward: /{n=$(NF-3); b[n]=$(NF-1)}
       END{for (k in f) printf "%s %s %s\n", f[k]+b[k], k, f[k] " / " b[k]}' "$log" \
    | sort -gr | head -6 | awk '{printf "      %-10s %s %s %s\n", $2, $3, $4, $5}' || true
}

compare_train() {
  # "Iteration N, loss = X" and "Train net output #k: NAME = V" per displayed iteration.
  local a=$1 b=$2
  extract() { awk '/Iteration [0-9]+.*loss = /{match($0, /Iteration [0-9]+/); it=substr($0, RSTART+10, RLENGTH-10)}
                   /Train net output #/{sub(/.*Train net output #/, ""); split($0, p, " "); print it, p[2], p[4]}' "$1"; }
  extract "$a" > "$WORK/train_a.txt"; extract "$b" > "$WORK/train_b.txt"
  local n; n=$(wc -l < "$WORK/train_a.txt")
  if [[ $n == 0 || $n != $(wc -l < "$WORK/train_b.txt") ]]; then
    echo "FAIL: train outputs differ in count: $n vs $(wc -l < "$WORK/train_b.txt")"; return 1
  fi
  paste -d' ' "$WORK/train_a.txt" "$WORK/train_b.txt" | awk '
    function abs(x) { return x < 0 ? -x : x }
    { d = abs($3 - $6) / (abs($3) > 1e-6 ? abs($3) : 1e-6); if (d > m[$2]) m[$2] = d; last[$2] = $3 " / " $6
      if ($1 % 5 == 0 || $1 == 19) printf "    iter %2d %-8s cpu %-12s other %-12s rel diff %.1e\n", $1, $2, $3, $6, d }
    END { bad = 0
          for (k in m) { printf "    %-8s max rel diff over all iterations %.2e (last %s)\n", k, m[k], last[k]; if (m[k] > 1e-3) bad = 1 }
          if (bad) { print "FAIL: CPU and GPU training differ by more than 1e-3 relative"; exit 1 }
          print "PASS: CPU and GPU training agree within 1e-3 relative (6-digit log values)" }'
}

# The CUDA 13 cuBLAS/cuBLASLt/cuRAND: GPU_CHECK_CUDA_LIBS, then python3's
# site-packages (nvidia/cu13/lib: the nvidia-cublas / nvidia-curand wheels;
# nvidia/*/lib: older layouts), then the toolkit.
find_cuda_libs() {
  local want=(libcublas.so.13 libcublasLt.so.13 libcurand.so.10) d dirs=() found=() w ok
  if [[ -n ${GPU_CHECK_CUDA_LIBS:-} ]]; then IFS=: read -ra dirs <<<"$GPU_CHECK_CUDA_LIBS"; fi
  local py real seen=" "
  for py in python3 python /usr/bin/python3 /usr/local/bin/python3 /opt/conda/bin/python3; do
    py=$(command -v "$py" 2>/dev/null) || continue
    real=$(readlink -f "$py"); [[ $seen != *" $real "* ]] || continue; seen+="$real "
    mapfile -t -O "${#dirs[@]}" dirs < <(timeout 20 "$py" - <<'PY' 2>/dev/null || true
import glob, os, site, sys
bases = []
try:
    bases += site.getsitepackages() + [site.getusersitepackages()]
except Exception:
    pass
bases += [p for p in sys.path if p]
try:  # the namespace package itself, wherever it is
    import nvidia
    bases += [os.path.dirname(p) for p in nvidia.__path__]
except Exception:
    pass
seen = set()
for base in bases:
    for pat in ('nvidia/cu13/lib', 'nvidia/*/lib', 'torch/lib'):
        for d in sorted(glob.glob(os.path.join(base, pat))):
            d = os.path.realpath(d)
            if d not in seen:
                seen.add(d); print(d)
PY
)
  done
  dirs+=(/usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu)
  for w in "${want[@]}"; do
    ok=0
    for d in "${dirs[@]}"; do
      if [[ -e $d/$w ]]; then
        [[ " ${found[*]-} " == *" $d "* ]] || found+=("$d"); ok=1; break
      fi
    done
    [[ $ok == 1 ]] || { echo "find_cuda_libs: $w not found in: ${dirs[*]}" >&2; return 1; }
  done
  local IFS=:; echo "${found[*]}"
}

# find_libs NAME...: the folder (the first of GPU_CHECK_CUDA_LIBS, python3's
# site-packages nvidia/*/lib and torch/lib, the toolkit, ldconfig's) holding NAME.
find_libs() {
  local d dirs=() py
  if [[ -n ${GPU_CHECK_CUDA_LIBS:-} ]]; then IFS=: read -ra dirs <<<"$GPU_CHECK_CUDA_LIBS"; fi
  for py in python3 /usr/bin/python3 /usr/local/bin/python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    mapfile -t -O "${#dirs[@]}" dirs < <(timeout 20 "$py" -c '
import glob, os, site, sys
for base in set(site.getsitepackages() + [p for p in sys.path if p]):
    for pat in ("nvidia/*/lib", "torch/lib"):
        for d in sorted(glob.glob(os.path.join(base, pat))):
            print(os.path.realpath(d))' 2>/dev/null || true)
  done
  dirs+=(/usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu)
  for d in "${dirs[@]}"; do
    if [[ -e $d/$1 ]]; then echo "$d"; return 0; fi
  done
  d=$(ldconfig -p 2>/dev/null | awk -v n="$1" '$1 == n {print $NF; exit}')
  [[ -n $d ]] && dirname "$d"
}

# vgg16 BATCH SIZE full|trunk [ENGINE]: plain VGG16 (ENGINE: every convolution's engine) (conv + ReLU + max pooling; `full`
# adds pool5, fc6-fc8 and a softmax loss on an all-zero label, `trunk` stops at
# relu5_3 with a sum "loss" on conv5_3 so that backward runs). No weights are
# needed by `caffe time`: the default (zero) fillers are used.
vgg16() {
  local n=$1 s=$2 kind=$3 engine=${4:+ engine: $4} bottom=data blk i c
  echo "name: \"vgg16_${kind}_${s}px_b${n}\""
  if [[ $kind == full ]]; then
    echo "layer { name: \"input\" type: \"Input\" top: \"data\" top: \"label\""
    echo "  input_param { shape { dim: $n dim: 3 dim: $s dim: $s } shape { dim: $n } } }"
  else
    echo "layer { name: \"input\" type: \"Input\" top: \"data\""
    echo "  input_param { shape { dim: $n dim: 3 dim: $s dim: $s } } }"
  fi
  local chans=(64 128 256 512 512) reps=(2 2 3 3 3)
  for blk in 1 2 3 4 5; do
    c=${chans[blk-1]}
    for ((i = 1; i <= reps[blk-1]; i++)); do
      echo "layer { name: \"conv${blk}_$i\" type: \"Convolution\" bottom: \"$bottom\" top: \"conv${blk}_$i\""
      echo "  convolution_param { num_output: $c kernel_size: 3 pad: 1$engine } }"
      echo "layer { name: \"relu${blk}_$i\" type: \"ReLU\" bottom: \"conv${blk}_$i\" top: \"conv${blk}_$i\" }"
      bottom=conv${blk}_$i
    done
    if [[ $blk -lt 5 || $kind == full ]]; then
      echo "layer { name: \"pool$blk\" type: \"Pooling\" bottom: \"$bottom\" top: \"pool$blk\""
      echo "  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }"
      bottom=pool$blk
    fi
  done
  if [[ $kind == full ]]; then
    for l in fc6:4096 fc7:4096 fc8:1000; do
      echo "layer { name: \"${l%:*}\" type: \"InnerProduct\" bottom: \"$bottom\" top: \"${l%:*}\""
      echo "  inner_product_param { num_output: ${l#*:} } }"
      bottom=${l%:*}
      if [[ ${l%:*} != fc8 ]]; then
        echo "layer { name: \"relu${l:2:1}\" type: \"ReLU\" bottom: \"$bottom\" top: \"$bottom\" }"
      fi
    done
    echo "layer { name: \"loss\" type: \"SoftmaxWithLoss\" bottom: \"fc8\" bottom: \"label\" top: \"loss\" }"
  else
    echo "layer { name: \"loss\" type: \"Reduction\" bottom: \"$bottom\" top: \"loss\""
    echo "  reduction_param { operation: SUM } loss_weight: 1 }"
  fi
}

# A small net whose data, labels and weights come from the seeded CPU RNG
# (DummyData is refilled on the CPU every iteration in both modes): conv, ReLU,
# max and average pooling, InnerProduct, softmax loss; featsq (sum of squares
# of pool2, not a loss) is a second output printed every iteration.
small_net() {
  cat <<'NET'
name: "gpu_check_small"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param {
    shape { dim: 16 dim: 3 dim: 32 dim: 32 } data_filler { type: "gaussian" std: 1 }
    shape { dim: 16 } data_filler { type: "uniform" min: 0 max: 9.99 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 16 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 32 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  inner_product_param { num_output: 64 weight_filler { type: "xavier" } } }
layer { name: "relu3" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
layer { name: "featsq" type: "Reduction" bottom: "pool2" top: "featsq" reduction_param { operation: SUMSQ } }
NET
}

small_solver() {
  cat <<SOLVER
net: "$1"
base_lr: 0.01
momentum: 0.9
weight_decay: 0.0005
lr_policy: "fixed"
max_iter: 20
display: 1
random_seed: 1701
snapshot_after_train: false
solver_mode: CPU
SOLVER
}

if [[ -n ${OUT:-} ]]; then
  mkdir -p "$OUT"
  main "$@" 2>&1 | tee "$OUT/gpu_check.log"
else
  main "$@"
fi
