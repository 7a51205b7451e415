"""Bare `meltano run`s of meltanolabs tap-postgres -> target-postgres are recorded by flx-meltano sync."""

from __future__ import annotations

import pytest

from flx_meltano.domain.state import SingerState
from tests.conformance.conftest import PLAIN_STATE_ID, Source
from tests.conformance.test_plain_cli import CHANGES, FIRST_BOOKMARK

pytestmark = pytest.mark.slow


def test_two_bare_meltano_runs_are_two_executions_with_their_bookmarks(new_sandbox, source: Source):
    sandbox = new_sandbox()
    sandbox.meltano("run", "tap-postgres", "target-postgres")
    source.execute(CHANGES)
    sandbox.meltano("run", "tap-postgres", "target-postgres")

    synced = sandbox.flx_json("sync")
    assert len(synced["recorded"]) == 2
    assert synced["own"] == []
    newer, older = sandbox.flx_json("executions", "--pipeline", PLAIN_STATE_ID)
    assert [older["trigger"], newer["trigger"]] == ["meltano", "meltano"]
    assert [older["status"], newer["status"]] == ["SUCCEEDED", "SUCCEEDED"]
    assert older["records"] is None  # nobody counted a bare run's records: unknown, not 0
    assert older["state_before"] is None
    assert newer["state_before"] == older["state_after"]
    live = SingerState.from_payload(sandbox.live_state(PLAIN_STATE_ID))
    assert newer["state_after"]["checksum"] == live.checksum  # by reference: the snapshot holding it
    first = {r["stream"]: r for r in older["results"]}
    second = {r["stream"]: r for r in newer["results"]}
    assert first["public-events"]["bookmark"]["replication_key_value"].startswith(FIRST_BOOKMARK)
    assert first["public-events"]["records"] is None
    assert second["public-events"]["bookmark"]["replication_key_value"].startswith("2024-01-02T01:16:43")
    assert "public-customers" not in second  # full table: no bookmark to move

    again = sandbox.flx_json("sync")
    assert again["recorded"] == []
    assert len(sandbox.flx_json("executions", "--pipeline", PLAIN_STATE_ID)) == 2
