#!/usr/bin/env bash
# Start the Dagster UI and daemon (dg dev) over this Meltano project: instance storage and the flx
# store on the embedded PostgreSQL (or FLX_DATABASE_URL's server). HOST/PORT pick the address.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-3000}
preset_dagster_url=${FLX_DAGSTER_PG_URL:-}
eval "$(.venv/bin/flx-meltano db env --show-secrets)"
if [ -n "$preset_dagster_url" ]; then export FLX_DAGSTER_PG_URL=$preset_dagster_url; fi
export DAGSTER_HOME=${DAGSTER_HOME:-$PWD/.meltano/flx/dagster_home}
mkdir -p "$DAGSTER_HOME"
# The instance file lives in its own folder: dg dev runs in orchestrate/dagster, and Dagster warns
# about a dagster.yaml in the working directory that is not DAGSTER_HOME.
cp orchestrate/dagster/instance/dagster.yaml "$DAGSTER_HOME/dagster.yaml"
export MELTANO_CLI_DISABLE_VERSION_CHECK=true MELTANO_SEND_ANONYMOUS_USAGE_STATS=false
echo "Dagster UI: http://$HOST:$PORT  (stream assets under Assets; Ctrl-C stops UI and daemon)"
# orchestrate/dagster is a dg project (dg.toml): dg dev checks its defs.yaml, then starts the UI,
# the daemon and a code server with this virtual environment's Python.
exec .venv/bin/dg dev --target-path orchestrate/dagster -h "$HOST" -p "$PORT"
