# shellcheck shell=bash
# Sourced by the benchmark scripts: the repository's paths, from the repository's root.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
BENCH="$REPO/bench"
DATA="$BENCH/data"
RESULTS="$BENCH/results"
PY="$REPO/.venv/bin/python"
# The benchmarks' configuration and the release binary they start.
CONFIG="$BENCH/config/climate-api.bench.yaml"
API_BIN="$REPO/target/release/climate-api"
export REPO BENCH DATA RESULTS PY CONFIG API_BIN
