#!/usr/bin/env bash
# Install what mlmx needs to build and test on Debian (12, bookworm).
#   bash scripts/install-deps.sh          build + test dependencies
#   bash scripts/install-deps.sh --r      also R, lme4, nlme, ordinal, glmmTMB, numDeriv,
#                                         lmerTest, pbkrtest, performance
#                                         (benchmarks, reference fixtures)
# Runs apt-get as root (or through sudo when not root). Idempotent.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config libopenblas-dev liblapacke-dev
      libnlopt-dev libhdf5-dev libcsv-dev libcriterion-dev
      libplplot-dev plplot-driver-cairo libjansson-dev nettle-dev
      libopenmpi-dev openmpi-bin)
if [ "${1:-}" = "--r" ]; then
  pkgs+=(r-base-core r-cran-lme4 r-cran-nlme r-cran-jsonlite r-cran-ordinal r-cran-glmmtmb r-cran-numderiv
         r-cran-lmertest r-cran-pbkrtest r-cran-performance)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
