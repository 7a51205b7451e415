#!/usr/bin/env bash
# The steps of the code location image (the Dockerfile runs exactly this script; the tests run it
# into a temporary directory, as Docker is not available everywhere):
#   1. a virtual environment with flx-meltano (from PyPI, a wheel or a path; pinned by a lock file),
#   2. the project's Meltano plugins (meltano install), 3. bytecode compiled once,
#   4. the Dagster instance settings in DAGSTER_HOME, 5. Dagster loads the code location.
# Usage: scripts/build-image.sh PROJECT_DIR VENV_DIR [FLX_MELTANO_REQUIREMENT [CONSTRAINTS_FILE]]
# Environment: PYTHON (default python3), DAGSTER_HOME (default /opt/dagster/home), UV (default: uv on
# PATH, else uv is bootstrapped with pip).
set -euo pipefail
project=$(cd "$1" && pwd)
venv=$2
requirement=${3:-flx-meltano}
constraints=${4:-}
python=${PYTHON:-python3}
home=${DAGSTER_HOME:-/opt/dagster/home}
export MELTANO_CLI_DISABLE_VERSION_CHECK=true MELTANO_SEND_ANONYMOUS_USAGE_STATS=false

echo "$(date +%T) == 1. flx-meltano into $venv"
uv=${UV:-$(command -v uv || true)}
if [ -n "$uv" ]; then
  "$uv" venv --quiet --python "$python" "$venv"
else  # no uv yet: bootstrap the one the lock file pins
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check uv==0.13.9
  uv=$venv/bin/uv
fi
"$uv" pip install --quiet --python "$venv/bin/python" ${constraints:+--constraint "$constraints"} "$requirement"
export PATH="$venv/bin:$PATH"
"$venv/bin/flx-meltano" --version

echo "$(date +%T) == 2. meltano install in $project"
cd "$project"
meltano install

echo "$(date +%T) == 3. bytecode"
python -m compileall -q -j 0 "$venv/lib" .meltano/*/*/venv/lib > /dev/null || true

echo "$(date +%T) == 4. DAGSTER_HOME=$home"
mkdir -p "$home"
cp orchestrate/dagster/instance/dagster.yaml "$home/dagster.yaml"

echo "$(date +%T) == 5. the code location loads"
# On a temporary instance: the one in DAGSTER_HOME reads database URLs given only at run time.
env -u DAGSTER_HOME dagster definitions validate -f orchestrate/dagster/meltano_location/definitions.py
