#!/usr/bin/env bash
# Entrypoint of the Climate API image: the first argument chooses the process.
#
#   standalone [ARGS]   API + worker + scheduler in one process (SQLite, local store); default
#   api [ARGS]          the HTTP API only             (climate-api serve)
#   worker [ARGS]       a queue worker                (climate-worker)
#   scheduler [ARGS]    the scheduler                 (climate-scheduler)
#   migrate [ARGS]      apply database migrations and exit (climate-api migrate)
#   keys ACTION ...     manage API keys               (climate-api keys create|list|revoke)
#   healthcheck [ROLE]  exit 0 when the process in this container is healthy (HEALTHCHECK)
#   -...                flags for climate-api, e.g. `--config /etc/climate-api/climate-api.yaml`
#   anything else       run as a command, e.g. `climate-api --help`
#
# Every process reads its configuration from --config FILE or CLIMATE_API_CONFIG, and any key
# can be overridden with CLIMATE_API__SECTION__KEY variables.
set -euo pipefail

# HTTP GET on 127.0.0.1:PORT; succeeds on a 200 status line. Bash only: the image has no curl.
http_ok() {
    local port="$1" path="$2" status
    exec 3<>"/dev/tcp/127.0.0.1/${port}" || return 1
    printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
    IFS= read -r -t 4 status <&3 || return 1
    exec 3<&- 3>&-
    [[ "$status" == HTTP/1.?\ 200* ]]
}

# A TCP connection to 127.0.0.1:PORT can be opened.
tcp_ok() {
    timeout 4 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# The port of a HOST:PORT (or [V6]:PORT) address.
port_of() {
    printf '%s\n' "${1##*:}"
}

# Which Climate API program runs in this container (for `healthcheck` without a role).
detect_role() {
    local cmdline exe
    for proc in /proc/[0-9]*; do
        [ -r "$proc/cmdline" ] || continue
        cmdline="$(tr '\0' ' ' <"$proc/cmdline" 2>/dev/null || true)"
        exe="${cmdline%% *}"
        case "${exe##*/}" in
            climate-worker) echo worker; return ;;
            climate-scheduler) echo scheduler; return ;;
            climate-api)
                case " $cmdline " in
                    *" migrate "* | *" keys "*) continue ;;
                esac
                echo api
                return
                ;;
        esac
    done
    echo none
}

healthcheck() {
    local role="${1:-$(detect_role)}"
    case "$role" in
        api | standalone)
            http_ok "$(port_of "${CLIMATE_API__SERVER__BIND:-0.0.0.0:8000}")" /health
            ;;
        worker)
            if [ -n "${CLIMATE_API__WORKER__METRICS_BIND:-}" ]; then
                tcp_ok "$(port_of "$CLIMATE_API__WORKER__METRICS_BIND")"
            fi
            ;;
        scheduler)
            if [ -n "${CLIMATE_API__SCHEDULER__METRICS_BIND:-}" ]; then
                tcp_ok "$(port_of "$CLIMATE_API__SCHEDULER__METRICS_BIND")"
            fi
            ;;
        *)
            echo "healthcheck: no Climate API process found" >&2
            return 1
            ;;
    esac
}

# The example configuration compiled into the binary turns authentication off because it listens
# on loopback only; in a container the API listens on 0.0.0.0 (CLIMATE_API__SERVER__BIND), so
# without a configuration file of its own a container keeps authentication on.
given_config() {
    [ -n "${CLIMATE_API_CONFIG:-}" ] && return 0
    local arg
    for arg in "$@"; do
        case "$arg" in -c | --config | --config=*) return 0 ;; esac
    done
    return 1
}

role="${1:-standalone}"
[ "$#" -gt 0 ] && shift

if [ "$role" = standalone ] || [ "${role#-}" != "$role" ]; then
    if ! given_config "$role" "$@"; then
        export CLIMATE_API__AUTH__ENABLED="${CLIMATE_API__AUTH__ENABLED:-true}"
    fi
fi

case "$role" in
    standalone) exec climate-api standalone "$@" ;;
    api | serve) exec climate-api serve "$@" ;;
    worker) exec climate-worker "$@" ;;
    scheduler) exec climate-scheduler "$@" ;;
    migrate) exec climate-api migrate "$@" ;;
    keys) exec climate-api keys "$@" ;;
    healthcheck) healthcheck "$@" ;;
    -*) exec climate-api "$role" "$@" ;;
    *) exec "$role" "$@" ;;
esac
