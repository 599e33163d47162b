#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60): the period parser, the
# template loader and the Zarr store-key check. Needs a nightly toolchain (libFuzzer with
# sanitizers); installs cargo-fuzz if missing. Crashes are saved under fuzz/artifacts/<target>/
# and fail the script.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(period_parse template_yaml store_key)

log() { printf '[fuzz] %s\n' "$*" >&2; }

if ! rustup toolchain list | grep -q '^nightly'; then
    log "a nightly toolchain is needed: rustup toolchain install nightly"
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    # Seeds from the repository (templates, periods, keys) give the fuzzer a head start.
    cp -n fuzz/seeds/"$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
    log "$t for ${seconds}s"
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048
done
log "no crashes"
