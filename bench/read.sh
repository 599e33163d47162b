#!/usr/bin/env bash
# Read-surface benchmarks: `make bench-read`, or `bash bench/read.sh`.
#
# One standalone climate-api (release build, bench config) holds two datasets:
#   - 10 years of daily ERA5-Land-like temperature over Sierra Leone (bench_era5_t2m_3650d_sle,
#     3650 x 32 x 35, 30-day chunks), and
#   - 3 CHIRPS-layout days over the world (bench_chirps_daily_world, 7200 x 2400, pyramid
#     levels 1..5).
# and three measurements are taken against it:
#   zarr_serving  one chunk object of the 10-year store, GET /zarr/... on climate-api versus the
#                 same file served by nginx from the store directory (static files): wrk, 2
#                 threads, 32 connections, BENCH_WRK_SECONDS (10) each; requests/s, p50, p99.
#   edr_position  the 10-year daily series at a point: GET .../position (CoverageJSON), median of
#                 BENCH_REPS_READ (30) requests, versus xarray + zarr-python `.sel(method=
#                 "nearest").values` on the same store opened from disk (opened once; median of
#                 the same count), the cold open + first read reported too.
#   tiles         WebMercatorQuad PNG tiles over Sierra Leone at zooms 0, 2, 4, 6, 8 of the world
#                 store: median and p95 latency of BENCH_REPS_READ requests per zoom.
# Results: a markdown table on stdout and in bench/results/read-latest.md, raw records in
# bench/results/read-raw-<stamp>.jsonl. Both servers and wrk share this machine's cores.
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
WORK="$RESULTS/read-work"
REPS="${BENCH_REPS_READ:-30}"
WRK_SECONDS="${BENCH_WRK_SECONDS:-10}"
RUN_TIMEOUT=1800

log() { printf '[bench-read] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

PIDS=()
cleanup() {
    local rc=$? pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [ "$rc" -eq 0 ] || log "failed (exit $rc); logs under $WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ingest BASE BODY: POST /ingestions and wait until the run succeeded.
ingest() {
    local base="$1" body="$2" run id status deadline=$((SECONDS + RUN_TIMEOUT))
    run="$(curl -sf -X POST -H 'content-type: application/json' -d "$body" "$base/ingestions")" ||
        die "POST /ingestions $body failed"
    id="$(jq -r .ingestion_id <<<"$run")"
    while :; do
        status="$(curl -sf "$base/ingestions/$id" | jq -r .status)"
        case "$status" in
        succeeded) return 0 ;;
        failed | cancelled) die "run $id $status: $(curl -s "$base/ingestions/$id")" ;;
        esac
        [ "$SECONDS" -lt "$deadline" ] || die "run $id not finished after ${RUN_TIMEOUT}s"
        sleep 0.2
    done
}

# stats: reads seconds, one per line; prints {"median_ms":…, "p95_ms":…, "n":…}.
stats() {
    "$PY" -c '
import json, sys
import numpy as np
v = np.array([float(l) for l in sys.stdin if l.strip()]) * 1000
print(json.dumps({"median_ms": round(float(np.median(v)), 2), "p95_ms": round(float(np.percentile(v, 95)), 2), "n": int(v.size)}))'
}

# timed URL: REPS requests, their total times in seconds, one per line (fails on non-200).
timed() {
    local url="$1" i code t
    for i in $(seq 1 "$REPS"); do
        read -r code t < <(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "$url")
        [ "$code" = 200 ] || die "GET $url answered $code"
        printf '%s\n' "$t"
    done
}

# wrk_run URL: requests/s, p50 and p99 (ms) as JSON.
wrk_run() {
    wrk -t2 -c32 -d"${WRK_SECONDS}s" --latency "$1" | "$PY" "$BENCH/wrk_summary.py"
}

# --- set-up ----------------------------------------------------------------------------------

command -v jq >/dev/null && command -v curl >/dev/null && command -v wrk >/dev/null &&
    command -v nginx >/dev/null || bash scripts/setup-system.sh jq curl wrk nginx-light
[ -x "$PY" ] || bash scripts/setup-python.sh
if [ ! -f "$DATA/era5_t2m_3650d.nc" ] || [ ! -e "$DATA/chirps/2024/chirps-v3.0.rnl.2024.01.03.cog" ]; then
    log "generating inputs (bench/make_inputs.py --days 3650)"
    "$PY" "$BENCH/make_inputs.py" --days 3650
fi
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "building the release binary"
    cargo build --release --bin climate-api -p climate-api
fi
rm -rf "$WORK"
mkdir -p "$WORK" "$RESULTS"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RAW="$RESULTS/read-raw-$STAMP.jsonl"
: >"$RAW"

port="$(free_port)"
base="http://127.0.0.1:$port"
env -u CLIMATE_API_CONFIG BENCH_DATA_DIR="$WORK/data" BENCH_BIND="127.0.0.1:$port" \
    BENCH_WORKER_CONCURRENCY=2 CLIMATE_API_LOG_FORMAT=text \
    "$API_BIN" --config "$CONFIG" >"$WORK/climate-api.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 600); do curl -sf -o /dev/null "$base/ready" && break; sleep 0.1; done
curl -sf -o /dev/null "$base/ready" || die "climate-api not ready (log: $WORK/climate-api.log)"

log "ingesting 10 years of daily temperature over Sierra Leone"
ingest "$base" '{"dataset_id":"bench_era5_t2m_3650d","extent_id":"sle","start":"2020-01-01"}'
log "ingesting 3 CHIRPS days over the world"
ingest "$base" '{"dataset_id":"bench_chirps_daily","extent_id":"world","start":"2024-01-01","end":"2024-01-03"}'
ERA=bench_era5_t2m_3650d_sle
WORLD=bench_chirps_daily_world
store="$(dirname "$(ls -d "$WORK/data/store/datasets/$ERA"/*/zarr.json | head -n 1)")"
nt="$(jq '.consolidated_metadata.metadata.t2m.shape[0]' "$store/zarr.json")"
log "10-year store: $nt days at $store"

# --- zarr_serving ----------------------------------------------------------------------------

chunk="t2m/c/1/0/0"
[ -f "$store/$chunk" ] || die "no chunk $chunk in $store"
nport="$(free_port)"
cat >"$WORK/nginx.conf" <<NGINX
worker_processes 2;
error_log $WORK/nginx-error.log;
pid $WORK/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$nport;
        root $store;
        etag on;
    }
}
NGINX
nginx -c "$WORK/nginx.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$nport/$chunk" && break; sleep 0.1; done
cmp <(curl -sf "http://127.0.0.1:$nport/$chunk") <(curl -sf "$base/zarr/$ERA/$chunk") ||
    die "nginx and climate-api serve different bytes for $chunk"
bytes="$(stat -c %s "$store/$chunk")"
log "zarr_serving: $chunk ($bytes bytes), climate-api"
api="$(wrk_run "$base/zarr/$ERA/$chunk")"
log "zarr_serving: nginx"
ngx="$(wrk_run "http://127.0.0.1:$nport/$chunk")"
jq -c -n --argjson a "$api" --argjson n "$ngx" --arg b "$bytes" \
    '{scenario: "zarr_serving", object_bytes: ($b | tonumber), api: $a, nginx: $n}' >>"$RAW"

# --- edr_position ----------------------------------------------------------------------------

lon=-11.83
lat=8.47
log "edr_position: $REPS requests of the $nt-day series at ($lon, $lat)"
curl -sf "$base/ogcapi/collections/$ERA/position?coords=POINT($lon%20$lat)" -o "$WORK/position.json"
api_pos="$(timed "$base/ogcapi/collections/$ERA/position?coords=POINT($lon%20$lat)" | stats)"
xr_pos="$("$PY" - "$store" "$lon" "$lat" "$REPS" "$WORK/position.json" <<'PYEOF'
import json, sys, time
import numpy as np
import xarray as xr
store, lon, lat, reps, served = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
t0 = time.perf_counter()
ds = xr.open_zarr(store, consolidated=True, zarr_format=3)
first = ds.t2m.sel(x=lon, y=lat, method="nearest").values
cold = time.perf_counter() - t0
times = []
for _ in range(reps):
    t = time.perf_counter()
    v = ds.t2m.sel(x=lon, y=lat, method="nearest").values
    times.append(time.perf_counter() - t)
doc = json.load(open(served))
got = np.array([np.nan if x is None else x for x in doc["ranges"]["t2m"]["values"]], dtype="float32")
assert np.array_equal(np.isnan(got), np.isnan(v)) and np.array_equal(got[~np.isnan(got)], v[~np.isnan(v)]), "served series differs from xarray's"
print(json.dumps({"median_ms": round(float(np.median(times)) * 1000, 2),
                  "p95_ms": round(float(np.percentile(times, 95)) * 1000, 2),
                  "cold_open_and_read_ms": round(cold * 1000, 2), "n": reps, "values": int(v.size)}))
PYEOF
)"
jq -c -n --argjson a "$api_pos" --argjson x "$xr_pos" --arg nt "$nt" \
    '{scenario: "edr_position", days: ($nt | tonumber), api: $a, xarray: $x}' >>"$RAW"

# --- tiles -----------------------------------------------------------------------------------

for z in 0 2 4 6 8; do
    read -r tx ty < <("$PY" -c "
import math
z, lon, lat = $z, -11.8, 8.5
n = 2 ** z
print(int((lon + 180) / 360 * n), int((1 - math.log(math.tan(math.radians(lat)) + 1 / math.cos(math.radians(lat))) / math.pi) / 2 * n))")
    url="$base/ogcapi/collections/$WORLD/map/tiles/WebMercatorQuad/$z/$ty/$tx?datetime=2024-01-02"
    log "tiles: zoom $z ($ty/$tx)"
    curl -sf -o /dev/null "$url" || die "tile $url failed"
    t="$(timed "$url" | stats)"
    jq -c -n --argjson t "$t" --arg z "$z" '{scenario: "tiles", zoom: ($z | tonumber)} + $t' >>"$RAW"
done

# --- report ----------------------------------------------------------------------------------

"$PY" - "$RAW" >"$RESULTS/read-latest.md" <<'PYEOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
by = lambda s: [r for r in recs if r["scenario"] == s]
out = ["# Read-surface benchmarks", ""]
z = by("zarr_serving")[0]
a, n = z["api"], z["nginx"]
out += ["## /zarr chunk serving vs nginx (static files)", "",
        f"One {z['object_bytes']} B chunk object, wrk -t2 -c32.", "",
        "| server | requests/s | p50 ms | p99 ms | non-2xx |", "|---|---|---|---|---|",
        f"| climate-api /zarr | {a['requests_per_s']:.0f} | {a['p50_ms']} | {a['p99_ms']} | {a['non_2xx']} |",
        f"| nginx | {n['requests_per_s']:.0f} | {n['p50_ms']} | {n['p99_ms']} | {n['non_2xx']} |",
        "", f"Ratio climate-api / nginx: **{a['requests_per_s'] / n['requests_per_s']:.2f}** of nginx's throughput.", ""]
e = by("edr_position")[0]
out += ["## EDR position, 10-year daily series", "",
        f"{e['days']} values at one point; median of {e['api']['n']} requests.", "",
        "| reader | median ms | p95 ms |", "|---|---|---|",
        f"| GET /ogcapi/.../position (HTTP + CoverageJSON) | {e['api']['median_ms']} | {e['api']['p95_ms']} |",
        f"| xarray `.sel(...).values`, store opened once | {e['xarray']['median_ms']} | {e['xarray']['p95_ms']} |",
        "", f"xarray cold open + first read: {e['xarray']['cold_open_and_read_ms']} ms.", ""]
out += ["## Map tiles (WebMercatorQuad PNG, world CHIRPS store with pyramids)", "",
        "| zoom | median ms | p95 ms |", "|---|---|---|"]
for t in by("tiles"):
    out.append(f"| {t['zoom']} | {t['median_ms']} | {t['p95_ms']} |")
print("\n".join(out))
PYEOF
cat "$RESULTS/read-latest.md"
