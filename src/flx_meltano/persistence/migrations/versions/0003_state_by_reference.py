"""States by reference: executions and their events point at snapshots (id, checksum), not payloads.

Existing stores are converted: every state an execution row or event carried is found among the
state id's snapshots by checksum, or stored once as a snapshot (with its StateSnapshotTaken
event), and the row or event then references it. Identical copies become one snapshot.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "flx"
JSONB = postgresql.JSONB(astext_type=sa.Text())
SINGER_STATE_KEY = "singer_state"

# Every place a state payload was carried before 0003: (source, location, field, state id, digest of
# the payload's text, when, execution id, snapshot reason). An event's state id is its pipeline's,
# named by the ExecutionStarted event of its stream.
LEGACY_STATES = """
CREATE TEMP TABLE legacy_states ON COMMIT DROP AS
SELECT 'execution' AS source, x.id AS location, 'state_before' AS field, x.pipeline_id AS state_id,
       md5(x.state_before::text) AS digest, x.started_at AS at, x.id AS execution_id,
       'pre-run' AS reason
  FROM flx.executions x WHERE x.state_before IS NOT NULL
UNION ALL
SELECT 'execution', x.id, 'state_after', x.pipeline_id, md5(x.state_after::text),
       coalesce(x.ended_at, x.started_at), x.id, 'post-run'
  FROM flx.executions x WHERE x.state_after IS NOT NULL
UNION ALL
SELECT 'event', e.position::text, k.field, s.payload->>'pipeline_id', md5((e.payload->k.field)::text),
       e.occurred_at, e.payload->>'execution_id',
       CASE k.field WHEN 'state_before' THEN 'pre-run' ELSE 'post-run' END
  FROM flx.events e
  CROSS JOIN (VALUES ('state_before'), ('state_after')) AS k(field)
  JOIN flx.events s ON s.stream_id = e.stream_id AND s.type = 'ExecutionStarted'
 WHERE e.stream_id LIKE 'execution-%'
   AND jsonb_typeof(e.payload->k.field) = 'object'
   AND NOT (e.payload->k.field) ? 'snapshot_id'
"""


def _checksum(payload: dict[str, Any]) -> str:
    """The checksum flx computes for a state (SHA-256 of its canonical JSON), frozen here."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _payload(bind: sa.Connection, source: str, location: str, field: str) -> dict[str, Any]:
    """One legacy state payload, read from where it was carried."""
    if source == "event":
        query = sa.text("SELECT payload->:field FROM flx.events WHERE position = :loc")
        value = bind.execute(query, {"field": field, "loc": int(location)}).scalar_one()
    else:
        column = "state_before" if field == "state_before" else "state_after"
        value = bind.execute(
            sa.text(f"SELECT {column} FROM flx.executions WHERE id = :loc"),  # noqa: S608 (a column name)
            {"loc": location},
        ).scalar_one()
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, dict) and SINGER_STATE_KEY in value:
        return {SINGER_STATE_KEY: value[SINGER_STATE_KEY]}
    return dict(value)


def _snapshot_for(bind: sa.Connection, row: sa.Row[Any], payload: dict[str, Any]) -> tuple[int, str]:
    """The id and checksum of a snapshot of ``row.state_id`` holding ``payload`` (found or stored)."""
    checksum = _checksum(payload)
    found = bind.execute(
        sa.text(
            "SELECT id FROM flx.state_snapshots WHERE state_id = :state_id AND checksum = :checksum "
            "ORDER BY taken_at DESC, id DESC LIMIT 1"
        ),
        {"state_id": row.state_id, "checksum": checksum},
    ).scalar()
    if found is not None:
        return int(found), checksum
    snapshot_id = int(
        bind.execute(
            sa.text(
                "INSERT INTO flx.state_snapshots "
                "(state_id, taken_at, reason, checksum, state, execution_id) VALUES "
                "(:state_id, :at, :reason, :checksum, CAST(:state AS jsonb), :execution_id) RETURNING id"
            ),
            {
                "state_id": row.state_id,
                "at": row.at,
                "reason": row.reason,
                "checksum": checksum,
                "state": json.dumps(payload),
                "execution_id": row.execution_id,
            },
        ).scalar_one()
    )
    stream = f"state-{row.state_id}"
    version = bind.execute(
        sa.text("SELECT coalesce(max(version), 0) FROM flx.events WHERE stream_id = :s"), {"s": stream}
    ).scalar_one()
    event = {
        "state_id": row.state_id,
        "at": row.at.isoformat(),
        "snapshot_id": snapshot_id,
        "reason": row.reason,
        "checksum": checksum,
        "label": None,
    }
    bind.execute(
        sa.text(
            "INSERT INTO flx.events (stream_id, version, type, occurred_at, payload) "
            "VALUES (:s, :v, 'StateSnapshotTaken', :at, CAST(:p AS jsonb))"
        ),
        {"s": stream, "v": int(version) + 1, "at": row.at, "p": json.dumps(event)},
    )
    return snapshot_id, checksum


def upgrade() -> None:
    bind = op.get_bind()
    for prefix in ("state_before", "state_after"):
        op.add_column("executions", sa.Column(f"{prefix}_snapshot_id", sa.BigInteger), schema=SCHEMA)
        op.add_column("executions", sa.Column(f"{prefix}_checksum", sa.Text), schema=SCHEMA)
    bind.execute(sa.text(LEGACY_STATES))
    bind.execute(
        sa.text(
            "CREATE TEMP TABLE state_refs (state_id text, digest text, snapshot_id bigint, checksum text) "
            "ON COMMIT DROP"
        )
    )
    # One payload read and one snapshot per distinct state of a state id, the earliest occurrence's.
    distinct = bind.execute(
        sa.text(
            "SELECT DISTINCT ON (state_id, digest) * FROM legacy_states "
            "ORDER BY state_id, digest, at, source, location"
        )
    ).all()
    for row in distinct:
        snapshot_id, checksum = _snapshot_for(bind, row, _payload(bind, row.source, row.location, row.field))
        bind.execute(
            sa.text("INSERT INTO state_refs VALUES (:state_id, :digest, :snapshot_id, :checksum)"),
            {
                "state_id": row.state_id,
                "digest": row.digest,
                "snapshot_id": snapshot_id,
                "checksum": checksum,
            },
        )
    bind.execute(
        sa.text(
            "UPDATE flx.events e SET payload = jsonb_set(e.payload, ARRAY[l.field], "
            "jsonb_build_object('snapshot_id', r.snapshot_id, 'checksum', r.checksum)) "
            "FROM legacy_states l JOIN state_refs r USING (state_id, digest) "
            "WHERE l.source = 'event' AND e.position = l.location::bigint"
        )
    )
    for prefix in ("state_before", "state_after"):
        bind.execute(
            sa.text(
                f"UPDATE flx.executions x SET {prefix}_snapshot_id = r.snapshot_id, "  # noqa: S608 (a column)
                f"{prefix}_checksum = r.checksum "
                "FROM legacy_states l JOIN state_refs r USING (state_id, digest) "
                f"WHERE l.source = 'execution' AND l.field = '{prefix}' AND x.id = l.location"
            )
        )
        op.drop_column("executions", prefix, schema=SCHEMA)


def downgrade() -> None:
    bind = op.get_bind()
    # 0002 carries the payloads: a reference whose snapshot was pruned has none to put back.
    dangling = bind.execute(
        sa.text(
            "SELECT count(*) FROM flx.executions x WHERE "
            "(x.state_before_snapshot_id IS NOT NULL AND NOT EXISTS "
            " (SELECT 1 FROM flx.state_snapshots s WHERE s.id = x.state_before_snapshot_id)) OR "
            "(x.state_after_snapshot_id IS NOT NULL AND NOT EXISTS "
            " (SELECT 1 FROM flx.state_snapshots s WHERE s.id = x.state_after_snapshot_id))"
        )
    ).scalar()
    dangling += bind.execute(
        sa.text(
            "SELECT count(*) FROM flx.events e CROSS JOIN (VALUES ('state_before'), ('state_after')) "
            "AS k(field) WHERE e.stream_id LIKE 'execution-%' "
            "AND jsonb_typeof(e.payload->k.field) = 'object' AND NOT EXISTS (SELECT 1 FROM "
            "flx.state_snapshots s WHERE s.id = (e.payload->k.field->>'snapshot_id')::bigint)"
        )
    ).scalar_one()
    if dangling:
        raise RuntimeError(
            f"{dangling} executions or events reference pruned snapshots; 0002 cannot hold them"
        )
    for prefix in ("state_before", "state_after"):
        op.add_column("executions", sa.Column(prefix, JSONB), schema=SCHEMA)
        bind.execute(
            sa.text(
                f"UPDATE flx.executions x SET {prefix} = s.state FROM flx.state_snapshots s "  # noqa: S608
                f"WHERE s.id = x.{prefix}_snapshot_id"
            )
        )
        bind.execute(
            sa.text(
                f"UPDATE flx.events e SET payload = jsonb_set(e.payload, '{{{prefix}}}', s.state) "  # noqa: S608
                "FROM flx.state_snapshots s WHERE e.stream_id LIKE 'execution-%' "
                f"AND jsonb_typeof(e.payload->'{prefix}') = 'object' "
                f"AND s.id = (e.payload->'{prefix}'->>'snapshot_id')::bigint"
            )
        )
        op.drop_column("executions", f"{prefix}_snapshot_id", schema=SCHEMA)
        op.drop_column("executions", f"{prefix}_checksum", schema=SCHEMA)
