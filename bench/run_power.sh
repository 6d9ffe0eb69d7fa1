#!/usr/bin/env bash
# Power benchmark: mlmx power on the slope scenario (data/scenarios/slope_power.json:
# y ~ x + (x | g), 50 clusters x 20, Wald z of x) against an lme4
# simulate-and-refit loop (what simr runs) on the same machine in the same run:
# 1,000 simulations of the base design, and the 10-point power curve.
#
#   bash bench/run_power.sh [build dir] [R loop nsim, default 100]
#
# Needs a build and R with lme4 (bash scripts/install-deps.sh --r).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rn=${2:-100}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "machine: $(uname -m), $(nproc --all) cores, $(lscpu | sed -n "s/^Model name: *//p" | head -1), $(free -g | awk "/Mem:/{print \$2}") GiB"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); mlmx $("$build"/mlmx --version | cut -d' ' -f2); mlmx --threads 2, R one thread"
# the base design alone: the scenario without its curve
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); s.pop("curve"); json.dump(s, open(sys.argv[2], "w"))' \
  data/scenarios/slope_power.json "$tmp/base.json"
best() { # command...: best wall time of 3
  local b=1e9 t
  for _ in 1 2 3; do
    t=$( { /usr/bin/time -f "%e" "$@" >/dev/null; } 2>&1 | tail -1)
    b=$(awk -v a="$t" -v b="$b" 'BEGIN { print (a < b ? a : b) }')
  done
  echo "$b"
}
t1=$(best "$build"/mlmx power --scenario "$tmp/base.json" --nsim 1000 --threads 2 --quiet)
tc=$(best "$build"/mlmx power --scenario data/scenarios/slope_power.json --nsim 1000 --threads 2 --quiet)
r=$(Rscript bench/power_time.R "$rn" 2>/dev/null)
echo "$r"
rs=$(sed -n 's/.*per_s=\([^ ]*\).*/\1/p' <<<"$r")
awk -v t1="$t1" -v tc="$tc" -v rs="$rs" 'BEGIN {
  printf "mlmx slope 1000 simulations: %.3f s (%.0f/s) (target < 1 s) %s\n", t1, 1000 / t1, (t1 < 1 ? "met" : "MISSED")
  printf "mlmx slope 10-point curve, 10 x 1000 simulations: %.3f s (target < 10 s) %s\n", tc, (tc < 10 ? "met" : "MISSED")
  printf "ratio: mlmx/R loop = %.0fx per simulation (R %.1f/s)\n", 1000 / t1 / rs, rs
  printf "R loop time for 1000 simulations (extrapolated): %.0f s; for the curve: %.0f s\n", 1000 / rs, 10000 / rs }'
