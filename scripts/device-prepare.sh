#!/usr/bin/env bash
# Build, here, everything the GPU checks run, into the git-ignored .device/
# (no build happens on the device machine):
#   bash scripts/device-prepare.sh
# then one device call (see scripts/device-run.sh), carrying .device:
#   command: bash scripts/device-run.sh      carry: [".device"]
# The tests have this checkout's absolute paths compiled in (data files,
# the mlmx command); device-run.sh links that path to the copy there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
b=.device/build
rm -rf .device && mkdir -p $b
cmake -S . -B $b -G Ninja -DCMAKE_BUILD_TYPE=Release -DMLMX_CUDA=ON \
  -DMLMX_CUDA_ARCHS="90-real;90-virtual" -DMLMX_MPI=OFF >/dev/null
ninja -C $b
# keep what the device runs: every test program (small: they link
# libmlmx.so, which holds the library and its device code once), the
# benchmarks and the command
find $b -mindepth 1 -maxdepth 1 ! -name 'test_*' ! -name 'bench_*' ! -name 'mlmx' \
  ! -name 'libmlmx.so*' \
  -exec rm -rf {} +
strip --strip-unneeded $b/test_* $b/bench_* $b/mlmx 2>/dev/null || true
echo "$root" > .device/source_dir
bash ../shared/device/pack-libs.sh .device/libs.tar.xz $b/test_* $b/bench_* $b/mlmx
# the executables travel compressed too (tree + carry must stay under 64 MiB)
XZ_OPT=-T0 tar -cJf .device/build.tar.xz -C .device build && rm -rf $b
du -sh .device/*
size=$(du -cb .device/*.tar.xz | tail -1 | cut -f1)
if [ "$size" -gt $((60 * 1024 * 1024)) ]; then
  echo "device-prepare: .device is $((size / 1048576)) MiB, over the 64 MiB carry limit's margin" >&2
  exit 1
fi
