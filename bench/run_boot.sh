#!/usr/bin/env bash
# Bootstrap benchmark: mlmx boot against lme4's bootMer on the same machine in
# the same run (replicates per second and the ratio), on 2 threads for mlmx
# (bootMer is single-threaded), and the peak memory of a long run streamed to
# HDF5.
#
#   bash bench/run_boot.sh [build dir] [bootMer nsim scale, default 1]
#
# Needs a build and R with lme4 (bash scripts/install-deps.sh --r).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
scale=${2:-1}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "machine: $(uname -m), $(nproc --all) cores, $(lscpu | sed -n "s/^Model name: *//p" | head -1), $(free -g | awk "/Mem:/{print \$2}") GiB"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); mlmx $("$build"/mlmx --version | cut -d' ' -f2); mlmx --threads 2, bootMer one thread"

# mlmx: wall time of the whole command (data, original fit, bootstrap), best of 3
mlmx_time() { # nsim args...
  local nsim=$1 best=1e9 t
  shift
  for _ in 1 2 3; do
    t=$( { /usr/bin/time -f "%e" "$build"/mlmx boot "$@" --nsim "$nsim" --threads 2 --quiet >/dev/null; } 2>&1 | tail -1)
    best=$(awk -v a="$t" -v b="$best" 'BEGIN { print (a < b ? a : b) }')
  done
  echo "$best"
}

run_case() { # name mlmx-nsim r-nsim target-per-s args...
  local name=$1 mn=$2 rn=$3 target=$4
  shift 4
  local tm r rs
  tm=$(mlmx_time "$mn" "$@")
  r=$(Rscript bench/bootmer_time.R "$name" "$rn" 2>/dev/null)
  rs=$(sed -n 's/.*per_s=\([^ ]*\).*/\1/p' <<<"$r")
  echo "$r"
  awk -v n="$name" -v mn="$mn" -v tm="$tm" -v rs="$rs" -v tg="$target" 'BEGIN {
    ms = mn / tm
    printf "mlmx %s nsim=%d seconds=%.3f per_s=%.0f\n", n, mn, tm, ms
    printf "ratio %s: mlmx/bootMer = %.0fx per replicate; target %s/s %s\n", n, ms / rs, tg,
           (ms >= tg ? "met" : "MISSED") }'
}

run_case sleepstudy 10000 $((200 * scale)) 10000 --data data/sleepstudy.csv \
  --formula 'Reaction ~ Days + (Days | Subject)'
run_case cbpp 5000 $((50 * scale)) 1000 --data data/cbpp.csv --family binomial \
  --formula 'cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)'
run_case hdp3 200 $((4 * scale)) 50 --data data/hdp.csv --family binomial \
  --formula 'remission ~ Age + LengthofStay + FamilyHx + IL6 + CRP + CancerStage + Experience + (1|DID) + (1|HID)'

# peak memory: 10^6 sleepstudy replicates streamed to HDF5
m=$( { /usr/bin/time -f "%M %e" "$build"/mlmx boot --data data/sleepstudy.csv \
  --formula 'Reaction ~ Days + (Days | Subject)' --nsim 1000000 --threads 2 --quiet \
  --out "$tmp/million.h5" >/dev/null; } 2>&1 | tail -1)
awk -v m="$m" 'BEGIN { split(m, a, " "); printf "memory: 10^6 sleepstudy replicates to HDF5: peak %.0f MB, %.1f s (target < 200 MB) %s\n", a[1] / 1024, a[2], (a[1] / 1024 < 200 ? "met" : "MISSED") }'
