#!/usr/bin/env bash
# Run the reference Meltano jobs once through flx-meltano (no Dagster) and show what ran.
set -euo pipefail
cd "$(dirname "$0")/.."
FLX=.venv/bin/flx-meltano
for job in shop-to-files shop-to-warehouse; do
  echo "== flx-meltano run $job"
  "$FLX" run "$job"
done
echo "== flx-meltano pipelines"
"$FLX" pipelines
echo "== flx-meltano executions"
"$FLX" executions --limit 10
