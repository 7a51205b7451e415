"""Every metadata key and tag name flx-meltano writes in Dagster, in one place."""

from __future__ import annotations

from typing import Final

# Dagster's standard keys (the UI plots and shows them specially).
ROW_COUNT: Final = "dagster/row_count"
TABLE_NAME: Final = "dagster/table_name"
COLUMN_SCHEMA: Final = "dagster/column_schema"

# Asset definition metadata of a stream.
STATE_ID: Final = "meltano/state_id"
STREAM: Final = "meltano/stream"
EXTRACTOR: Final = "meltano/extractor"
LOADER: Final = "meltano/loader"
MAPPINGS: Final = "meltano/mappings"
PATH: Final = "meltano/path"

# Materialization metadata of a stream. The execution id is also Meltano's run id: one key.
EXECUTION_ID: Final = "meltano/execution_id"
EXECUTION_RECORD: Final = "meltano/execution_record"
SYNC_DURATION_SECONDS: Final = "meltano/sync_duration_seconds"
BOOKMARK: Final = "meltano/bookmark"
RECORDS_UNKNOWN: Final = "meltano/records_unknown"
STATE_WARNINGS: Final = "meltano/state_warnings"

# Asset check results of a stream (orchestration/checks.py).
CHECK_DETAIL: Final = "meltano/check_detail"
DRIFT_FROM_CATALOG: Final = "meltano/drift_from_catalog"
DRIFT_FROM_PREVIOUS: Final = "meltano/drift_from_previous_run"
COLUMNS_ADDED: Final = "meltano/columns_added"
COLUMNS_REMOVED: Final = "meltano/columns_removed"
COLUMNS_CHANGED: Final = "meltano/columns_changed"

# Failure metadata of a pipeline step.
FAILED_PLUGIN: Final = "meltano/failed_plugin"
UNCONFIRMED_STREAMS: Final = "meltano/unconfirmed_streams"
MISSING_STREAMS: Final = "meltano/missing_streams"

# Command-block assets (e.g. ``dbt-postgres:debug``) and dbt model assets.
COMMAND: Final = "meltano/command"
JOB: Final = "meltano/job"
UTILITY: Final = "meltano/utility"

# Tags (asset tags, op tags, job and run tags).
TAG_STATE_ID: Final = "meltano/state_id"
TAG_EXTRACTOR: Final = "meltano/extractor"
TAG_LOADER: Final = "meltano/loader"
TAG_ENVIRONMENT: Final = "meltano/environment"
TAG_JOB: Final = "meltano/job"
TAG_SCHEDULE: Final = "meltano/schedule"
TAG_REASON: Final = "meltano/reason"
# The dbt command a job's dbt step runs (``run``, ``build``, ``test``...): set on jobs built
# from Meltano jobs with a dbt command block, read by the dbt assets at run time.
TAG_DBT_COMMAND: Final = "meltano/dbt_command"

# Dagster's own run tags flx-meltano reads.
DAGSTER_SCHEDULE_TAG: Final = "dagster/schedule_name"
DAGSTER_SENSOR_TAG: Final = "dagster/sensor_name"


def extractor_pool(extractor: str) -> str:
    """The Dagster concurrency pool of an extractor's pipelines."""
    return f"meltano/{extractor}"


def execution_record(execution_id: str) -> str:
    """The command that shows an execution's whole store record."""
    return f"flx-meltano execution {execution_id}"
