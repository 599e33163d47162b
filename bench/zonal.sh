#!/usr/bin/env bash
# Zonal statistics: climate-compute (the kernel of the zonal-statistics process, release build)
# against exactextract 0.3.0 on the same data, two scenarios:
#   districts   the 13 districts of Sierra Leone × 10 years of daily fields (3650 bands)
#   polygons    1,000 synthetic polygons × 1 year (365 bands)
# on CHIRPS' 0.05° layout over Sierra Leone (70 × 66 cells). Each side runs in a fresh process
# and reports the time of the statistics (reading the inputs excluded), the peak resident memory
# and a checksum of the means (which must agree). Results: a table on stdout and in
# bench/results/zonal-latest.md.
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
WORK="$DATA/zonal"
mkdir -p "$RESULTS"
REPS="${BENCH_REPS:-3}"
log() { printf '[bench-zonal] %s\n' "$*" >&2; }

bash "$REPO/scripts/setup-python.sh" >&2
if [[ ! -f "$WORK/polygons_1000.geojson" ]]; then
    log "generating inputs in $WORK"
    "$PY" "$BENCH/zonal.py" inputs "$WORK"
fi
if [[ -z "${BENCH_NO_BUILD:-}" ]]; then
    cargo build --release -p climate-zonal-bench >&2
fi
BIN="$REPO/target/release/climate-zonal-bench"
GRID=(70 66)
ORIGIN=(-13.5 10.1 0.05)

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

run() { # scenario field bands features
    local name=$1 field=$2 nt=$3 features=$4 ours=() theirs=() om=() tm=() oc tc
    for _ in $(seq "$REPS"); do
        local o t
        o=$("$BIN" "$field" "${GRID[@]}" "$nt" "${ORIGIN[@]}" "$features")
        t=$("$PY" "$BENCH/zonal.py" exactextract "$field" "${GRID[@]}" "$nt" "${ORIGIN[@]}" "$features")
        ours+=("$(jq -r .seconds <<<"$o")"); theirs+=("$(jq -r .seconds <<<"$t")")
        om+=("$(jq -r .peak_mib <<<"$o")"); tm+=("$(jq -r .peak_mib <<<"$t")")
        oc=$(jq -r '"\(.values) \(.checksum)"' <<<"$o"); tc=$(jq -r '"\(.values) \(.checksum)"' <<<"$t")
    done
    local os ts omm tmm
    os=$(printf '%s\n' "${ours[@]}" | median); ts=$(printf '%s\n' "${theirs[@]}" | median)
    omm=$(printf '%s\n' "${om[@]}" | median); tmm=$(printf '%s\n' "${tm[@]}" | median)
    "$PY" - "$name" "$os" "$ts" "$omm" "$tmm" "$oc" "$tc" <<'PY'
import sys
name, os_, ts, om, tm, oc, tc = sys.argv[1:]
(ov, osum), (tv, tsum) = [(int(c.split()[0]), float(c.split()[1])) for c in (oc, tc)]
agree = ov == tv and abs(osum - tsum) <= 1e-6 * max(1.0, abs(tsum))
print(f"| {name} | {float(os_):.3f} | {float(ts):.3f} | {float(ts) / float(os_):.1f}× | {float(om):.0f} | {float(tm):.0f} | {ov} | {'yes' if agree else 'NO'} |")
PY
}

{
    echo "## zonal statistics (median of $REPS runs)"
    echo
    echo "| scenario | climate-compute s | exactextract s | ratio | climate-compute peak MiB | exactextract peak MiB | means | checksums agree |"
    echo "|---|---|---|---|---|---|---|---|"
    run "13 districts × 3650 days" "$WORK/districts_10y.f32" 3650 "$REPO/tests/fixtures/sierra_leone_districts.geojson"
    run "1000 polygons × 365 days" "$WORK/polygons_1y.f32" 365 "$WORK/polygons_1000.geojson"
} | tee "$RESULTS/zonal-latest.md"
