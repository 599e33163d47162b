#!/usr/bin/env bash
# Installs the Debian packages the build needs, if any are missing.
#
# Usage: scripts/setup-system.sh [EXTRA_PACKAGE...]
#
# With no arguments it checks the build's own packages; extra package names are
# checked (and installed) as well, which is how scripts/test-services.sh brings
# in a database or broker that a fresh machine lacks. Safe to run repeatedly:
# when everything is present it only runs `dpkg -s` and exits.
#
# Runs as root; otherwise it uses sudo when available, else it prints what to
# install and exits 1.
set -euo pipefail

# cmake + g++ build PROJ from source (proj-sys); libnetcdf-dev + pkg-config serve
# netcdf-sys; make drives the project's entry points; curl is used by the test
# scripts to talk to the S3 test server.
BUILD_PACKAGES=(cmake libnetcdf-dev pkg-config g++ make curl)

log() { printf '[setup-system] %s\n' "$*"; }

is_installed() {
    # `dpkg -s` also succeeds for a removed package whose config files remain,
    # so look at the status line rather than the exit code alone.
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

if ! command -v dpkg >/dev/null 2>&1; then
    log "dpkg not found: this script supports Debian/Ubuntu only."
    log "Install by hand: ${BUILD_PACKAGES[*]} $*"
    exit 1
fi

wanted=("${BUILD_PACKAGES[@]}" "$@")
missing=()
for pkg in "${wanted[@]}"; do
    if ! is_installed "$pkg"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    log "all packages present: ${wanted[*]}"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo_cmd=()
elif command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
else
    log "missing packages: ${missing[*]}"
    log "not root and no sudo; install them with:"
    log "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
    exit 1
fi

log "installing: ${missing[*]}"
"${sudo_cmd[@]}" apt-get update
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"

for pkg in "${missing[@]}"; do
    if ! is_installed "$pkg"; then
        log "package $pkg is still not installed"
        exit 1
    fi
done
log "installed: ${missing[*]}"
