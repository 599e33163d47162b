#!/usr/bin/env bash
# 90 days of CHIRPS v3 over Sierra Leone through the real chirps3_daily provider (HTTP range
# reads), against a CHC-like server that adds latency to every response, with 1 and 2 workers.
# Standalone, one process with worker.concurrency = W and a per-provider download limit of
# 4 × W: the same connections W separate worker processes (4 each, CHC's politeness limit) would
# open. The run's three segments are what the workers share.
# Prints a markdown table. Usage: bash bench/latency_scaling.sh [latency_ms]
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LAT="${1:-50}"
WORK="$RESULTS/latency"
rm -rf "$WORK"; mkdir -p "$WORK"
[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release --bins -p climate-api -q
COGS="$REPO/bench/data/chirps/source"
[ -e "$COGS/chirps-v3.0.rnl.2024.01.03.cog" ] || "$PY" tests/fixtures/make_chirps_cogs.py --out "$COGS"
"$PY" bench/chc_mock.py --port 9100 --latency-ms "$LAT" --data "$COGS" & MOCK=$!
trap 'kill $MOCK 2>/dev/null || true' EXIT
sleep 1
echo "| workers | latency ms | days | segments | run s (finished − started) |"
echo "|---|---|---|---|---|"
for W in 1 2; do
  for rep in 1 2; do
    D="$WORK/w$W-$rep"; mkdir -p "$D/templates"
    cat > "$D/templates/chirps.yaml" <<YAML
- id: chirps_bench
  name: CHIRPS (latency bench)
  variable: precip
  period_type: daily
  units: mm
  ingestion:
    provider: chirps3_daily
    params: {base_url: "http://127.0.0.1:9100/products/CHIRPS/v3.0"}
YAML
    cat > "$D/config.yaml" <<YAML
data_dir: $D/data
templates_dir: templates
server: {bind: "127.0.0.1:18123"}
auth: {enabled: false}   # loopback benchmark
worker: {concurrency: $W}
providers:
  chirps3_daily: {concurrency: $((4 * W))}
extents:
  - {extent_id: sle, name: Sierra Leone, bbox: [-13.5, 6.9, -10.1, 10.0], country_code: SLE}
YAML
    RUST_LOG=warn target/release/climate-api --config "$D/config.yaml" > "$D/log.txt" 2>&1 & P=$!
    for _ in $(seq 1 100); do curl -sf localhost:18123/ready >/dev/null && break; sleep 0.1; done
    ID=$(curl -s -X POST localhost:18123/ingestions -H 'content-type: application/json' \
      -d '{"dataset_id":"chirps_bench","start":"2024-01-01","end":"2024-03-30"}' | "$PY" -c 'import sys,json;print(json.load(sys.stdin)["ingestion_id"])')
    while :; do
      R=$(curl -s "localhost:18123/ingestions/$ID")
      S=$(echo "$R" | "$PY" -c 'import sys,json;print(json.load(sys.stdin)["status"])')
      [ "$S" = succeeded ] && break
      [ "$S" = failed ] && { echo "failed: $R" >&2; exit 1; }
      sleep 0.1
    done
    SECS=$(echo "$R" | "$PY" -c 'import sys,json,datetime as d;r=json.load(sys.stdin);f=lambda s:d.datetime.fromisoformat(s.replace("Z","+00:00"));print(round((f(r["finished_at"])-f(r["started_at"])).total_seconds(),2))')
    echo "| $W | $LAT | 90 | 3 | $SECS |"
    kill $P; wait $P 2>/dev/null || true
  done
done
