#!/usr/bin/env bash
# GPU replicate benchmarks against the 2-thread CPU path, in one run:
#   bash bench/run_gpu.sh            (MLMX=path/to/mlmx to choose the binary)
# The GUIDE's targets come first (sleepstudy boot, binary GLMM AGQ 25, hdp
# nested AGQ, power with 100,000 simulations, InstEval), the other engines
# after them, so a cut-short run still has the targets.
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
if [ -x "$B/bench_glmm_nest" ]; then
  echo; echo "hdp (1|HID/DID), nested AGQ 25 x 25, 1000 replicates (bench_glmm_nest):"
  timeout 180 "$B/bench_glmm_nest" 4 1000 25 || echo "bench_glmm_nest: failed or timed out"
fi
# the power scenario of the replicate-engine issue: slope_power.json's base
# design (50 clusters x 20, (x | g), Wald z), 100,000 simulations (target < 1 s)
T=$(mktemp -d)
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); s.pop("curve"); json.dump(s, open(sys.argv[2], "w"))' \
  data/scenarios/slope_power.json "$T/base.json"
g=$(secs "$M" power --scenario "$T/base.json" --nsim 100000 --device gpu --quiet)
c=$(secs "$M" power --scenario "$T/base.json" --nsim 5000 --threads 2 --device cpu --quiet)
if [ "$g" != failed ] && [ "$c" != failed ]; then
  printf '%-44s %14s %14s %8.1f   (GPU: %s s for 100,000)\n' "power slope base, 100000 sims" "$(rate 100000 "$g")" \
    "$(rate 5000 "$c")" "$(awk -v a="$g" -v b="$c" 'BEGIN{print (100000 / a) / (5000 / b)}')" "$g"
else
  printf '%-44s %14s %14s\n' "power slope base, 100000 sims" "$g" "$c"
fi
rm -rf "$T"
# large single fits through the CUDA backend (target: InstEval < 0.1 s)
IE=(--data data/insteval.csv --formula 'y ~ service + (1|s) + (1|d) + (1|dept:service)' --quiet)
printf '\n%-44s %14s %14s %8s\n' "single fit (whole command, s)" "GPU s" "CPU s" ratio
for k in 1 2; do
  g=$(secs "$M" fit "${IE[@]}" --device gpu --json /tmp/mlmx_ie_gpu.json)
  c=$(secs "$M" fit "${IE[@]}" --device cpu --json /tmp/mlmx_ie_cpu.json)
  printf '%-44s %14s %14s %8s\n' "InstEval REML, run $k" "$g" "$c" \
    "$( [ "$g" != failed ] && [ "$c" != failed ] && awk -v a="$g" -v b="$c" 'BEGIN{printf "%.2f", b / a}')"
done
grep -h '"fit_seconds"\|"device"\|"reml_criterion"' /tmp/mlmx_ie_gpu.json /tmp/mlmx_ie_cpu.json 2>/dev/null

# engines without a GUIDE target, after the targets
if [ -x "$B/bench_lmm_nest" ]; then
  echo; echo "nested LMM, classroom students in classes in schools (bench_lmm_nest):"
  OPENBLAS_NUM_THREADS=1 "$B/bench_lmm_nest" data/classroom.csv \
    'mathgain ~ mathkind + (1|schoolid/classid)' 2000 100 100000
fi
if [ -x "$B/bench_lmm_dense" ]; then
  echo; echo "crossed LMMs, lmm-crossed engine (bench_lmm_dense): Penicillin, sim_crossed:"
  OPENBLAS_NUM_THREADS=1 "$B/bench_lmm_dense" 4000 100000 penicillin
  OPENBLAS_NUM_THREADS=1 "$B/bench_lmm_dense" 200 10000 sim_crossed
  echo "lmm-crossed's block mapping (194 and 303 dense columns):"
  OPENBLAS_NUM_THREADS=1 "$B/bench_lmm_dense" 20 2000 sc194
  OPENBLAS_NUM_THREADS=1 "$B/bench_lmm_dense" 4 500 synth:300
fi
if [ -x "$B/bench_glmm_batch" ]; then
  echo; echo "ordinal and NB2 GLMMs, glmm-1ri (bench_glmm_batch): wine Laplace, salamanders NB2 Laplace:"
  "$B/bench_glmm_batch" 500 20000 1 wine
  "$B/bench_glmm_batch" 100 5000 1 salamanders
fi
