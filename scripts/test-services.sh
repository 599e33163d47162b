#!/usr/bin/env bash
# Makes the services the tests use reachable on loopback, starting only what is
# not already answering:
#
#   PostgreSQL 127.0.0.1:5432   Redis 127.0.0.1:6379   RabbitMQ 127.0.0.1:5672
#   S3 (moto, from .venv) 127.0.0.1:9010 with bucket climate-test
#
# RabbitMQ gets a fresh vhost `climate-test` on every run: deleting the previous one drops
# whatever earlier (perhaps interrupted) runs left behind, their quorum queues and the
# connections of orphaned processes, so no run inherits a degraded broker. A broker that
# accepts TCP connections but no longer answers the AMQP handshake is restarted.
#
# A service whose binary is missing is installed from Debian's packages first
# (apt never auto-starts services on our machines, so we start it ourselves).
# Idempotent: on a machine where everything runs it only probes the ports.
# At the end it prints the environment the tests read; get the same variables
# into your shell with `source scripts/test-env.sh`.
#
# A moto started here keeps running after the script (and `make test`) ends, so
# later runs reuse it; its pid is in target/moto.pid, its log in target/moto.log.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

S3_PORT=9010
S3_BUCKET=climate-test
S3_URL="http://127.0.0.1:$S3_PORT"

log() { printf '[test-services] %s\n' "$*"; }
die() {
    log "ERROR: $*"
    exit 1
}

port_open() {
    timeout 1 bash -c "</dev/tcp/127.0.0.1/$1" >/dev/null 2>&1
}

# wait_for SECONDS COMMAND...: polls COMMAND once a second until it succeeds.
wait_for() {
    local seconds="$1"
    shift
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            return 1
        fi
        sleep 1
    done
}

# Runs a command as root: directly, through passwordless sudo, or not at all.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "need root (or passwordless sudo) to run: $*"
    fi
}

can_be_root() {
    [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }
}

show_log() {
    local file="$1"
    if as_root test -r "$file"; then
        log "last lines of $file:"
        as_root tail -n 30 "$file" >&2 || true
    fi
}

# --- PostgreSQL --------------------------------------------------------------

# newest_version DIR_GLOB...: prints the highest version among the existing
# directories /…/<version>/…, e.g. newest_version /etc/postgresql/*/main.
newest_version() {
    local d found=""
    for d in "$@"; do
        [ -d "$d" ] || continue
        d="${d%/main}"
        found+="${d##*/}"$'\n'
    done
    [ -n "$found" ] || return 1
    printf '%s' "$found" | sort -V | tail -n1
}

pg_version() {
    # The newest PostgreSQL version that has a `main` cluster.
    newest_version /etc/postgresql/*/main
}

pg_trust_loopback() {
    local version="$1"
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    local tmp
    if as_root grep -q '^# climate-api tests: trust loopback' "$hba"; then
        return 0
    fi
    log "configuring $hba: trust 127.0.0.1/32 and ::1/128 (first match wins)"
    tmp="$(mktemp)"
    {
        echo '# climate-api tests: trust loopback TCP (added by scripts/test-services.sh)'
        echo 'host    all    all    127.0.0.1/32    trust'
        echo 'host    all    all    ::1/128         trust'
        as_root cat "$hba"
    } >"$tmp"
    # cp into the existing file keeps its owner and mode.
    as_root cp "$tmp" "$hba"
    rm -f "$tmp"
}

pg_can_connect() {
    psql -w -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1
}

ensure_postgres() {
    local fresh=0 version
    if port_open 5432; then
        log "PostgreSQL: already answering on 127.0.0.1:5432"
    else
        if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! pg_version >/dev/null; then
            log "PostgreSQL: not installed; installing"
            bash "$REPO_ROOT/scripts/setup-system.sh" postgresql
            fresh=1
        fi
        if ! version="$(pg_version)"; then
            # postgresql-common normally creates `main` on install; make sure.
            version="$(newest_version /usr/lib/postgresql/*)" ||
                die "no PostgreSQL server found under /usr/lib/postgresql"
            log "PostgreSQL: creating cluster $version/main"
            as_root pg_createcluster "$version" main
            fresh=1
        fi
        if [ "$fresh" -eq 1 ]; then
            pg_trust_loopback "$version"
        fi
        log "PostgreSQL: starting cluster $version/main"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
            log "PostgreSQL: pg_ctlcluster start exited $? (waiting for the port anyway)"
        if ! wait_for 30 port_open 5432; then
            show_log "/var/log/postgresql/postgresql-$version-main.log"
            die "PostgreSQL did not open 127.0.0.1:5432 within 30 s"
        fi
        log "PostgreSQL: started"
    fi

    if command -v psql >/dev/null 2>&1 && ! wait_for 10 pg_can_connect; then
        if [ "$fresh" -eq 1 ] && version="$(pg_version)"; then
            pg_trust_loopback "$version"
            as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
            wait_for 10 pg_can_connect || die "PostgreSQL: still cannot connect as postgres"
        else
            die "PostgreSQL answers on 5432 but 'psql -h 127.0.0.1 -U postgres' fails without a password; add 'host all all 127.0.0.1/32 trust' at the top of pg_hba.conf and reload"
        fi
    fi
}

# --- Redis -------------------------------------------------------------------

ensure_redis() {
    if port_open 6379; then
        log "Redis: already answering on 127.0.0.1:6379"
        return 0
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        log "Redis: not installed; installing"
        bash "$REPO_ROOT/scripts/setup-system.sh" redis-server
    fi
    as_root mkdir -p /var/lib/redis /var/log/redis
    log "Redis: starting"
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 \
        --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    if ! wait_for 15 port_open 6379; then
        show_log /var/log/redis/ci.log
        die "Redis did not open 127.0.0.1:6379 within 15 s"
    fi
    log "Redis: started"
}

# --- RabbitMQ ----------------------------------------------------------------

rabbitmq_ready() {
    port_open 5672 || as_root rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1
}

ensure_rabbitmq() {
    if port_open 5672; then
        log "RabbitMQ: already answering on 127.0.0.1:5672"
        return 0
    fi
    if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
        log "RabbitMQ: not installed; installing"
        bash "$REPO_ROOT/scripts/setup-system.sh" rabbitmq-server
    fi
    # /usr/sbin may be missing from a non-root PATH.
    local server
    server="$(command -v rabbitmq-server || echo /usr/sbin/rabbitmq-server)"
    log "RabbitMQ: starting (may take up to a minute)"
    as_root "$server" -detached ||
        log "RabbitMQ: rabbitmq-server -detached exited $? (waiting for the port anyway)"
    if ! wait_for 60 rabbitmq_ready; then
        local f newest=""
        for f in /var/log/rabbitmq/*.log; do
            if [ -f "$f" ] && { [ -z "$newest" ] || [ "$f" -nt "$newest" ]; }; then
                newest="$f"
            fi
        done
        [ -z "$newest" ] || show_log "$newest"
        die "RabbitMQ did not answer on 127.0.0.1:5672 within 60 s"
    fi
    # check_port_connectivity can pass a moment before loopback accepts.
    wait_for 10 port_open 5672 || die "RabbitMQ: 127.0.0.1:5672 is not accepting connections"
    log "RabbitMQ: started"
}

# amqp_answers: the broker answers an AMQP 0-9-1 protocol header with a method frame
# (connection.start, frame type 1) within 10 s, the test that counts: a broker out of file
# descriptors still completes the TCP handshake.
amqp_answers() {
    local first
    first="$(timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672 && printf "AMQP\0\0\11\1" >&3 && head -c 1 <&3 | od -An -tu1' 2>/dev/null)" || return 1
    [ "${first// /}" = 1 ]
}

rabbitmqctl_cmd() {
    command -v rabbitmqctl || echo /usr/sbin/rabbitmqctl
}

restart_rabbitmq() {
    local ctl server
    ctl="$(rabbitmqctl_cmd)"
    server="$(command -v rabbitmq-server || echo /usr/sbin/rabbitmq-server)"
    log "RabbitMQ: restarting"
    as_root timeout 60 "$ctl" -q stop >/dev/null 2>&1 || true
    wait_for 30 bash -c '! timeout 1 bash -c "</dev/tcp/127.0.0.1/5672"' 2>/dev/null || true
    as_root "$server" -detached || true
    wait_for 90 amqp_answers || die "RabbitMQ: no AMQP handshake within 90 s of a restart"
    log "RabbitMQ: restarted"
}

# Replaces the vhost the tests use (climate-test, or $CLIMATE_TEST_VHOST) with an empty one.
# Without root or rabbitmqctl the vhost cannot be managed: the tests then need
# CLIMATE_TEST_AMQP_URL pointing at a vhost they may use (e.g. .../%2f, the default one).
reset_rabbitmq_vhost() {
    local vhost="${CLIMATE_TEST_VHOST:-climate-test}" ctl
    ctl="$(rabbitmqctl_cmd)"
    if ! can_be_root || [ ! -x "$ctl" ]; then
        log "RabbitMQ: cannot manage vhosts here (needs root or passwordless sudo, and rabbitmqctl);"
        log "  export CLIMATE_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f to use the default vhost"
        return 0
    fi
    if ! amqp_answers; then
        log "RabbitMQ: the port is open but the broker does not answer the AMQP handshake"
        as_root "$ctl" -q status 2>&1 | grep -A3 -i 'file descriptors' >&2 || true
        restart_rabbitmq
    fi
    if as_root "$ctl" -q list_vhosts | grep -qx "$vhost"; then
        log "RabbitMQ: deleting vhost $vhost (queues and connections of earlier runs)"
        as_root "$ctl" -q delete_vhost "$vhost" >/dev/null
    fi
    as_root "$ctl" -q add_vhost "$vhost" >/dev/null
    as_root "$ctl" -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
    log "RabbitMQ: vhost $vhost ready"
}

# --- S3 (moto) ---------------------------------------------------------------

s3_answers() {
    curl -s -o /dev/null --max-time 2 "$S3_URL/"
}

# Creating an existing bucket is harmless (moto answers 200 or 409).
s3_bucket_ready() {
    curl -s -o /dev/null --max-time 5 -X PUT "$S3_URL/$S3_BUCKET" || return 1
    [ "$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' -I "$S3_URL/$S3_BUCKET")" = 200 ]
}

# The pid of the moto_server listening on the S3 port, if that is what listens there.
moto_listener() {
    local pid
    pid="$(ss -ltnpH "sport = :$S3_PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)"
    [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q moto_server &&
        printf '%s\n' "$pid"
}

start_moto() {
    if [ ! -x "$REPO_ROOT/.venv/bin/moto_server" ]; then
        log "S3 (moto): .venv/bin/moto_server missing; running setup-python.sh"
        bash "$REPO_ROOT/scripts/setup-python.sh"
    fi
    mkdir -p "$REPO_ROOT/target"
    log "S3 (moto): starting on $S3_URL (log: target/moto.log)"
    # setsid + nohup: survives the end of this script and of `make`, and
    # holds none of our stdio open, so a CI runner reading our output is
    # not kept waiting.
    setsid nohup "$REPO_ROOT/.venv/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" \
        </dev/null >"$REPO_ROOT/target/moto.log" 2>&1 &
    local pid=$!
    printf '%s\n' "$pid" >"$REPO_ROOT/target/moto.pid"
    local deadline=$((SECONDS + 60))
    until s3_answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log "$REPO_ROOT/target/moto.log"
            die "moto_server exited before answering"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            show_log "$REPO_ROOT/target/moto.log"
            die "moto_server did not answer on $S3_URL within 60 s"
        fi
        sleep 1
    done
    log "S3 (moto): started (pid $pid)"
}

ensure_s3() {
    if s3_answers; then
        log "S3 (moto): already answering on $S3_URL"
        if ! s3_bucket_ready; then
            # E.g. a moto_server started from another checkout whose venv is gone: it still
            # answers, with 500s. Replace it; never kill something else.
            local stale
            stale="$(moto_listener || true)"
            [ -n "$stale" ] || die "$S3_URL answers but bucket $S3_BUCKET fails, and it is not a moto_server"
            log "S3 (moto): pid $stale answers but fails on bucket $S3_BUCKET; restarting it"
            kill "$stale" 2>/dev/null || true
            local deadline=$((SECONDS + 10))
            while port_open "$S3_PORT" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
            port_open "$S3_PORT" && kill -9 "$stale" 2>/dev/null || true
            start_moto
        fi
    else
        if port_open "$S3_PORT"; then
            die "something listens on 127.0.0.1:$S3_PORT but does not answer HTTP"
        fi
        start_moto
    fi
    s3_bucket_ready || die "bucket $S3_BUCKET not reachable on $S3_URL"
    log "S3 (moto): bucket $S3_BUCKET ready"
}

ensure_postgres
ensure_redis
ensure_rabbitmq
reset_rabbitmq_vhost
ensure_s3

# shellcheck source=scripts/test-env.sh
source "$REPO_ROOT/scripts/test-env.sh"
log "all services up; the tests read (source scripts/test-env.sh to get them):"
for var in CLIMATE_TEST_DATABASE_URL CLIMATE_TEST_AMQP_URL CLIMATE_TEST_REDIS_URL \
    CLIMATE_TEST_S3_ENDPOINT CLIMATE_TEST_S3_BUCKET CLIMATE_TEST_PYTHON; do
    printf '  %s=%s\n' "$var" "${!var}"
done
