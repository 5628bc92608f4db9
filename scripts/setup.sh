#!/usr/bin/env bash
# Installs every Debian package that tilepool's build, tests, benchmarks and
# interop checks need. Idempotent: when all are present it does nothing.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config
  libboost1.81-dev libboost-filesystem1.81-dev libboost-system1.81-dev
  libeigen3-dev libcli11-dev nlohmann-json3-dev libfmt-dev
  libgtest-dev googletest libbenchmark-dev
  clang libclang-rt-14-dev
  python3-numpy python3-matplotlib python3-joblib python3-dask
  libopenmpi-dev openmpi-bin
  pybind11-dev python3-dev python3-pytest python3-cloudpickle python3-tqdm
  python3-nbclient python3-nbformat python3-ipykernel
  fuse3 python3-fusepy  # a real FUSE mount for the filesystem tests (tests/support/passthrough_fuse.py)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
else
  sudo=
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
