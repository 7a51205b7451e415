"""Helpers for tests against a real Dagster webserver: free ports, GraphQL, launching and watching runs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flx_meltano.persistence import embedded

REPO = Path(__file__).resolve().parents[1]
EMBEDDED_DATA = REPO / ".meltano" / "flx" / "test-pgdata"  # the embedded test server of conftest
FINISHED = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
RUN_SECONDS = 120

RUN_EVENTS = """
query RunEvents($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run {
      status
      eventConnection(afterCursor: null) {
        events {
          __typename
          ... on MessageEvent { message }
          ... on ExecutionStepFailureEvent { error { message } }
          ... on RunFailureEvent { error { message } }
        }
      }
    }
  }
}
"""


def free_port() -> int:
    """A TCP port nothing listens on now (on 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dagster_storage_url(server: Any, name: str) -> str:
    """Plain ``postgresql://`` URL of database ``name`` on a test server (what dagster-postgres takes)."""
    if server.name == "embedded":
        running = embedded.running(EMBEDDED_DATA)
        assert running is not None, "the embedded test server is not running"
        return running.libpq_url(name)
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def kill(pids: Sequence[int]) -> None:
    """SIGKILL each of ``pids`` that is still there."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def tail(path: Path, lines: int = 80) -> str:
    """The last lines of a log file ('' when it does not exist)."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def start_logged(
    argv: Sequence[str], log: Path, *, env: Mapping[str, str], cwd: Path, **popen: Any
) -> subprocess.Popen[bytes]:
    """Start a process in its own session, stdout and stderr into ``log``."""
    with log.open("wb") as log_file:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen,
        )


@dataclass
class DagsterGraphQL:
    """A Dagster webserver's GraphQL endpoint, and what the tests ask it."""

    url: str
    location: str = ""

    def logs(self) -> str:
        """What to show after a failure (subclasses return the tail of their processes' logs)."""
        return ""

    def post(
        self, query: str, variables: dict[str, Any] | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        """The ``data`` of a GraphQL answer; a failure naming the errors otherwise."""
        try:
            answer = self.post(query, variables)
        except urllib.error.HTTPError as exc:
            pytest.fail(f"GraphQL HTTP {exc.code}: {exc.read().decode(errors='replace')}")
        if answer.get("errors"):
            pytest.fail(f"GraphQL errors: {json.dumps(answer['errors'], indent=1)}")
        return answer["data"]

    def wait_until_serving(self, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
        """Wait until the webserver answers and has loaded exactly one repository; learn its location."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            try:
                self.post("{ version }", timeout=5)["data"]["version"]
                break
            except (OSError, KeyError, TypeError, ValueError):
                time.sleep(1)
        else:
            pytest.fail(f"no answer from {self.url}/graphql within {timeout:.0f}s:\n{self.logs()}")
        while time.monotonic() < deadline:
            data = self.gql(
                "{ repositoriesOrError { __typename"
                " ... on RepositoryConnection { nodes { name location { name } } } } }"
            )
            nodes = data["repositoriesOrError"].get("nodes", [])
            locations = [n["location"]["name"] for n in nodes if n["name"] == "__repository__"]
            if locations:
                assert len(locations) == 1, f"{data}\n{self.logs()}"
                self.location = locations[0]
                return
            time.sleep(1)  # a separate code server may still be loading the definitions
        pytest.fail(f"no code location loaded within {timeout:.0f}s:\n{self.logs()}")

    def selector(self, job: str, asset_selection: Sequence[Sequence[str]] | None = None) -> dict[str, Any]:
        selector: dict[str, Any] = {
            "repositoryLocationName": self.location,
            "repositoryName": "__repository__",
            "jobName": job,
        }
        if asset_selection is not None:
            selector["assetSelection"] = [{"path": list(path)} for path in asset_selection]
        return selector

    def launch(
        self,
        job: str,
        *,
        asset_selection: Sequence[Sequence[str]] | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> str:
        """Launch a run the way the UI's Materialize button does; its run id."""
        params: dict[str, Any] = {"selector": self.selector(job, asset_selection)}
        if run_config is not None:
            params["runConfigData"] = run_config
        data = self.gql(
            """
            mutation Launch($params: ExecutionParams!) {
              launchRun(executionParams: $params) {
                __typename
                ... on LaunchRunSuccess { run { runId } }
                ... on PythonError { message }
                ... on InvalidSubsetError { message }
                ... on RunConfigValidationInvalid { errors { message } }
              }
            }
            """,
            params=params,
        )
        result = data["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return str(result["run"]["runId"])

    def run_status(self, run_id: str) -> str:
        data = self.gql(
            "query Status($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }",
            runId=run_id,
        )
        return str(data["runOrError"]["status"])

    def wait_for_run(self, run_id: str, timeout: float = RUN_SECONDS) -> str:
        """The run's final status (SUCCESS, FAILURE or CANCELED); a test failure after ``timeout``."""
        deadline = time.monotonic() + timeout
        status = ""
        while time.monotonic() < deadline:
            status = self.run_status(run_id)
            if status in FINISHED:
                return status
            time.sleep(0.5)
        pytest.fail(f"run {run_id} still {status} after {timeout:.0f}s\n{self.explain(run_id)}")

    def explain(self, run_id: str) -> str:
        """The run's failure messages and the tail of the logs, for assertion messages."""
        try:
            run = self.post(RUN_EVENTS, {"runId": run_id})["data"]["runOrError"]
            events = run["eventConnection"]["events"]
            lines = [
                f"{e['__typename']}: {(e.get('error') or {}).get('message') or e.get('message', '')}"
                for e in events
                if e["__typename"] in {"ExecutionStepFailureEvent", "RunFailureEvent", "LogMessageEvent"}
            ]
        except (OSError, KeyError, TypeError, ValueError) as exc:
            lines = [f"(run events unavailable: {exc})"]
        return "\n".join(["run events:", *lines[-40:], "logs:", self.logs()])

    def materializations(self, path: Sequence[str], limit: int = 5) -> list[dict[str, Any]]:
        """Latest materializations of an asset (newest first), with their metadata by label."""
        data = self.gql(
            """
            query Materializations($path: [String!]!, $limit: Int) {
              assetOrError(assetKey: {path: $path}) {
                __typename
                ... on Asset {
                  assetMaterializations(limit: $limit) {
                    runId
                    metadataEntries {
                      label
                      ... on IntMetadataEntry { intValue }
                      ... on TextMetadataEntry { text }
                    }
                  }
                }
              }
            }
            """,
            path=list(path),
            limit=limit,
        )
        asset = data["assetOrError"]
        assert asset["__typename"] == "Asset", asset
        return [
            {
                "runId": m["runId"],
                "metadata": {e["label"]: e.get("intValue", e.get("text")) for e in m["metadataEntries"]},
            }
            for m in asset["assetMaterializations"]
        ]

    def run_materializations(self, run_id: str) -> list[list[str]]:
        """Asset key paths a run materialized."""
        data = self.gql(
            """
            query RunMaterializations($runId: ID!) {
              runOrError(runId: $runId) { ... on Run { assetMaterializations { assetKey { path } } } }
            }
            """,
            runId=run_id,
        )
        return [m["assetKey"]["path"] for m in data["runOrError"]["assetMaterializations"]]
