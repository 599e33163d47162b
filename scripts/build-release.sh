#!/usr/bin/env bash
# Builds the three release binaries exactly as the container image does
# (deploy/Dockerfile runs this script in its builder stage), so running it in CI
# exercises the image's build step without a Docker engine.
#
# Usage: scripts/build-release.sh [EXTRA_CARGO_ARGS...]
#   e.g. scripts/build-release.sh --jobs 2
#
# Output: target/release/climate-api, climate-worker, climate-scheduler
# (or under $CARGO_TARGET_DIR when that is set).
#
# Needs the build's system packages (cmake, g++, make, pkg-config,
# libnetcdf-dev): scripts/setup-system.sh installs them on Debian.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# -p, not --bin: the workspace's default member is the API alone, and `--bin` looks only there.
cargo build --release --locked \
    -p climate-api -p climate-worker -p climate-scheduler --bins \
    "$@"
