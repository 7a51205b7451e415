"""Two chains with one Meltano state id are refused, naming both jobs and the way out (INTERFACES item 1).

`tap-postgres target-postgres` and `tap-postgres hide-kind target-postgres` share the state id
`test:tap-postgres-to-target-postgres` (Meltano's state id ignores mappings): merged silently, one
job would run the other's chain and both would move one bookmark.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flx_meltano.integration.errors import ProjectError
from tests.conformance.conftest import PLAIN_STATE_ID, Sandbox, throwaway_project

SECOND_CHAIN = """
- name: mapped-same-loader
  tasks:
  - tap-postgres hide-kind target-postgres
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return throwaway_project(
        tmp_path_factory.mktemp("one-state-id"),
        lambda text: text.replace("jobs:\n", "jobs:" + SECOND_CHAIN, 1),
    )


@pytest.fixture(scope="module")
def sandbox(new_sandbox, project: Path) -> Sandbox:
    return new_sandbox(project)


def _names_both_jobs_and_the_way_out(message: str) -> None:
    assert "plain" in message
    assert "mapped-same-loader" in message
    assert PLAIN_STATE_ID in message
    assert "inherit_from" in message


def test_reading_the_project_refuses_two_chains_of_one_state_id(sandbox: Sandbox):
    done = sandbox.flx("pipelines", check=False)
    output = done.stdout + done.stderr
    assert done.returncode in (1, 2), output
    assert "Traceback" not in output
    _names_both_jobs_and_the_way_out(output)


def test_building_definitions_refuses_two_chains_of_one_state_id(sandbox: Sandbox):
    with pytest.raises(ProjectError) as raised:
        sandbox.definitions()
    _names_both_jobs_and_the_way_out(str(raised.value))


def test_the_fixture_project_itself_is_accepted(new_sandbox):
    """Control: the same chains with their own loaders (own state ids) are fine."""
    defs = new_sandbox().definitions()
    assert {"plain", "mapped", "pipelinewise"} <= {job.name for job in defs.resolve_all_job_defs()}
