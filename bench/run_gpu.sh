#!/usr/bin/env bash
# GPU replicate benchmarks against the 2-thread CPU path, in one run:
#   bash bench/run_gpu.sh            (MLMX=path/to/mlmx to choose the binary)
# Prints the machine, then for each case the replicate fits per second on
# the GPU and on 2 CPU threads and their ratio. Each timing is the whole
# command (data read, fit, problem set-up, all replicates), so the GPU
# number is a lower bound on the kernel's rate. Run by scripts/device-run.sh.
set -u
cd "$(dirname "$0")/.."
M=${MLMX:-$PWD/.device/build/mlmx}
[ -x "$M" ] || M=$PWD/build/mlmx
B=$(dirname "$M")
echo "machine: $(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
"$M" --version
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
secs() { local t0 t1; t0=$(date +%s.%N); if ! "$@" >/dev/null 2>/tmp/mlmx_bench_err; then cat /tmp/mlmx_bench_err >&2; echo failed; return; fi; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b - a}'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN{printf "%.0f", n / s}'; }
SLEEP=(--data data/sleepstudy.csv --formula 'Reaction ~ Days + (Days|Subject)' --quiet)
printf '\n%-44s %14s %14s %8s\n' case "GPU fits/s" "CPU2 fits/s" ratio
for n in 100000 1000000; do
  g=$(secs "$M" boot "${SLEEP[@]}" --nsim $n --device gpu)
  c=$(secs "$M" boot "${SLEEP[@]}" --nsim 20000 --threads 2 --device cpu)
  if [ "$g" = failed ] || [ "$c" = failed ]; then
    printf '%-44s %14s %14s\n' "sleepstudy (Days|Subject) boot, $n" "$g" "$([ "$c" = failed ] && echo failed || rate 20000 "$c")"; continue
  fi
  gr=$(rate $n "$g"); cr=$(rate 20000 "$c")
  printf '%-44s %14s %14s %8.1f\n' "sleepstudy (Days|Subject) boot, $n" "$gr" "$cr" "$(awk -v a="$gr" -v b="$cr" 'BEGIN{print a / b}')"
done
if [ -x "$B/bench_glmm_batch" ]; then
  echo; echo "binary GLMM, 100 clusters x 10, 25-point AGQ (bench_glmm_batch):"
  "$B/bench_glmm_batch"
fi
if [ -x "$B/bench_lmm_nest" ]; then
  echo; echo "nested LMM, classroom students in classes in schools (bench_lmm_nest):"
  OPENBLAS_NUM_THREADS=1 "$B/bench_lmm_nest" data/classroom.csv \
    'mathgain ~ mathkind + (1|schoolid/classid)' 2000 100 100000
fi
echo
echo "not on the GPU in this version (CPU path only): power, hdp nested AGQ, InstEval single fit"
