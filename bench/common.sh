# shellcheck shell=bash
# Sourced by the benchmark scripts: the repository's paths, from the repository's root.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
BENCH="$REPO/bench"
DATA="$BENCH/data"
RESULTS="$BENCH/results"
PY="$REPO/.venv/bin/python"
export REPO BENCH DATA RESULTS PY
