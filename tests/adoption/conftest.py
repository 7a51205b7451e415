"""Adoption fixtures, built once per session: the wheel, a fresh ``meltano init`` project using it, an image.

Everything lives outside the repository (pytest's temporary directory) and runs with a user's
environment: no FLX_*, MELTANO_* or DAGSTER_* variables of ours, the repository's virtual
environment off PATH, bytecode written (a user's machine writes it; here it saves every later
process from compiling dagster again). Installs come from uv's cache, pinned by requirements.lock.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from flx_meltano.persistence import database

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"
UV = REPO / ".venv" / "bin" / "uv"
MELTANO = REPO / ".venv" / "bin" / "meltano"  # the user's own meltano
JOB = "shop-to-jsonl"
STATE_ID = "dev:tap-shopsim-to-target-jsonl"
SCALE = 20

# The project a user has before adopting flx-meltano: our tap, a third-party singer-python target.
PLUGINS = f"""
extractors:
- name: tap-shopsim
  namespace: tap_shopsim
  pip_url: {REPO / "taps" / "tap-shopsim"}
  executable: tap-shopsim
  capabilities: [catalog, discover, state, about]
  config: {{seed: 7, scale: {SCALE}, start_date: "2024-01-01T00:00:00Z"}}
  select: [customers.*, orders.*]
loaders:
- name: target-jsonl
  namespace: target_jsonl
  pip_url: target-jsonl==0.1.4
  executable: target-jsonl
  settings:
  - {{name: destination_path, kind: string}}
  - {{name: do_timestamp_file, kind: boolean}}
  config: {{destination_path: output, do_timestamp_file: false}}
"""


def user_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a user's shell: none of our settings, our virtual environment off PATH."""
    ours = ("FLX_", "MELTANO_", "DAGSTER_", "TAP_", "TARGET_")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(ours) and key not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE"}
    }
    venv_bin = str(REPO / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.update(MELTANO_CLI_DISABLE_VERSION_CHECK="true", MELTANO_SEND_ANONYMOUS_USAGE_STATS="false")
    env.update(extra or {})
    return env


def run(
    argv: list[str | Path], *, cwd: Path, env: Mapping[str, str], timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end; on an unexpected exit code, fail showing its output."""
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, argv))} exited {done.returncode} in {cwd}\n"
            f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
        )
    return done


def readme_utility_definition() -> dict[str, Any]:
    """The utility definition the README's Adopt section tells users to paste."""
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- flx-meltano utility definition[^>]*-->\s*```yaml\n(.*?)```", text, re.S)
    assert match, "README.md lost its flx-meltano utility definition block"
    [utility] = yaml.safe_load(textwrap.dedent(match.group(1)))["plugins"]["utilities"]
    return dict(utility)


@dataclass(frozen=True)
class Dist:
    """What ``uv build`` made from the repository."""

    wheel: Path
    sdist: Path


@pytest.fixture(scope="session")
def adoption_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adoption")
    assert REPO not in root.parents
    return root


@pytest.fixture(scope="session")
def dist(adoption_root: Path) -> Dist:
    """The sdist, and the wheel uv builds from it (so the sdist is proven complete too)."""
    out = adoption_root / "dist"
    run([UV, "build", "--out-dir", out, REPO], cwd=adoption_root, env=user_env())
    [wheel] = out.glob("flx_meltano-*.whl")
    [sdist] = out.glob("flx_meltano-*.tar.gz")
    return Dist(wheel, sdist)


@pytest.fixture(scope="session")
def wheel_venv(dist: Dist, adoption_root: Path) -> Path:
    """A fresh virtual environment with only the wheel (and its dependencies) installed."""
    venv = adoption_root / "venv"
    env = user_env()
    run([UV, "venv", "--quiet", "--python", "python3.11", venv], cwd=adoption_root, env=env)
    run(
        [UV, "pip", "install", "--quiet", "--python", venv / "bin" / "python", dist.wheel, "-c", LOCK],
        cwd=adoption_root,
        env=env,
    )
    return venv


def _database(server: Any, name: str) -> None:
    with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def _drop(server: Any, *names: str) -> None:
    database.engine_for.cache_clear()
    with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class Databases:
    """The adoption session's flx store and Dagster storage, on the default test server."""

    server: Any
    store_url: str
    dagster_name: str


@contextmanager
def new_databases(server: Any) -> Iterator[Databases]:
    """A migrated flx store and an empty Dagster storage database, dropped afterwards."""
    suffix = uuid.uuid4().hex[:10]
    store, dagster = f"flx_test_{suffix}", f"flx_test_{suffix}_dagster"
    _database(server, store)
    _database(server, dagster)
    url = server.url(store)
    database.ready_engine(url)  # what `flx-meltano db start` does; the store is the user's to create
    try:
        yield Databases(server, url, dagster)
    finally:
        _drop(server, store, dagster)


@pytest.fixture(scope="session")
def adoption_databases(default_server: Any) -> Iterator[Databases]:
    """The adopted project's store and Dagster storage."""
    with new_databases(default_server) as databases:
        yield databases


@dataclass(frozen=True)
class AdoptedProject:
    """A fresh ``meltano init`` project with the README's utility definition, installed."""

    root: Path
    utility_bin: Path
    store_url: str

    def env(self, **extra: str) -> dict[str, str]:
        return user_env({"FLX_DATABASE_URL": self.store_url, **extra})

    def meltano(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run([MELTANO, *args], cwd=self.root, env=self.env(), timeout=timeout, check=check)


@pytest.fixture(scope="session")
def adopted_project(dist: Dist, adoption_root: Path, adoption_databases: Databases) -> AdoptedProject:
    root = adoption_root / "my-project"
    run([MELTANO, "init", root, "--no-usage-stats"], cwd=adoption_root, env=user_env())
    manifest = yaml.safe_load((root / "meltano.yml").read_text())
    utility = readme_utility_definition()
    utility["pip_url"] = f"{dist.wheel} --constraint {LOCK}"
    manifest["plugins"] = {**yaml.safe_load(PLUGINS), "utilities": [utility]}
    manifest["jobs"] = [{"name": JOB, "tasks": ["tap-shopsim target-jsonl"]}]
    (root / "meltano.yml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    utility_bin = root / ".meltano" / "utilities" / "flx-meltano" / "venv" / "bin"
    project = AdoptedProject(root, utility_bin, adoption_databases.store_url)
    project.meltano("install")
    return project


@dataclass(frozen=True)
class Image:
    """The code location image's file system, built by scripts/build-image.sh outside Docker."""

    project: Path
    venv: Path
    dagster_home: Path


@pytest.fixture(scope="session")
def image(adopted_project: AdoptedProject, dist: Dist, wheel_venv: Path, adoption_root: Path) -> Image:
    """The adopted project copied (as ``COPY . /project``) with its code location files, then built."""
    project = adoption_root / "image" / "project"
    shutil.copytree(adopted_project.root, project, ignore=shutil.ignore_patterns(".meltano", "output"))
    if not (project / "orchestrate" / "dagster" / "definitions.py").exists():
        run([wheel_venv / "bin" / "flx-meltano", "init"], cwd=project, env=user_env())
    venv, home = adoption_root / "image" / "venv", adoption_root / "image" / "dagster_home"
    built = run(
        ["bash", REPO / "scripts" / "build-image.sh", project, venv, dist.wheel, LOCK],
        cwd=adoption_root,
        env=user_env({"PYTHON": "python3.11", "DAGSTER_HOME": str(home), "UV": str(UV)}),
        timeout=600,
    )
    (adoption_root / "image" / "build.log").write_text(built.stdout + built.stderr)
    return Image(project, venv, home)
