#!/usr/bin/env bash
# Benchmark harness: `make bench`, or `bash bench/run.sh [scenario...]` for a subset.
#
# Scenarios: netcdf_to_geozarr memory_vs_length cog_ingest world_bands worker_scaling (default: all).
# memory_vs_length is computed from the netcdf_to_geozarr runs (asking for it alone runs them).
#
# Every measurement runs in a fresh process (a fresh data directory, database, queue and cache
# prefix), so peak RSS (VmHWM, read from /proc right after the run, before stopping the
# process) belongs to that scenario alone. Results: a markdown table on stdout and in
# bench/results/latest.md; raw records in bench/results/raw-<stamp>.jsonl; logs of every process
# under bench/results/work/.
#
# Knobs (environment): BENCH_REPS (3), BENCH_WORKERS ("1 2 4"), BENCH_SCALING_REPS (3),
# BENCH_KEEP_WORK=1 keeps bench/results/work/ (stores, logs) after a successful run,
# BENCH_NO_BUILD=1 skips the cargo build (benchmarks whatever is in target/release).
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
WORK="$RESULTS/work"
WORKER_BIN="$REPO/target/release/climate-worker"
REPS="${BENCH_REPS:-3}"
WORKERS="${BENCH_WORKERS:-1 2 4}"
SCALING_REPS="${BENCH_SCALING_REPS:-3}"
RUN_TIMEOUT=900

# Extents (must match bench/config/climate-api.bench.yaml).
declare -A BBOX=(
    [wafr]="-19.5 0.5 9.5 19.5"
    [sle]="-13.5 6.9 -10.1 10.0"
)
SCALING_EXTENTS=(sle lbr gin civ gha tgo ben bfa)

ALL_SCENARIOS=(netcdf_to_geozarr memory_vs_length cog_ingest world_bands worker_scaling)

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

usage() {
    cat <<EOF
Usage: bash bench/run.sh [scenario...]
Scenarios: ${ALL_SCENARIOS[*]} (default: all)
Environment: BENCH_REPS=$REPS BENCH_WORKERS="$WORKERS" BENCH_SCALING_REPS=$SCALING_REPS BENCH_KEEP_WORK=0 BENCH_NO_BUILD=0
EOF
}

SCENARIOS=()
for arg in "$@"; do
    case "$arg" in
    -h | --help)
        usage
        exit 0
        ;;
    netcdf_to_geozarr | memory_vs_length | cog_ingest | world_bands | worker_scaling) SCENARIOS+=("$arg") ;;
    *)
        usage >&2
        die "unknown scenario '$arg'"
        ;;
    esac
done
[ "${#SCENARIOS[@]}" -gt 0 ] || SCENARIOS=("${ALL_SCENARIOS[@]}")
wants() {
    local s
    for s in "${SCENARIOS[@]}"; do [ "$s" = "$1" ] && return 0; done
    return 1
}

# ------------------------------------------------------------------------------------------------
# Cleanup: only the processes, database, queues and keys this script created.

PIDS=()
PG_DBS=()
QUEUES=()
REDIS_PREFIXES=()

stop_pid() {
    local pid="$1" i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop within 10 s of SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

drop_pg_db() {
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" \
        >/dev/null 2>&1 || log "could not drop database $1"
}

# Best effort: needs rabbitmqctl (the broker's own CLI, present where RabbitMQ is installed).
delete_queues() {
    command -v rabbitmqctl >/dev/null 2>&1 || return 0
    timeout 30 rabbitmqctl -q delete_queue "$1" >/dev/null 2>&1 || true
    timeout 30 rabbitmqctl -q delete_queue "$1.dlq" >/dev/null 2>&1 || true
}

delete_redis_keys() {
    redis-cli -h 127.0.0.1 --scan --pattern "$1*" 2>/dev/null |
        xargs -r redis-cli -h 127.0.0.1 del >/dev/null 2>&1 || true
}

cleanup() {
    local rc=$? pid db q p
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    for db in "${PG_DBS[@]}"; do drop_pg_db "$db"; done
    for q in "${QUEUES[@]}"; do delete_queues "$q"; done
    for p in "${REDIS_PREFIXES[@]}"; do delete_redis_keys "$p"; done
    if [ "$rc" -ne 0 ]; then
        log "failed (exit $rc); process logs are under $WORK"
    elif [ "${BENCH_KEEP_WORK:-0}" != 1 ]; then
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------------
# Helpers

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }

# /proc/PID/status VmHWM (peak resident set) in bytes.
vmhwm() { awk '/^VmHWM:/ {print $2 * 1024}' "/proc/$1/status"; }

# /proc/PID/io rchar: bytes the process read through read()/pread() (page cache included).
rchar() { awk '/^rchar:/ {print $2}' "/proc/$1/io" 2>/dev/null || echo 0; }

# wait_ready BASE_URL LOG PID...: until GET /ready answers 2xx; fails if a process exits.
wait_ready() {
    local base="$1" logf="$2" pid
    shift 2
    local deadline=$((SECONDS + 90))
    until curl -sf -o /dev/null "$base/ready"; do
        for pid in "$@"; do
            kill -0 "$pid" 2>/dev/null || {
                tail -n 40 "$logf" >&2 || true
                die "process $pid exited during start-up (logs: $(dirname "$logf"))"
            }
        done
        [ "$SECONDS" -lt "$deadline" ] || die "$base not ready after 90 s (logs: $(dirname "$logf"))"
        sleep 0.05
    done
}

# jq costs ~50 ms per start here, so the hot paths (posting, polling) read the compact JSON the
# API returns with bash regexes instead; jq only assembles the records.
RE_STATUS='"status":"([a-z_]+)"'  # the first "status" of a run is the run's own
RE_ID='"ingestion_id":"([^"]+)"'

# post_ingestion BASE BODY: POST /ingestions, expects 202; prints the ingestion id.
post_ingestion() {
    local base="$1" body="$2" out code
    out="$(curl -s -w '\n%{http_code}' -X POST -H 'content-type: application/json' \
        -d "$body" "$base/ingestions")"
    code="${out##*$'\n'}"
    out="${out%$'\n'*}"
    [ "$code" = 202 ] && [[ "$out" =~ $RE_ID ]] ||
        die "POST $base/ingestions $body answered $code: $out"
    printf '%s\n' "${BASH_REMATCH[1]}"
}

# wait_runs BASE LOGDIR ID...: polls GET /ingestions/ID of the unfinished runs every 50 ms until
# all succeeded; prints the final run JSONs, one a line, in the order given. Dies on failure.
wait_runs() {
    local base="$1" logdir="$2" id run f pending
    shift 2
    local ids=("$@")
    declare -A final=()
    local deadline=$((SECONDS + RUN_TIMEOUT))
    while :; do
        pending=0
        for id in "${ids[@]}"; do
            [ -n "${final[$id]:-}" ] && continue
            if run="$(curl -sf "$base/ingestions/$id")" && [[ "$run" =~ $RE_STATUS ]]; then
                case "${BASH_REMATCH[1]}" in
                succeeded)
                    final[$id]="$run"
                    continue
                    ;;
                failed | cancelled)
                    log "run $id ${BASH_REMATCH[1]}: $run"
                    for f in "$logdir"/*.log; do
                        log "--- $f (last 30 lines)"
                        tail -n 30 "$f" >&2
                    done
                    die "run $id ${BASH_REMATCH[1]} (logs: $logdir)"
                    ;;
                esac
            fi
            pending=$((pending + 1))
        done
        [ "$pending" -gt 0 ] || break
        [ "$SECONDS" -lt "$deadline" ] || die "$pending run(s) not finished after ${RUN_TIMEOUT}s (logs: $logdir)"
        sleep 0.05
    done
    for id in "${ids[@]}"; do printf '%s\n' "${final[$id]}"; done
}

# ingest_body DATASET EXTENT START [END]
ingest_body() {
    if [ -n "${4:-}" ]; then
        printf '{"dataset_id":"%s","extent_id":"%s","start":"%s","end":"%s"}' "$@"
    else
        printf '{"dataset_id":"%s","extent_id":"%s","start":"%s"}' "$1" "$2" "$3"
    fi
}

record() { jq -c . <<<"$1" >>"$RAW"; }

# store_dir DATA_STORE_ROOT DATASET_ID: the (single) version directory holding zarr.json.
store_dir() {
    local f
    f="$(ls -d "$1/datasets/$2"/*/zarr.json 2>/dev/null | head -n 1)"
    [ -n "$f" ] || die "no Zarr store under $1/datasets/$2"
    dirname "$f"
}

warm_cache() { cat "$@" >/dev/null; }

# rust_standalone LABEL TEMPLATE EXTENT START [END]: one run in a fresh standalone process.
# Sets R to a JSON record: run JSON, wall seconds, VmHWM, rchar delta, output bytes, store path.
# (Not called in $(...), so the process id reaches PIDS and the EXIT trap.)
RUST_ENV=()
rust_standalone() {
    local label="$1" template="$2" extent="$3" start="$4" end="${5:-}"
    local dir="$WORK/$label" port base pid id t0 t1 run hwm r0 r1 store bytes
    rm -rf "$dir"
    mkdir -p "$dir"
    port="$(free_port)"
    base="http://127.0.0.1:$port"
    # RUST_ENV: extra VAR=value settings for this run (a scenario's configuration overrides).
    env -u CLIMATE_API_CONFIG BENCH_DATA_DIR="$dir/data" BENCH_BIND="127.0.0.1:$port" \
        BENCH_WORKER_CONCURRENCY=2 CLIMATE_API_LOG_FORMAT=text "${RUST_ENV[@]}" \
        "$API_BIN" --config "$CONFIG" >"$dir/climate-api.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_ready "$base" "$dir/climate-api.log" "$pid"
    r0="$(rchar "$pid")"
    t0="$(now)"
    id="$(post_ingestion "$base" "$(ingest_body "$template" "$extent" "$start" "$end")")"
    run="$(wait_runs "$base" "$dir" "$id")"
    t1="$(now)"
    hwm="$(vmhwm "$pid")"
    r1="$(rchar "$pid")"
    stop_pid "$pid"
    store="$(store_dir "$dir/data/store" "${template}_${extent}")"
    bytes="$(du -sb "$store" | cut -f1)"
    R="$(jq -cn --argjson run "$run" --arg wall "$(elapsed "$t0" "$t1")" --arg hwm "$hwm" \
        --arg rchar "$((r1 - r0))" --arg bytes "$bytes" --arg store "$store" \
        '{run: $run, wall_seconds: ($wall | tonumber), peak_rss_bytes: ($hwm | tonumber),
          rchar_bytes: ($rchar | tonumber), output_bytes: ($bytes | tonumber), store: $store}')"
}

# ------------------------------------------------------------------------------------------------
# Set-up

command -v curl >/dev/null && command -v jq >/dev/null || bash scripts/setup-system.sh jq curl
[ -x "$PY" ] && "$PY" -c 'import xarray, zarr, netCDF4, tifffile' 2>/dev/null ||
    bash scripts/setup-python.sh
"$PY" -c 'import xarray, zarr, netCDF4, tifffile' ||
    die "the Python venv lacks xarray/zarr/netCDF4/tifffile; run: bash scripts/setup-python.sh"

mkdir -p "$RESULTS"
if [ ! -f "$DATA/era5_t2m_0073d.nc" ] || [ ! -f "$DATA/era5_t2m_0730d.nc" ] ||
    [ ! -e "$DATA/chirps/2024/chirps-v3.0.rnl.2024.01.30.cog" ]; then
    log "generating inputs (bench/make_inputs.py)"
    "$PY" "$BENCH/make_inputs.py"
fi

# The workspace's default member is the api crate only, so name both binaries' packages
# (a no-op when they are up to date).
if [ "${BENCH_NO_BUILD:-0}" = 1 ]; then
    log "BENCH_NO_BUILD=1: using the existing binaries in target/release (they may not match the tree)"
else
    log "building release binaries (cargo build --release --bins -p climate-api -p climate-worker)"
    cargo build --release --bins -p climate-api -p climate-worker
fi
[ -x "$API_BIN" ] && [ -x "$WORKER_BIN" ] || die "release binaries missing after the build"

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RAW="$RESULTS/raw-$STAMP.jsonl"
: >"$RAW"
rm -rf "$WORK"
mkdir -p "$WORK"
BENCH_T0=$SECONDS
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# ------------------------------------------------------------------------------------------------
# netcdf_to_geozarr (+ memory_vs_length)

if wants netcdf_to_geozarr || wants memory_vs_length; then
    for days in 73 730; do
        tag="$(printf '%04d' "$days")"
        nc="$DATA/era5_t2m_${tag}d.nc"
        template="bench_era5_t2m_${tag}d"
        warm_cache "$nc"
        for rep in $(seq 1 "$REPS"); do
            log "netcdf_to_geozarr: ${days} days, Rust, repetition $rep/$REPS"
            rust_standalone "nc-${days}-rust-$rep" "$template" wafr 2020-01-01
            record "$(jq -c --arg days "$days" --arg rep "$rep" \
                '{scenario: "netcdf_to_geozarr", impl: "rust", days: ($days | tonumber), rep: ($rep | tonumber)} + .' <<<"$R")"
            if [ "$rep" = 1 ]; then rust_store="$(jq -r .store <<<"$R")"; fi
        done
        for rep in $(seq 1 "$REPS"); do
            log "netcdf_to_geozarr: ${days} days, xarray, repetition $rep/$REPS"
            out="$WORK/nc-${days}-xarray-$rep/store.zarr"
            mkdir -p "$(dirname "$out")"
            # shellcheck disable=SC2086
            r="$("$PY" "$BENCH/xarray_write.py" "$nc" "$out" --bbox ${BBOX[wafr]})"
            record "$(jq -c --arg days "$days" --arg rep "$rep" --arg store "$out" \
                '{scenario: "netcdf_to_geozarr", impl: "xarray", days: ($days | tonumber), rep: ($rep | tonumber), store: $store} + .' <<<"$r")"
            if [ "$rep" = 1 ]; then xr_store="$out"; fi
        done
        log "netcdf_to_geozarr: ${days} days, comparing the Rust and xarray stores"
        cmp="$("$PY" "$BENCH/compare.py" "$rust_store" "$xr_store")" ||
            die "the Rust and xarray stores differ for ${days} days ($rust_store vs $xr_store)"
        record "$(jq -c --arg days "$days" '{scenario: "netcdf_compare", days: ($days | tonumber)} + .' <<<"$cmp")"
    done
fi

# ------------------------------------------------------------------------------------------------
# cog_ingest

if wants cog_ingest; then
    cogs=("$DATA"/chirps/2024/chirps-v3.0.rnl.2024.01.*.cog)
    warm_cache "${cogs[@]}"
    for extent in sle wafr; do
        # shellcheck disable=SC2086
        est="$("$PY" "$BENCH/cog_window.py" --bbox ${BBOX[$extent]} "${cogs[@]}")"
        record "$(jq -c --arg x "$extent" '{scenario: "cog_window", extent: $x} + .' <<<"$est")"
        for rep in $(seq 1 "$REPS"); do
            log "cog_ingest: 30 CHIRPS days over $extent, repetition $rep/$REPS"
            rust_standalone "cog-$extent-$rep" bench_chirps_daily "$extent" 2024-01-01 2024-01-30
            record "$(jq -c --arg x "$extent" --arg rep "$rep" --arg n "${#cogs[@]}" \
                '{scenario: "cog_ingest", extent: $x, days: ($n | tonumber), rep: ($rep | tonumber)} + .' <<<"$R")"
        done
    done
fi

# ------------------------------------------------------------------------------------------------
# world_bands: the whole CHIRPS grid (7200 × 2400, pyramid levels 1..5), 30 days in one time
# chunk, written in bands of chunk rows (worker.band_memory_mib, default 256) versus whole time
# chunks (a budget larger than the grid, as before bands existed).

if wants world_bands; then
    cogs=("$DATA"/chirps/2024/chirps-v3.0.rnl.2024.01.*.cog)
    warm_cache "${cogs[@]}"
    for budget in 256 100000; do
        for rep in $(seq 1 "$REPS"); do
            log "world_bands: 30 CHIRPS days over the world, band budget ${budget} MiB, repetition $rep/$REPS"
            RUST_ENV=("CLIMATE_API__WORKER__BAND_MEMORY_MIB=$budget")
            rust_standalone "world-$budget-$rep" bench_chirps_daily world 2024-01-01 2024-01-30
            RUST_ENV=()
            record "$(jq -c --arg b "$budget" --arg rep "$rep" --arg n "${#cogs[@]}" \
                '{scenario: "world_bands", band_mib: ($b | tonumber), days: ($n | tonumber), rep: ($rep | tonumber)} + .' <<<"$R")"
        done
    done
fi

# ------------------------------------------------------------------------------------------------
# worker_scaling (distributed: PostgreSQL, RabbitMQ, Redis, a shared file:// store)

port_open() { timeout 1 bash -c "</dev/tcp/127.0.0.1/$1" >/dev/null 2>&1; }

# What the sessions of database $1 are doing and which locks they hold or wait for (printed when
# a process hangs in start-up: processes connect and migrate the database before anything else).
pg_diagnostics() {
    log "PostgreSQL sessions and locks of database $1:"
    psql -h 127.0.0.1 -U postgres -d postgres -c "SELECT pid, state, wait_event_type, wait_event,
        now() - xact_start AS xact_age, left(query, 100) AS query
        FROM pg_stat_activity WHERE datname = '$1' ORDER BY pid" || true
    psql -h 127.0.0.1 -U postgres -d postgres -c "SELECT l.pid, l.locktype, l.mode, l.granted,
        l.objid, l.relation::regclass FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE a.datname = '$1' AND l.locktype <> 'virtualxid' ORDER BY l.granted, l.pid" || true
}

if wants worker_scaling; then
    if ! port_open 5432 || ! port_open 5672 || ! port_open 6379; then
        log "PostgreSQL, RabbitMQ or Redis is not answering; starting them (scripts/test-services.sh)"
        bash scripts/test-services.sh >&2
    fi
    warm_cache "$DATA"/chirps/2024/chirps-v3.0.rnl.2024.01.*.cog "$DATA/era5_t2m_0730d.nc"
    for w in $WORKERS; do
        for rep in $(seq 1 "$SCALING_REPS"); do
            log "worker_scaling: $w worker(s), ${#SCALING_EXTENTS[@]} runs of 30 CHIRPS days, repetition $rep/$SCALING_REPS"
            uid="$(date +%s%N | sha256sum | cut -c1-12)"
            db="climate_bench_${uid}"
            queue="climate.bench.${uid}"
            prefix="climate-bench-${uid}-"
            dir="$WORK/scaling-w$w-$rep"
            rm -rf "$dir"
            mkdir -p "$dir/store"
            psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $db" >/dev/null
            PG_DBS+=("$db")
            QUEUES+=("$queue")
            REDIS_PREFIXES+=("$prefix")
            port="$(free_port)"
            base="http://127.0.0.1:$port"
            denv=(
                env -u CLIMATE_API_CONFIG CLIMATE_API_LOG_FORMAT=text
                BENCH_BIND="127.0.0.1:$port" BENCH_WORKER_CONCURRENCY=1
                CLIMATE_API__DATABASE__URL="postgres://postgres@127.0.0.1:5432/$db"
                CLIMATE_API__QUEUE__URL="amqp://guest:guest@127.0.0.1:5672/%2f"
                CLIMATE_API__QUEUE__NAME="$queue"
                CLIMATE_API__CACHE__URL="redis://127.0.0.1:6379"
                CLIMATE_API__CACHE__PREFIX="$prefix"
                CLIMATE_API__STORE__URL="file://$dir/store"
            )
            "${denv[@]}" BENCH_DATA_DIR="$dir/api" "$API_BIN" serve --config "$CONFIG" \
                >"$dir/climate-api.log" 2>&1 &
            api_pid=$!
            PIDS+=("$api_pid")
            wait_ready "$base" "$dir/climate-api.log" "$api_pid"
            worker_pids=()
            for i in $(seq 1 "$w"); do
                "${denv[@]}" BENCH_DATA_DIR="$dir/worker-$i" "$WORKER_BIN" --config "$CONFIG" \
                    >"$dir/climate-worker-$i.log" 2>&1 &
                worker_pids+=("$!")
                PIDS+=("$!")
            done
            # A worker is ready when it logs "worker started" (just before it starts consuming).
            for i in $(seq 1 "$w"); do
                deadline=$((SECONDS + 90))
                until grep -q "worker started" "$dir/climate-worker-$i.log" 2>/dev/null; do
                    kill -0 "${worker_pids[$((i - 1))]}" 2>/dev/null || {
                        tail -n 40 "$dir/climate-worker-$i.log" >&2
                        die "climate-worker $i exited during start-up (logs: $dir)"
                    }
                    if [ "$SECONDS" -ge "$deadline" ]; then
                        pg_diagnostics "$db" >&2
                        die "climate-worker $i not started after 90 s (logs: $dir)"
                    fi
                    sleep 0.05
                done
            done
            sleep 0.5 # let the consumers attach
            # All runs are posted at once (concurrent requests), then polled together.
            t0="$(now)"
            post_pids=()
            for extent in "${SCALING_EXTENTS[@]}"; do
                post_ingestion "$base" "$(ingest_body bench_chirps_daily "$extent" 2024-01-01 2024-01-30)" \
                    >"$dir/post-$extent.id" &
                post_pids+=("$!")
            done
            for pid in "${post_pids[@]}"; do wait "$pid" || die "an ingestion was not accepted"; done
            ids=()
            for extent in "${SCALING_EXTENTS[@]}"; do ids+=("$(<"$dir/post-$extent.id")"); done
            runs="$(wait_runs "$base" "$dir" "${ids[@]}")"
            t1="$(now)"
            # Then one long run (730 NetCDF days over wafr): its segments (worker.segment_chunks
            # time chunks each) are what several workers can share.
            t0b="$(now)"
            id="$(post_ingestion "$base" "$(ingest_body bench_era5_t2m_0730d wafr 2020-01-01)")"
            long_run="$(wait_runs "$base" "$dir" "$id")"
            t1b="$(now)"
            segments="$(sed 's/\x1b\[[0-9;]*m//g' "$dir"/climate-worker-*.log |
                grep "run.id=$id" | grep -o 'segments=[0-9]*' | head -n 1 | cut -d= -f2)"
            hwms=()
            for pid in "${worker_pids[@]}"; do hwms+=("$(vmhwm "$pid")"); done
            for pid in "${worker_pids[@]}" "$api_pid"; do stop_pid "$pid"; done
            # Clean up now rather than at exit, so deployments do not pile up in the services.
            drop_pg_db "$db"
            delete_queues "$queue"
            delete_redis_keys "$prefix"
            hwm="$(printf '%s\n' "${hwms[@]}" | sort -n | tail -n 1)"
            record "$(jq -cs --arg w "$w" --arg rep "$rep" --arg wall "$(elapsed "$t0" "$t1")" --arg hwm "$hwm" \
                '{scenario: "worker_scaling", workers: ($w | tonumber), rep: ($rep | tonumber),
                  wall_seconds: ($wall | tonumber), max_worker_peak_rss_bytes: ($hwm | tonumber),
                  runs: [.[] | {dataset_id, created_at, started_at, finished_at, attempts}]}' <<<"$runs")"
            record "$(jq -c --arg w "$w" --arg rep "$rep" --arg wall "$(elapsed "$t0b" "$t1b")" \
                --arg segments "${segments:-0}" --arg hwm "$hwm" \
                '{scenario: "worker_scaling_long", workers: ($w | tonumber), rep: ($rep | tonumber),
                  wall_seconds: ($wall | tonumber), segments: ($segments | tonumber),
                  max_worker_peak_rss_bytes: ($hwm | tonumber),
                  run: {dataset_id, created_at, started_at, finished_at, attempts}}' <<<"$long_run")"
        done
    done
fi

# ------------------------------------------------------------------------------------------------
# Report

META="$(jq -cn --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    --arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+uncommitted changes')$([ "${BENCH_NO_BUILD:-0}" = 1 ] && echo ' (BENCH_NO_BUILD=1: binaries not rebuilt, may be older)')" \
    --arg nproc "$(nproc)" \
    --arg cpu "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
    --arg mem "$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)" \
    --arg os "$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")" \
    --arg rustc "$(rustc --version 2>/dev/null || echo unknown)" \
    --arg reps "$REPS" --arg secs "$((SECONDS - BENCH_T0))" \
    --arg load "$LOAD_START → $(cut -d' ' -f1-3 /proc/loadavg)" \
    '{date: $date, commit: $commit, nproc: $nproc, cpu: $cpu, mem: $mem, os: $os, rustc: $rustc,
      reps: ($reps | tonumber), harness_seconds: ($secs | tonumber), loadavg: $load}')"
"$PY" "$BENCH/report.py" "$RAW" --meta "$META" --out "$RESULTS/latest.md"
cp "$RESULTS/latest.md" "$RESULTS/report-$STAMP.md"
log "wrote $RESULTS/latest.md (raw records: $RAW)"
