"""User mistakes through the real ``flx-meltano`` command: a clear error, the right exit code, no
traceback (also with --json, whose stdout is then ``{"error": ...}``), and nothing written.

One store database and one sandboxed project serve the whole table, run a few at a time. Every
case runs with --json (stderr still says ``error: ...`` for people); one case of each kind of
error runs without it too. Most mistakes are refused before meltano could start.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from flx_meltano.domain import state_file
from flx_meltano.domain.state import SingerState
from flx_meltano.persistence import database

REPO = Path(__file__).resolve().parents[1]
FLX = str(REPO / ".venv" / "bin" / "flx-meltano")
FILES = "dev:tap-shopsim-to-target-jsonlines"
MISSING_SNAPSHOT = "987654321"
TABLES = ("pipelines", "executions", "stream_results", "state_snapshots", "events")
USAGE, FAILED = 2, 1


@dataclass(frozen=True)
class Mistake:
    """One mistake: the command line, the exit code, what the message must say, its JSON type."""

    name: str
    args: tuple[str, ...]
    code: int
    says: str  # a regex the error message must match (whitespace collapsed)
    type: str | None = None  # the JSON error type, where it is ours
    env: dict[str, str | None] = field(default_factory=dict)  # None removes a variable
    where: str = "project"  # project | empty (a directory without meltano.yml)


def m(name: str, args: str | tuple[str, ...], code: int, says: str, type: str | None = None, **kw) -> Mistake:
    return Mistake(name, tuple(args.split()) if isinstance(args, str) else args, code, says, type, **kw)


BAD_URL = "postgresql://flx:s3cret-pw@127.0.0.1:1/nowhere"  # nothing listens on port 1

MISTAKES = [
    m(
        "unknown job",
        "run nope",
        USAGE,
        r"no job or pipeline 'nope' in meltano\.yml .*jobs: shop-to-files",
        "UnknownTarget",
    ),
    m(
        "pipeline of another environment",
        "run staging:tap-shopsim-to-target-jsonlines",
        USAGE,
        r"is of environment 'staging', but the active environment is 'dev': run it with '-e staging'",
        "UnknownTarget",
    ),
    m(
        "unknown environment in a pipeline id",
        "run qa:tap-shopsim-to-target-jsonlines",
        USAGE,
        r"no environment 'qa' in meltano\.yml.*environments: dev, staging, prod",
        "UnknownTarget",
    ),
    m(
        "unknown loader of a pair",
        ("run", "tap-shopsim target-nope"),
        USAGE,
        r"'tap-shopsim target-nope'",
        "UnknownTarget",
    ),
    m(
        "unknown -e",
        "-e qa pipelines",
        USAGE,
        r"unknown environment 'qa'; meltano\.yml defines dev, prod, staging",
        "UnknownEnvironment",
    ),
    m(
        "negative timeout",
        f"run {FILES} --timeout -1",
        USAGE,
        r"timeout -1s: a timeout must be more than 0",
        "InvalidOption",
    ),
    m("zero timeout", f"run {FILES} --timeout 0", USAGE, r"timeout 0s", "InvalidOption"),
    m(
        "unknown state strategy",
        f"run {FILES} --state-strategy bogus",
        USAGE,
        r"'bogus' is not one of 'auto', 'merge', 'overwrite'",
        "UsageError",
    ),
    m(
        "unknown stream",
        f"run {FILES} --stream nope",
        USAGE,
        rf"pipeline {FILES} has no stream 'nope'; its streams are customers",
        "UnknownStream",
    ),
    m(
        "unknown execution",
        "execution nope",
        USAGE,
        r"no execution 'nope'.*flx-meltano executions",
        "NotFound",
    ),
    m("cancel an unknown execution", "cancel nope", USAGE, r"no execution 'nope'", "NotFound"),
    m(
        "config of an unknown plugin",
        "config no-such-plugin",
        USAGE,
        r"no plugin 'no-such-plugin' in .*meltano\.yml; plugins: tap-shopsim",
        "UnknownPlugin",
    ),
    m("unknown status", "executions --status NOPE", USAGE, r"'NOPE' is not one of .*'failed'", "UsageError"),
    m(
        "negative limit",
        "executions --limit -5",
        USAGE,
        r"'--limit'.*greater than or equal to 1",
        "UsageError",
    ),
    m(
        "executions of an unknown pipeline",
        "executions --pipeline nope",
        USAGE,
        r"no pipeline 'nope'.*pipelines: dev:tap-shopsim",
        "UnknownPipeline",
    ),
    m(
        "metrics of an unknown pipeline",
        "metrics nope",
        USAGE,
        r"no pipeline 'nope' in meltano\.yml \(environment dev\)",
        "UnknownPipeline",
    ),
    m(
        "metrics of an unknown stream",
        f"metrics {FILES} --stream nope",
        USAGE,
        rf"pipeline {FILES} has no stream 'nope'; streams: customers",
        "UnknownStream",
    ),
    m("metrics with limit 0", f"metrics {FILES} --limit 0", USAGE, r"'--limit'", "UsageError"),
    m(
        "catalog of an unknown extractor",
        "catalog refresh tap-nope",
        USAGE,
        r"no extractor 'tap-nope'.*extractors: tap-shopsim",
        "UnknownPlugin",
    ),
    m("unknown command", "nosuchcommand", USAGE, r"No such command 'nosuchcommand'", "UsageError"),
    m("missing argument", "execution", USAGE, r"Missing argument", "UsageError"),
    m(
        "a store URL that is no URL",
        "pipelines",
        USAGE,
        r"FLX_DATABASE_URL 'not-a-url' is not a database URL; expected postgresql://",
        "InvalidStoreUrl",
        env={"FLX_DATABASE_URL": "not-a-url"},
    ),
    m(
        "a store URL of another database",
        "executions",
        USAGE,
        r"FLX_DATABASE_URL 'mysql://flx:\*\*\*@db/flx' is a mysql URL; the flx store needs PostgreSQL",
        "InvalidStoreUrl",
        env={"FLX_DATABASE_URL": "mysql://flx:s3cret-pw@db/flx"},
    ),
    m(
        "a store port with nothing listening",
        "executions",
        FAILED,
        r"cannot reach the store at postgresql\+psycopg://flx:\*\*\*@127\.0\.0\.1:1/nowhere: .*refused",
        "StoreUnreachable",
        env={"FLX_DATABASE_URL": BAD_URL},
    ),
    m(
        "an empty directory",
        "pipelines",
        USAGE,
        r"no meltano\.yml in \S+ or its parents; .*set FLX_PROJECT_DIR",
        "ProjectNotFound",
        env={"FLX_DATABASE_URL": None},
        where="empty",
    ),
    m(
        "state in an empty directory",
        "state list",
        USAGE,
        r"no meltano\.yml in \S+ or its parents",
        "ProjectNotFound",
        env={"FLX_DATABASE_URL": None},
        where="empty",
    ),
    m(
        "db start in an empty directory",
        "db start",
        USAGE,
        r"no meltano\.yml in \S+ or its parents",
        "ProjectNotFound",
        env={"FLX_DATABASE_URL": None},
        where="empty",
    ),
    m(
        "a project directory without meltano.yml",
        "executions",
        USAGE,
        r"no meltano\.yml in \S+ \(given as the project directory",
        "ProjectNotFound",
        env={"FLX_PROJECT_DIR": "{empty}"},
    ),
    m(
        "an unknown snapshot",
        f"state show {MISSING_SNAPSHOT}",
        USAGE,
        rf"no snapshot {MISSING_SNAPSHOT}",
        "UnknownSnapshot",
    ),
    m(
        "diff with an unknown snapshot",
        f"state diff {MISSING_SNAPSHOT}",
        USAGE,
        rf"no snapshot {MISSING_SNAPSHOT}",
        "UnknownSnapshot",
    ),
    m(
        "restore an unknown snapshot",
        f"state restore {MISSING_SNAPSHOT} --yes",
        USAGE,
        rf"no snapshot {MISSING_SNAPSHOT}",
        "UnknownSnapshot",
    ),
    m(
        "restore of nothing",
        "state restore",
        USAGE,
        r"give a snapshot id or --previous STATE_ID",
        "UsageError",
    ),
    m(
        "prune keeping none",
        "state prune --keep-last 0 --yes",
        USAGE,
        r"'--keep-last'.*greater than or equal to 1",
        "UsageError",
    ),
    m("prune keeping -1", "state prune --keep-last -1 --yes", USAGE, r"'--keep-last'", "UsageError"),
    m(
        "backup of an unknown state id",
        "state backup dev:no-such-state",
        USAGE,
        r"no state for state id 'dev:no-such-state'",
        "UnknownStateId",
    ),
    m(
        "export onto a device",
        "state export /dev/null",
        USAGE,
        r"refusing to export to /dev/null: it is a character device",
        "InvalidExportPath",
    ),
    m(
        "import of a missing file",
        "state import {tmp}/no-such-file.json --yes",
        FAILED,
        r"cannot read \S+/no-such-file\.json",
        "StateError",
    ),
    m(
        "import of a state id that is none",
        "state import {tmp}/bad-id.json --yes",
        FAILED,
        r"bad-id\.json: states\[0\]: 'this is not a state id!' is not a Meltano state id",
        "InvalidStateFile",
    ),
    m("since that is no date", "state list --since yesterday-ish", USAGE, r"'--since'", "UsageError"),
]


# One case of each kind: our usage errors (run path, queries, state, -e), click's, failed work,
# the store's, no project. Without --json only the JSON document is missing: the rest is shared.
PLAIN = {
    "unknown job",
    "unknown stream",
    "unknown -e",
    "unknown execution",
    "unknown status",
    "metrics of an unknown pipeline",
    "a store URL that is no URL",
    "a store port with nothing listening",
    "an empty directory",
    "restore of nothing",
    "import of a state id that is none",
}
PLAIN_MISTAKES = [case for case in MISTAKES if case.name in PLAIN]


def _base_env(store_url: str, sandbox: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLX_")}
    env.update(
        NO_COLOR="1",
        COLUMNS="200",
        MELTANO_CLI_DISABLE_VERSION_CHECK="true",
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        MELTANO_DATABASE_URI=f"sqlite:///{sandbox / 'meltano.db'}",
        TARGET_JSONLINES_DESTINATION_PATH=str(sandbox / "out"),
        FLX_DATABASE_URL=store_url,
    )
    return env


@dataclass
class Table:
    """Every mistake's two runs (plain, --json), and the store's row counts before and after."""

    results: dict[tuple[str, bool], subprocess.CompletedProcess[str]]
    counts_before: dict[str, int]
    counts_after: dict[str, int]
    empty: Path
    sandbox: Path


def _counts(url: str) -> dict[str, int]:
    with database.engine_for(url).connect() as conn:
        return {
            name: conn.execute(sa.text(f"SELECT count(*) FROM flx.{name}")).scalar_one() for name in TABLES
        }


@pytest.fixture(scope="module")
def table(default_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Table]:
    name = f"flx_mistakes_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = default_server.url(name)
    database.ready_engine(url)
    sandbox = tmp_path_factory.mktemp("mistakes")
    empty = sandbox / "empty"
    empty.mkdir()
    bad_id = state_file.render(
        [state_file.ExportedState("this is not a state id!", SingerState({"bookmarks": {}}))],
        exported_at=datetime.now(UTC),
        source={},
    )
    (sandbox / "bad-id.json").write_text(bad_id)
    base = _base_env(url, sandbox)

    def run(case: Mistake, as_json: bool) -> subprocess.CompletedProcess[str]:
        env = dict(base)
        for key, value in case.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value.format(empty=empty, tmp=sandbox)
        args = [arg.format(tmp=sandbox) for arg in case.args] + (["--json"] if as_json else [])
        return subprocess.run(
            [FLX, *args],
            cwd=empty if case.where == "empty" else REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )

    try:
        before = _counts(url)
        jobs = [(case, True) for case in MISTAKES] + [(case, False) for case in PLAIN_MISTAKES]
        with ThreadPoolExecutor(max_workers=3) as pool:
            outcomes = list(pool.map(lambda job: run(*job), jobs))
        after = _counts(url)
        yield Table(
            {(case.name, as_json): result for (case, as_json), result in zip(jobs, outcomes, strict=True)},
            before,
            after,
            empty,
            sandbox,
        )
    finally:
        database.engine_for.cache_clear()
        with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_there_are_at_least_25_distinct_mistakes():
    assert len({case.name for case in MISTAKES}) == len(MISTAKES) >= 25
    assert len(PLAIN_MISTAKES) == len(PLAIN)


def _assert_error_for_people(case: Mistake, result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == case.code, (case.args, output)
    assert "Traceback" not in output
    assert "s3cret-pw" not in output
    assert result.stderr.startswith("error: "), result.stderr
    assert re.search(case.says, _one_line(result.stderr)), (case.says, result.stderr)
    assert len(result.stderr.splitlines()) <= 4, result.stderr  # a few lines, not a dump


@pytest.mark.parametrize("case", PLAIN_MISTAKES, ids=[case.name for case in PLAIN_MISTAKES])
def test_a_mistake_is_an_error_naming_the_thing_without_a_traceback(table: Table, case: Mistake):
    result = table.results[(case.name, False)]
    _assert_error_for_people(case, result)
    assert '"error"' not in result.stdout


@pytest.mark.parametrize("case", MISTAKES, ids=[case.name for case in MISTAKES])
def test_with_json_the_error_is_json_on_stdout(table: Table, case: Mistake):
    result = table.results[(case.name, True)]
    _assert_error_for_people(case, result)
    try:
        document = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not JSON only:\n{result.stdout}")
    assert set(document) == {"error"}
    assert set(document["error"]) == {"type", "message"}
    if case.type is not None:
        assert document["error"]["type"] == case.type
    assert re.search(case.says, _one_line(document["error"]["message"])), (case.says, document)


def test_no_mistake_wrote_anything(table: Table):
    assert table.counts_after == table.counts_before
    # Outside a project nothing started there: no .meltano/, no embedded server, no .env.
    assert list(table.empty.iterdir()) == []
    assert not (table.sandbox / "out").exists()


def test_debug_shows_the_traceback(table: Table, tmp_path: Path):
    base = _base_env("not-a-url", table.sandbox)
    for args, env in (
        (["--debug", "execution", "nope"], base),
        (["execution", "nope"], {**base, "FLX_DEBUG": "1"}),
    ):
        result = subprocess.run([FLX, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == USAGE
        assert "Traceback (most recent call last)" in result.stderr
        assert result.stderr.rstrip().splitlines()[-1].startswith("error: FLX_DATABASE_URL 'not-a-url'")
