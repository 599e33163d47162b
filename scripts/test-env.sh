# shellcheck shell=bash
# Environment the integration tests read. Source it; it only exports variables:
#
#   source scripts/test-env.sh
#
# scripts/test-services.sh makes these endpoints reachable (and prints them).
_climate_repo_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"

export CLIMATE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
export CLIMATE_TEST_AMQP_URL="${CLIMATE_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/${CLIMATE_TEST_VHOST:-climate-test}}"
export CLIMATE_TEST_REDIS_URL="redis://127.0.0.1:6379"
export CLIMATE_TEST_S3_ENDPOINT="http://127.0.0.1:9010"
export CLIMATE_TEST_S3_BUCKET="climate-test"
export CLIMATE_TEST_PYTHON="$_climate_repo_root/.venv/bin/python"

unset _climate_repo_root
