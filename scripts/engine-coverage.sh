#!/usr/bin/env bash
# Which batch engine covers each model of the reference batteries
# (data/reference/lmm, data/reference/glmm): runs `mlmx boot --nsim 2` on
# each and prints its "device:" line (the engine, or workspaces). Usage:
#   bash scripts/engine-coverage.sh [path/to/mlmx]   (default build/mlmx)
set -u
MLMX=${1:-build/mlmx}
cd "$(dirname "$0")/.."
printf '| case | formula | family | engine |\n|---|---|---|---|\n'
for ref in data/reference/lmm/*.ref data/reference/glmm/*.ref; do
  f=$(sed -n 's/^formula //p' "$ref" | head -1)
  d=$(sed -n 's/^data //p' "$ref" | head -1)
  [ -n "$f" ] && [ -n "$d" ] && [ -f "data/$d" ] || continue
  case "$ref" in *bruteforce*) continue ;; esac
  fam=$(sed -n 's/^family //p' "$ref" | head -1)
  link=$(sed -n 's/^link //p' "$ref" | head -1)
  nagq=$(sed -n 's/^nagq //p' "$ref" | head -1)
  meth=$(sed -n 's/^method //p' "$ref" | head -1)
  args=()
  [ -n "$fam" ] && args+=(--family "$fam")
  [ -n "$link" ] && args+=(--link "$link")
  [ -n "$nagq" ] && [ "$nagq" != 0 ] && args+=(--nagq "$nagq")
  [ "$meth" = ML ] && args+=(--ml)
  [ "$nagq" = 0 ] && continue
  out=$(timeout 120 "$MLMX" boot --data "data/$d" --formula "$f" "${args[@]}" --nsim 2 2>&1)
  dev=$(printf '%s\n' "$out" | sed -n 's/^ *device: *//p' | head -1)
  [ -z "$dev" ] && dev="(no run: $(printf '%s\n' "$out" | grep -m1 -i error | cut -c1-80))"
  # a | inside a table cell must be escaped, code span or not
  printf '| %s | `%s` | %s%s%s | %s |\n' "$(basename "$ref" .ref)" "${f//|/\\|}" "${fam:-gaussian}" \
    "${link:+ $link}" "${nagq:+, nAGQ $nagq}" "$dev"
done
