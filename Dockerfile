# The code location image of this Meltano project: flx-meltano, the project's Meltano plugins, and
# `dagster code-server start` serving orchestrate/dagster/meltano_location/definitions.py (the dg
# project flx-meltano init writes) on port 4000. Its steps are scripts/build-image.sh (the tests run that script into a fresh virtual environment).
#   uv build --wheel --out-dir dist && docker build -t my-meltano-code-location .
# The Dagster webserver and daemon run from Dagster's own image with the same dagster.yaml and
# orchestrate/dagster/workspace.yaml (FLX_CODE_SERVER_HOST/PORT naming this container); see the
# README's Production section. The metrics exporter is this image too:
#   docker run ... my-meltano-code-location flx-meltano metrics serve --port 9467
FROM python:3.11-slim

ENV DAGSTER_HOME=/opt/dagster/home \
    PATH=/opt/flx/bin:$PATH \
    MELTANO_CLI_DISABLE_VERSION_CHECK=true \
    MELTANO_SEND_ANONYMOUS_USAGE_STATS=false
WORKDIR /project
COPY dist/ /tmp/dist/
COPY requirements.lock scripts/build-image.sh /tmp/build/
COPY . /project
RUN pip install --no-cache-dir uv==0.13.9 \
    && bash /tmp/build/build-image.sh /project /opt/flx "$(ls /tmp/dist/flx_meltano-*.whl)" /tmp/build/requirements.lock \
    && rm -rf /tmp/dist /tmp/build /root/.cache

# The store, Dagster's storage and Meltano's system database are PostgreSQL servers given at run
# time: FLX_DATABASE_URL, FLX_DAGSTER_PG_URL, MELTANO_DATABASE_URI (never baked into the image).
EXPOSE 4000 9467
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", \
     "-f", "orchestrate/dagster/meltano_location/definitions.py", "--location-name", "meltano"]
