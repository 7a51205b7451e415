#!/usr/bin/env bash
# Start the Dagster UI and daemon over this Meltano project (`make demo`): instance storage and the
# flx store on the embedded PostgreSQL (or FLX_DATABASE_URL's server). HOST/PORT pick the address.
# `flx-meltano ui` does the work for any project; SIGTERM or Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
export MELTANO_CLI_DISABLE_VERSION_CHECK=true MELTANO_SEND_ANONYMOUS_USAGE_STATS=false
exec .venv/bin/flx-meltano ui --host "${HOST:-127.0.0.1}" --port "${PORT:-3000}"
