#!/usr/bin/env bash
# Profile-likelihood confidence intervals for every parameter: mlmx
# (mlmx_fit_confint) against lme4's confint(fit, method = "profile") on the
# same machine in the same run, both single-threaded, the fit untimed in
# both. Issue 9's target: >= 50x on sleepstudy.
#
#   bash bench/run_profile.sh [build dir] [lme4 repetitions, default 3]
#
# Needs a build and R with lme4 (bash scripts/install-deps.sh --r).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rreps=${2:-3}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

echo "machine: $(uname -m), $(nproc --all) cores, $(lscpu | sed -n "s/^Model name: *//p" | head -1), $(free -g | awk "/Mem:/{print \$2}") GiB"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); mlmx $("$build"/mlmx --version | cut -d' ' -f2); lme4 $(Rscript -e 'cat(format(packageVersion("lme4")))')"

run_case() { # name family target formula csv
  local name=$1 fam=$2 target=$3 formula=$4 csv=$5
  local m r
  m=$("$build"/bench_profile "$name" "$csv" "$formula" "$fam" 21)
  r=$(Rscript bench/profile_time.R "$name" "$rreps" 2>/dev/null)
  echo "$m"
  echo "$r"
  awk -v n="$name" -v tg="$target" \
      -v tm="$(sed -n 's/^mlmx .*seconds=\([^ ]*\).*/\1/p' <<<"$m")" \
      -v tr="$(sed -n 's/^lme4 .*seconds=\([^ ]*\).*/\1/p' <<<"$r")" 'BEGIN {
    printf "ratio %s: lme4 %.3f s / mlmx %.4f s = %.0fx; target %s\n", n, tr, tm, tr / tm,
           (tg == "" ? "none" : (tr / tm >= tg ? tg "x met" : tg "x MISSED")) }'
}

run_case sleepstudy gaussian 50 'Reaction ~ Days + (Days | Subject)' data/sleepstudy.csv
run_case cbpp binomial "" 'cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)' \
  data/cbpp.csv
