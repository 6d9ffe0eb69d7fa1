#!/usr/bin/env bash
# Side-by-side LMM benchmark: mlmx and lme4 on the same machine, same data,
# same run, one core each. Prints each side's median time and the ratio.
#
#   bash bench/run_lmm.sh [build dir] [reps]
#
# Needs a build (cmake --build build) and R with lme4 (r-base-core,
# r-cran-lme4). InstEval is read from ../shared/data/insteval.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
reps=${2:-10}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
shared=../shared/data

echo "machine: $(uname -m), $(nproc --all) cores, $(lscpu | sed -n "s/^Model name: *//p" | head -1), $(free -g | awk "/Mem:/{print \$2}") GiB"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); mlmx $("$build"/mlmx --version | cut -d' ' -f2); one thread each (OPENBLAS_NUM_THREADS=1)"

run_case() { # name csv-dir csv formula method lme4-case lme4-reps
  local name=$1 dir=$2 csv=$3 formula=$4 method=$5 rcase=$6 rreps=$7
  local m r
  m=$("$build"/bench_lmm "$name" "$dir/$csv" "$formula" "$method" "$reps")
  r=$(Rscript bench/lme4_time.R "$rcase" "$dir" "$rreps" "$csv" "$formula" "$method" 2>/dev/null)
  echo "$m"
  echo "$r"
  local tm tr
  tm=$(sed -n 's/.*median_s=\([^ ]*\).*/\1/p' <<<"$m")
  tr=$(sed -n 's/.*median_s=\([^ ]*\).*/\1/p' <<<"$r")
  awk -v a="$tr" -v b="$tm" -v n="$name" 'BEGIN { printf "ratio %s: lme4/mlmx = %.1fx (lme4 %.4f s, mlmx %.6f s)\n", n, a/b, a, b }'
}

run_case sleepstudy data sleepstudy.csv 'Reaction ~ Days + (Days|Subject)' REML sleepstudy "$reps"
run_case penicillin data penicillin.csv 'diameter ~ 1 + (1|plate) + (1|sample)' REML penicillin "$reps"
run_case pastes data pastes.csv 'strength ~ 1 + (1|batch/cask)' REML pastes "$reps"
run_case hsb data hsb.csv 'mathach ~ meanses*cses + sector*cses + (1 + cses|school)' REML hsb "$reps"
run_case classroom data classroom.csv 'mathgain ~ mathkind + sex + minority + ses + housepov + (1|schoolid) + (1|classid)' ML classroom "$reps"
run_case veneer data veneer.csv 'gcf ~ time*(base_gcf + cda + age) + (time|patient) + (1|patient:tooth)' ML veneer "$reps"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
Rscript bench/make_nested.R "$tmp/nested.csv"
run_case nested100k "$tmp" nested.csv 'y ~ x + (1|school/class)' REML nested100k 3
if [ -f "$shared/insteval.csv" ]; then
  run_case insteval "$shared" insteval.csv 'y ~ service + (1|s) + (1|d) + (1|dept:service)' REML insteval 3
else
  echo "insteval: skipped ($shared/insteval.csv not found)"
fi
