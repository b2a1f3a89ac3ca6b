#!/usr/bin/env bash
# Install the Debian packages that Caffe and caffe-mlic need. As root it runs
# apt-get; otherwise it prints the exact command and fails.
set -euo pipefail
PKGS="build-essential cmake libboost-system-dev libboost-thread-dev libboost-filesystem-dev
libboost-python-dev libboost-regex-dev libprotobuf-dev protobuf-compiler libgoogle-glog-dev
libgflags-dev libhdf5-dev liblmdb-dev libleveldb-dev libsnappy-dev libopenblas-dev python3-dev
python3-venv python3-pip python3-numpy python3-protobuf python3-opencv python3-scipy python3-skimage
python3-yaml python3-six python3-tqdm python3-numba python3-matplotlib python3-pytest python3-pil python3-h5py patch chromium
openmpi-bin python3-mpi4py"
missing=()
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
line="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "caffe-mlic needs these Debian packages; as root run:" >&2
  echo "  $line" >&2
  exit 1
fi
echo "[deps] installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
