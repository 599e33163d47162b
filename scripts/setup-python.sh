#!/usr/bin/env bash
# Creates the Python virtualenv at .venv (repo root) for the interop tests and
# the S3 test server (moto), and installs tests/interop/requirements.txt.
#
# Idempotent: the venv is (re)created only if missing or broken, and packages
# are reinstalled only when the requirements file changed since the last
# successful install (its sha256 is kept in .venv/.requirements.sha).
#
# PYTHON=/path/to/python3.11 overrides the interpreter used to create the venv.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
REQUIREMENTS="$REPO_ROOT/tests/interop/requirements.txt"
STAMP="$VENV/.requirements.sha"

log() { printf '[setup-python] %s\n' "$*"; }

pick_python() {
    if [ -n "${PYTHON:-}" ]; then
        printf '%s\n' "$PYTHON"
        return
    fi
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then
            command -v "$candidate"
            return
        fi
    done
    return 1
}

venv_ok() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)' >/dev/null 2>&1 &&
        "$VENV/bin/python" -m pip --version >/dev/null 2>&1
}

if [ ! -f "$REQUIREMENTS" ]; then
    log "missing $REQUIREMENTS"
    exit 1
fi

if ! venv_ok; then
    if ! python="$(pick_python)"; then
        log "no python3 found; install python3 (and python3-venv) first"
        exit 1
    fi
    if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        # Debian's own python3 ships venv/ensurepip in a separate package.
        log "$python lacks venv/ensurepip; installing python3-venv"
        bash "$REPO_ROOT/scripts/setup-system.sh" python3-venv
    fi
    if [ -e "$VENV" ]; then
        log "existing $VENV is broken; recreating it"
        rm -rf "$VENV"
    fi
    log "creating $VENV with $python ($("$python" --version 2>&1))"
    "$python" -m venv "$VENV"
fi

want_sha="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
have_sha="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want_sha" = "$have_sha" ]; then
    log "requirements unchanged (sha256 $want_sha); nothing to install"
    exit 0
fi

log "installing $REQUIREMENTS into $VENV"
rm -f "$STAMP"
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
    -r "$REQUIREMENTS"
# A failed install leaves no stamp, so the next run tries again.
printf '%s\n' "$want_sha" >"$STAMP"
log "installed; $("$VENV/bin/python" --version 2>&1), stamp $want_sha"
