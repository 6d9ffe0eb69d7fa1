#!/usr/bin/env bash
# The one prepared device call (built by scripts/device-prepare.sh; it
# builds nothing): the tests (the gpu-labelled parity tests must pass, not
# skip), compute-sanitizer memcheck and racecheck on the GPU tests, and the
# GPU benchmarks against the 2-thread CPU path in the same run. Output under
# $OUT (at most 8 files): tests.log, sanitizer.log, bench.log, gpu.txt; a
# short table last on stdout.
set -u
OUT=${OUT:-/tmp/mlmx-device-out}
mkdir -p "$OUT" /tmp/devlibs
tar -xJf .device/libs.tar.xz -C /tmp/devlibs
tar -xJf .device/build.tar.xz -C .device
export LD_LIBRARY_PATH=/tmp/devlibs:$PWD/.device/build:${LD_LIBRARY_PATH:-}
src=$(cat .device/source_dir)
if [ "$src" != "$PWD" ] && [ ! -e "$src" ]; then
  mkdir -p "$(dirname "$src")" && ln -s "$PWD" "$src"
fi
b=$src/.device/build
{ nvidia-smi; nvidia-smi -q | grep -iE 'driver version|cuda version|product name'; lscpu | head -20; } > "$OUT/gpu.txt" 2>&1
$b/mlmx --version >> "$OUT/gpu.txt" 2>&1
fails=0
: > "$OUT/tests.log"
for t in $b/test_*; do
  n=$(basename "$t")
  ( cd "$src" && timeout 300 "$t" -j1 --verbose=1 ) >> "$OUT/tests.log" 2>&1
  rc=$?
  skips=$(grep -c '\[SKIP\]' "$OUT/tests.log" || true)
  echo "$n rc=$rc" | tee -a "$OUT/tests.log"
  [ $rc -eq 0 ] || fails=$((fails + 1))
done
: > "$OUT/sanitizer.log"
for t in $b/test_cuda_*; do
  for tool in memcheck racecheck; do
    ( cd "$src" && timeout 300 compute-sanitizer --tool $tool --error-exitcode 99 "$t" -j1 ) \
      >> "$OUT/sanitizer.log" 2>&1
    echo "$(basename "$t") $tool rc=$?" | tee -a "$OUT/sanitizer.log"
  done
done
( cd "$src" && timeout 400 bash bench/run_gpu.sh ) > "$OUT/bench.log" 2>&1
echo "== summary: $fails test programs failed; skipped lines: $(grep -c '\[SKIP\]' "$OUT/tests.log")"
grep -E 'rc=' "$OUT/sanitizer.log"
tail -25 "$OUT/bench.log"
