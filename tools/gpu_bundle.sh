#!/usr/bin/env bash
# Makes .gpucheck/bundle.tar.xz (git ignores .gpucheck) from the GPU build in the
# cache (make test-gpu-build), for tools/gpu_check.sh on a GPU machine that has
# none of Debian's libraries: run it here, then carry .gpucheck there.
# caffe/bin/caffe.bin, caffe/lib/ (libcaffe + every library ldd names but glibc,
# libstdc++, libgcc_s, libcuda and the cuBLAS/cuBLASLt/cuRAND wheels), caffe/compat/
# (this machine's glibc, libstdc++, libgcc_s and loader: used only when the host's are too old).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpucheck && cd .gpucheck
grep -qx '/.gpucheck/' ../.git/info/exclude 2>/dev/null || echo '/.gpucheck/' >> ../.git/info/exclude
# The build without cuDNN is the one that loads anywhere; the cuDNN build's
# binary and libcaffe go in cudnn/ (same libraries, plus the machine's cuDNN).
ROOT=${CAFFE_MLIC_GPU_ROOT:-$HOME/.cache/caffe-mlic/caffe-9.0.2-gpu-nocudnn}
CUDNN_ROOT=${CAFFE_MLIC_GPU_CUDNN_ROOT:-$HOME/.cache/caffe-mlic/caffe-9.0.2-gpu}
STAGE=$(mktemp -d /tmp/gpubundle.XXXXXX); B=$STAGE/caffe
mkdir -p "$B/bin" "$B/lib" "$B/compat"
cp -L "$ROOT/build/tools/caffe.bin" "$B/bin/"
cp -L "$ROOT/build/lib/libcaffe.so.1.0.0-rc3" "$B/lib/"
ln -s libcaffe.so.1.0.0-rc3 "$B/lib/libcaffe.so"
ELFS=("$B/bin/caffe.bin" "$B/lib/libcaffe.so.1.0.0-rc3")
if [[ -f $CUDNN_ROOT/.caffe-mlic-stamp ]]; then
  mkdir -p "$B/cudnn/bin" "$B/cudnn/lib"
  cp -L "$CUDNN_ROOT/build/tools/caffe.bin" "$B/cudnn/bin/"
  cp -L "$CUDNN_ROOT/build/lib/libcaffe.so.1.0.0-rc3" "$B/cudnn/lib/"
  ln -s libcaffe.so.1.0.0-rc3 "$B/cudnn/lib/libcaffe.so"
  ELFS+=("$B/cudnn/bin/caffe.bin" "$B/cudnn/lib/libcaffe.so.1.0.0-rc3")
else
  echo "no cuDNN build in $CUDNN_ROOT: the bundle times Caffe's own convolutions only" >&2
fi
glibc='^(linux-vdso\.so|libc\.so|libm\.so|libpthread\.so|libdl\.so|librt\.so|libresolv\.so|libutil\.so|ld-linux-x86-64\.so)'
compat='^(libstdc\+\+\.so|libgcc_s\.so)'
remote='^(libcuda\.so|libcublas\.so|libcublasLt\.so|libcurand\.so|libcudnn)'
{ ldd "$ROOT/build/tools/caffe.bin"; ldd "$ROOT/build/lib/libcaffe.so.1.0.0-rc3"; } \
  | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3} $1 ~ /^\/.*ld-linux/ {print "ld-linux-x86-64.so.2", $1}' | sort -u |
while read -r name path; do
  if [[ $name =~ $remote ]]; then echo "remote: $name ($path)"; continue; fi
  if [[ $name =~ $glibc || $name =~ $compat ]]; then cp -L "$path" "$B/compat/$name"; continue; fi
  cp -L "$path" "$B/lib/$name"
done
chmod 755 "$B"/lib/* "$B"/compat/* "${ELFS[@]}"
strip --strip-unneeded "${ELFS[@]}"
# The build's RUNPATHs name this machine's wheel folder and toolkit: keep only
# $ORIGIN/../lib (and for cudnn/, the shared lib/ beside it; no longer than
# before, NUL-padded in .dynstr), so that on the GPU machine the CUDA libraries
# come from LD_LIBRARY_PATH alone, and `ldd` here shows it.
python3 - "${ELFS[@]}" <<'PY'
import re, subprocess, sys
for f in sys.argv[1:]:
    out = subprocess.run(['readelf', '-d', f], capture_output=True, text=True).stdout
    rp = re.search(r'\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*)\]', out).group(1).encode()
    data = open(f, 'rb').read()
    assert data.count(rp + b'\0') == 1, (f, rp)
    keep = b'$ORIGIN/../lib:$ORIGIN/../../lib' if '/cudnn/' in f else b'$ORIGIN/../lib'
    assert len(keep) <= len(rp), (f, rp)
    open(f, 'wb').write(data.replace(rp + b'\0', keep + b'\0' * (len(rp) - len(keep) + 1)))
    print(f, ':', rp.decode(), '->', keep.decode(), file=sys.stderr)
PY
readelf -d "${ELFS[@]}" | grep -E 'RUNPATH|RPATH'
{ echo "GPU build: $ROOT (stamp $(cat "$ROOT/.caffe-mlic-stamp"))"
  [[ ! -d $B/cudnn ]] || echo "cuDNN build (cudnn/): $CUDNN_ROOT (stamp $(cat "$CUDNN_ROOT/.caffe-mlic-stamp"))"; echo "made $(date -u +%FT%TZ) on $(. /etc/os-release; echo "$PRETTY_NAME"), $(ldd --version | head -1)";
  (cd "$B" && find . -type f -o -type l | sort | while read -r f; do printf '%10s  %s\n' "$(stat -Lc %s "$f")" "$f"; done); } > "$B/MANIFEST.txt"
tar -C "$STAGE" -cf - caffe | xz -T2 -9e > bundle.tar.xz.part
mv bundle.tar.xz.part bundle.tar.xz
sha256sum bundle.tar.xz > bundle.sha256
cp "$B/MANIFEST.txt" MANIFEST.txt
du -sh "$B" "$B/lib" "$B/compat"; ls -la bundle.tar.xz
rm -rf "$STAGE"
