"""A select rule that matches no stream of the known catalog is a user error (INTERFACES item 3).

Meltano caches the catalog it used at `.meltano/run/<extractor>/tap.properties.json` on every run,
so after one run flx knows `public-eventz.*` (a typo) names nothing: doctor fails naming the rule's
file and line, definitions leave the stream out, and a run ends it MISSING rather than SUCCEEDED.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conformance.conftest import (
    CUSTOMERS,
    EXTRACTOR,
    Run,
    Sandbox,
    line_of,
    specs_by_stream,
    throwaway_project,
)

pytestmark = pytest.mark.slow

TYPO = "public-eventz"


def _misspell_the_first_select_rule(text: str) -> str:
    return text.replace("- public-events.*", f"- {TYPO}.*", 1)  # tap-postgres's, not pipelinewise's


@dataclass(frozen=True)
class Typo:
    project: Path
    sandbox: Sandbox
    run: Run


@pytest.fixture(scope="module")
def typo(tmp_path_factory: pytest.TempPathFactory, new_sandbox) -> Typo:
    """A copy of the project with the typo, run once through the plain job (so its catalog is known)."""
    project = throwaway_project(tmp_path_factory.mktemp("select-typo"), _misspell_the_first_select_rule)
    sandbox = new_sandbox(project)
    run = sandbox.run("plain")
    assert (project / ".meltano" / "run" / EXTRACTOR / "tap.properties.json").exists(), run.output
    return Typo(project, sandbox, run)


def test_meltano_itself_only_warns_and_loads_the_other_stream(typo: Typo):
    assert typo.sandbox.warehouse("SELECT count(*) FROM raw.customers") == [(CUSTOMERS,)]
    assert not typo.sandbox.table_exists("raw.eventz")


def test_the_run_ends_the_missing_stream_missing_with_a_warning(typo: Typo):
    results = {r["stream"]: r for r in typo.run.execution["results"]}
    assert results[TYPO]["status"] == "MISSING", typo.run.output
    assert results["public-customers"]["status"] == "SUCCEEDED"
    assert results["public-customers"]["records"] == CUSTOMERS
    assert any(TYPO in warning for warning in typo.run.execution["warnings"]), typo.run.execution["warnings"]


def test_doctor_fails_naming_the_rule_and_its_line(typo: Typo):
    done = typo.sandbox.flx("doctor", check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    failing = [line for line in output.splitlines() if f"{TYPO}.*" in line]
    assert failing, output
    assert f"meltano.yml:{line_of(typo.project / 'meltano.yml', f'- {TYPO}.*')}" in output


def test_definitions_have_no_asset_for_the_missing_stream(typo: Typo):
    specs = specs_by_stream(typo.sandbox.definitions(), "target-postgres")
    assert set(specs) == {"public-customers"}


def test_doctor_passes_on_the_fixture_project(new_sandbox):
    """Control: every select rule of the fixture project names a stream of its catalog."""
    done = new_sandbox().flx("doctor", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checks ok" in done.stdout
