#!/usr/bin/env bash
# Side-by-side GLMM benchmark: mlmx against glmer (lme4), clmm (ordinal) and
# glmmTMB on the same machine, same data, same run, one core each. Prints
# each side's median time and the ratio, then the fits R cannot do (nested
# adaptive quadrature) against their targets.
#
#   bash bench/run_glmm.sh [build dir] [reps]
#
# Needs a build (cmake --build build) and R with lme4, ordinal and glmmTMB
# (r-base-core r-cran-lme4 r-cran-ordinal r-cran-glmmtmb).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
reps=${2:-10}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

echo "machine: $(uname -m), $(nproc --all) cores, $(lscpu | sed -n "s/^Model name: *//p" | head -1), $(free -g | awk "/Mem:/{print \$2}") GiB"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); mlmx $("$build"/mlmx --version | cut -d' ' -f2); one thread each (OPENBLAS_NUM_THREADS=1)"

run_case() { # name csv formula family nagq r-reps
  local name=$1 csv=$2 formula=$3 family=$4 nagq=$5 rreps=$6
  local m r tm tr
  m=$("$build"/bench_glmm "$name" "data/$csv" "$formula" "$family" default "$nagq" "$reps")
  r=$(Rscript bench/glmer_time.R "$name" data "$rreps" 2>/dev/null)
  echo "$m"
  echo "$r"
  tm=$(sed -n 's/.*median_s=\([^ ]*\).*/\1/p' <<<"$m")
  tr=$(sed -n 's/.*median_s=\([^ ]*\).*/\1/p' <<<"$r")
  awk -v a="$tr" -v b="$tm" -v n="$name" 'BEGIN { printf "ratio %s: R/mlmx = %.1fx (R %.4f s, mlmx %.6f s)\n", n, a/b, a, b }'
}

only_mlmx() { # name csv formula family nagq target-seconds
  local m
  m=$("$build"/bench_glmm "$1" "data/$2" "$3" "$4" default "$5" "$reps")
  echo "$m"
  awk -v t="$(sed -n 's/.*median_s=\([^ ]*\).*/\1/p' <<<"$m")" -v g="$6" -v n="$1" \
    'BEGIN { printf "target %s: %.3f s (target < %s s) %s\n", n, t, g, (t < g ? "met" : "MISSED") }'
}

run_case cbpp_laplace cbpp.csv 'cbind(incidence, size - incidence) ~ factor(period) + (1|herd)' binomial 1 "$reps"
run_case cbpp_agq25 cbpp.csv 'cbind(incidence, size - incidence) ~ factor(period) + (1|herd)' binomial 25 "$reps"
run_case grouseticks_pois grouseticks.csv 'TICKS ~ factor(YEAR) + HEIGHT + (1|BROOD) + (1|INDEX) + (1|LOCATION)' poisson 1 "$reps"
run_case verbagg_laplace verbagg.csv 'r2 ~ Anger + Gender + btype + situ + (1|id) + (1|item)' binomial 1 3
run_case hdp2_agq10 hdp.csv 'remission ~ IL6 + CRP + CancerStage + LengthofStay + Experience + (1|DID)' binomial 10 1
run_case hdp3_laplace hdp.csv 'remission ~ Age + LengthofStay + FamilyHx + IL6 + CRP + CancerStage + Experience + (1|DID) + (1|HID)' binomial 1 1
run_case wine_laplace wine.csv 'rating ~ temp + contact + (1|judge)' ordinal 1 "$reps"
run_case salamanders_nb2 salamanders.csv 'count ~ spp * mined + (1|site)' negbin 1 3
# nested adaptive quadrature: no R package fits these
only_mlmx hdp3_agq25 hdp.csv 'remission ~ Age + LengthofStay + FamilyHx + IL6 + CRP + CancerStage + Experience + (1|DID) + (1|HID)' binomial 25 2
only_mlmx flay3_ordinal_agq7 flay.csv 'post ~ pre + resist * tele + (1|school) + (1|class)' ordinal 7 10
only_mlmx flay3_ordinal_agq25 flay.csv 'post ~ pre + resist * tele + (1|school) + (1|class)' ordinal 25 30
