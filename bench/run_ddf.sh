#!/usr/bin/env bash
# An LMM fit with lmerTest's summary (df and p-values): mlmx (model, fit,
# mlmx_fit_summary_ddf) against summary(lmerTest::lmer(...)) on the same
# machine in the same run, both single-threaded, the data read untimed in
# both. Issue 9's target: >= 20x on hsb with Satterthwaite's df.
#
#   bash bench/run_ddf.sh [build dir] [R repetitions, default 5]
#
# Needs a build and R with lmerTest and pbkrtest (bash scripts/install-deps.sh --r).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rreps=${2:-5}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

echo "machine: $(uname -m), $(nproc --all) cores, $(lscpu | sed -n "s/^Model name: *//p" | head -1), $(free -g | awk "/Mem:/{print \$2}") GiB"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); mlmx $("$build"/mlmx --version | cut -d' ' -f2); lmerTest $(Rscript -e 'cat(format(packageVersion("lmerTest")))'); pbkrtest $(Rscript -e 'cat(format(packageVersion("pbkrtest")))')"

run_case() { # name method(mlmx) method(R) target formula csv
  local name=$1 mm=$2 rm=$3 target=$4 formula=$5 csv=$6
  local m r
  m=$("$build"/bench_ddf "$name" "$csv" "$formula" "$mm" 21)
  r=$(Rscript bench/ddf_time.R "$csv" "$formula" "$rm" "$rreps" 2>/dev/null)
  echo "$m"
  echo "$r"
  awk -v n="$name $mm" -v tg="$target" \
      -v tm="$(sed -n 's/^mlmx .*seconds=\([^ ]*\).*/\1/p' <<<"$m")" \
      -v tr="$(sed -n 's/^lmerTest .*seconds=\([^ ]*\).*/\1/p' <<<"$r")" 'BEGIN {
    printf "ratio %s: lmerTest %.3f s / mlmx %.4f s = %.0fx; target %s\n", n, tr, tm, tr / tm,
           (tg == "" ? "none" : (tr / tm >= tg ? tg "x met" : tg "x MISSED")) }'
}

run_case hsb satterthwaite Satterthwaite 20 \
  'mathach ~ meanses*cses + sector*cses + (1 + cses|school)' data/hsb.csv
run_case sleepstudy satterthwaite Satterthwaite "" 'Reaction ~ Days + (Days | Subject)' \
  data/sleepstudy.csv
run_case bodyweight kenward-roger Kenward-Roger "" 'weight ~ Time * factor(Diet) + (Time|Rat)' \
  data/bodyweight.csv
run_case hsb kenward-roger Kenward-Roger "" \
  'mathach ~ meanses*cses + sector*cses + (1 + cses|school)' data/hsb.csv
