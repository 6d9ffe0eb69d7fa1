#!/usr/bin/env bash
# LMM fits with residual structures (issue 10): mlmx (bench_resid: model,
# structure, fit) against nlme::lme (bench/resid_time.R) on the same
# machine in the same run, both single-threaded, the data read untimed in
# both. Issue 10's target: AR(1) on a simulated panel of 10,000 subjects x
# 10 times at >= 20x nlme.
#
#   bash bench/run_resid.sh [build dir] [subjects, default 10000]
#
# Needs a build and R with nlme (bash scripts/install-deps.sh --r). The
# panel is simulated by bench/make_panel.R into a temporary file.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
subjects=${2:-10000}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "machine: $(uname -m), $(nproc --all) cores, $(lscpu | sed -n "s/^Model name: *//p" | head -1), $(free -g | awk "/Mem:/{print \$2}") GiB"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); mlmx $("$build"/mlmx --version | cut -d' ' -f2); nlme $(Rscript -e 'cat(format(packageVersion("nlme")))')"

run_case() { # name target csv formula(mlmx) corr(mlmx) var(mlmx) method fixed(R) random(R) corr(R) var(R) reps_m reps_r
  local name=$1 target=$2 csv=$3 mf=$4 mc=$5 mv=$6 meth=$7 rf=$8 rr=$9 rc=${10} rv=${11} mreps=${12} rreps=${13}
  local m r
  m=$("$build"/bench_resid "$name" "$csv" "$mf" "$mc" "$mv" "${meth,,}" "$mreps")
  r=$(Rscript bench/resid_time.R "$csv" "$rf" "$rr" "$rc" "$rv" "$meth" "$rreps" 2>/dev/null)
  echo "$m"
  echo "$r"
  awk -v n="$name" -v tg="$target" \
      -v tm="$(sed -n 's/^mlmx .*seconds=\([^ ]*\).*/\1/p' <<<"$m")" \
      -v tr="$(sed -n 's/^nlme seconds=\([^ ]*\).*/\1/p' <<<"$r")" \
      -v lm="$(sed -n 's/.*loglik=\([^ ]*\).*/\1/p' <<<"$m")" \
      -v lr="$(sed -n 's/.*loglik=\([^ ]*\).*/\1/p' <<<"$r")" 'BEGIN {
    printf "ratio %s: nlme %.3f s / mlmx %.4f s = %.0fx; logLik difference %.2g; target %s\n",
           n, tr, tm, tr / tm, lm - lr,
           (tg == "" ? "none" : (tr / tm >= tg ? tg "x met" : tg "x MISSED")) }'
}

Rscript bench/make_panel.R "$subjects" 10 "$tmp/panel.csv"
run_case "panel${subjects}x10_ar1" 20 "$tmp/panel.csv" \
  'y ~ time + x + z + (1 | id)' 'ar1(~ time | id)' - REML \
  'y ~ time + x + z' '~ 1 | id' 'corAR1(form = ~ time | id)' - 3 1
run_case "panel${subjects}x10_ar1_rows" "" "$tmp/panel.csv" \
  'y ~ time + x + z + (1 | id)' 'ar1()' - ML \
  'y ~ time + x + z' '~ 1 | id' 'corAR1()' - 3 1
Rscript bench/make_panel.R 2000 10 "$tmp/panel2k.csv"
run_case panel2000x10_car1 "" "$tmp/panel2k.csv" \
  'y ~ time + x + z + (1 | id)' 'car1(~ time | id)' - REML \
  'y ~ time + x + z' '~ 1 | id' 'corCAR1(form = ~ time | id)' - 3 1
run_case panel2000x10_arma11 "" "$tmp/panel2k.csv" \
  'y ~ time + x + z + (1 | id)' 'arma(1, 1)' - REML \
  'y ~ time + x + z' '~ 1 | id' 'corARMA(p = 1, q = 1)' - 3 1
run_case orthodont_ar1 "" data/orthodont.csv \
  'distance ~ age + Sex + (1 | Subject)' 'ar1()' - REML \
  'distance ~ age + Sex' '~ 1 | Subject' 'corAR1()' - 51 21
run_case bodyweight_ar1 "" data/bodyweight.csv \
  'weight ~ Time * factor(Diet) + (Time | Rat)' 'ar1()' - REML \
  'weight ~ Time * factor(Diet)' '~ Time | Rat' 'corAR1()' - 51 21
run_case orthodont_varident "" data/orthodont.csv \
  'distance ~ age + Sex + (1 | Subject)' - 'ident(~ 1 | Sex)' REML \
  'distance ~ age + Sex' '~ 1 | Subject' - 'varIdent(form = ~ 1 | Sex)' 51 21
