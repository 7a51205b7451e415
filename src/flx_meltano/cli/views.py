"""How executions look on the command line: table rows and the JSON form."""

from __future__ import annotations

import dataclasses

from flx_meltano.cli.output import count, duration_seconds, status_text
from flx_meltano.domain.execution import PipelineExecution


def first_line(text: str | None) -> str:
    return text.splitlines()[0] if text else ""


def execution_rows(executions: list[PipelineExecution]) -> list[list[object]]:
    return [
        [
            e.id[:8],
            e.pipeline_id,
            status_text(str(e.status)),
            str(e.trigger),
            e.started_at,
            str(e.duration) if e.duration else "-",
            count(e.records) if e.results else None,
            first_line(e.error)[:60] or (first_line(e.warnings[0])[:60] if e.warnings else ""),
        ]
        for e in executions
    ]


def as_dict(e: PipelineExecution) -> dict[str, object]:
    return {
        "id": e.id,
        "pipeline_id": e.pipeline_id,
        "status": str(e.status),
        "trigger": str(e.trigger),
        "started_at": e.started_at,
        "ended_at": e.ended_at,
        "duration_seconds": duration_seconds(e.duration),
        "streams": list(e.streams),
        "full_refresh": e.full_refresh,
        "partition": e.partition,
        "records": e.records,
        "results": [
            {
                "stream": r.stream,
                "records": r.records,
                "status": str(r.status),
                "duration_seconds": duration_seconds(r.duration),
                "bookmark": r.bookmark,
            }
            for r in e.results.values()
        ],
        "error": e.error,
        "failed_plugin": e.failed_plugin,
        "exit_code": e.exit_code,
        "warnings": list(e.warnings),
        "dagster_run_id": e.dagster_run_id,
        # By reference: 'flx-meltano state show <snapshot id>' prints the state itself.
        "state_before": dataclasses.asdict(e.state_before) if e.state_before else None,
        "state_after": dataclasses.asdict(e.state_after) if e.state_after else None,
    }


EXECUTION_COLUMNS = ["id", "pipeline", "status", "trigger", "started", "duration", "records", "note"]
