#!/usr/bin/env bash
# The one prepared device call (built by scripts/device-prepare.sh; it
# builds nothing). In order of value, inside one device call of at most
# 600 s (each step has its own timeout and the later ones are skipped when
# time runs short):
#   1. the GPU tests (test_cuda_*: parity of the engines, the backend, the
#      single fits and the simulated responses; they must pass, not skip);
#   2. the GPU benchmarks against the 2-thread CPU path (bench/run_gpu.sh);
#   3. compute-sanitizer memcheck and racecheck on the GPU tests;
#   4. the CPU test programs (device-prepare.sh carries them all), 8 at a
#      time, while time remains.
# Output under $OUT: gpu.txt, tests_gpu.log, bench.log, sanitizer.log,
# tests_cpu.log; a short summary last on stdout.
set -u
OUT=${OUT:-/tmp/mlmx-device-out}
BUDGET=${BUDGET:-570}
mkdir -p "$OUT" /tmp/devlibs
tar -xJf .device/libs.tar.xz -C /tmp/devlibs
tar -xJf .device/build.tar.xz -C .device
export LD_LIBRARY_PATH=/tmp/devlibs:$PWD/.device/build:${LD_LIBRARY_PATH:-}
src=$(cat .device/source_dir)
if [ "$src" != "$PWD" ] && [ ! -e "$src" ]; then
  mkdir -p "$(dirname "$src")" && ln -s "$PWD" "$src"
fi
b=$src/.device/build
left() { echo $((BUDGET - SECONDS)); }
cap() { local t; t=$(left); [ "$t" -lt "$1" ] && echo "$t" || echo "$1"; }
{ nvidia-smi; nvidia-smi -q | grep -iE 'driver version|cuda version|product name'; lscpu | head -20; } > "$OUT/gpu.txt" 2>&1
$b/mlmx --version >> "$OUT/gpu.txt" 2>&1

# 1. GPU tests
gfails=0
: > "$OUT/tests_gpu.log"
for t in $b/test_cuda_*; do
  n=$(basename "$t")
  ( cd "$src" && timeout "$(cap 150)" "$t" -j4 --verbose=1 ) >> "$OUT/tests_gpu.log" 2>&1
  rc=$?
  echo "$n rc=$rc" | tee -a "$OUT/tests_gpu.log"
  [ $rc -eq 0 ] || gfails=$((gfails + 1))
done
echo "[t=${SECONDS}s] GPU tests done"

# 2. benchmarks
if [ "$(left)" -gt 60 ]; then
  ( cd "$src" && timeout "$(cap 240)" bash bench/run_gpu.sh ) > "$OUT/bench.log" 2>&1
  echo "[t=${SECONDS}s] benchmarks done (rc=$?)"
fi

# 3. sanitizer (the fit battery is left out: its CPU fits would take the budget)
: > "$OUT/sanitizer.log"
for t in $b/test_cuda_*; do
  case $(basename "$t") in test_cuda_fit_parity) continue ;; esac
  for tool in memcheck racecheck; do
    [ "$(left)" -gt 40 ] || { echo "$(basename "$t") $tool skipped: out of time" >> "$OUT/sanitizer.log"; continue; }
    ( cd "$src" && timeout "$(cap 90)" compute-sanitizer --tool $tool --error-exitcode 99 "$t" -j1 ) \
      >> "$OUT/sanitizer.log" 2>&1
    echo "$(basename "$t") $tool rc=$?" >> "$OUT/sanitizer.log"
  done
done
echo "[t=${SECONDS}s] sanitizer done"

# 4. the other tests, 8 programs at a time, while time remains
: > "$OUT/tests_cpu.log"
if [ "$(left)" -gt 60 ]; then
  ls $b/test_* | grep -v test_cuda_ |
    xargs -P 8 -I{} bash -c 'cd "'"$src"'" && timeout '"$(cap 120)"' {} -j1 > /tmp/$(basename {}).log 2>&1; echo "$(basename {}) rc=$?"' \
    >> "$OUT/tests_cpu.log" 2>&1
  for f in /tmp/test_*.log; do grep -H -E 'Synthesis|FAIL' "$f"; done >> "$OUT/tests_cpu.log" 2>/dev/null
fi
echo "[t=${SECONDS}s] CPU tests done"

echo "== summary: $gfails GPU test programs failed; GPU skips: $(grep -c '\[SKIP\]' "$OUT/tests_gpu.log")"
grep -E 'rc=' "$OUT/tests_gpu.log"
grep -E 'rc=|skipped' "$OUT/sanitizer.log"
grep -E 'rc=[^0]' "$OUT/tests_cpu.log" || echo "CPU tests: none failed"
tail -30 "$OUT/bench.log"
