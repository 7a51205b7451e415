"""The built package: what the wheel and sdist hold, and a fresh environment with only the wheel."""

from __future__ import annotations

import json
import tarfile
import tomllib
import zipfile
from importlib.metadata import version

import pytest

from tests.adoption.conftest import REPO, run, user_env

pytestmark = pytest.mark.slow

PACKAGE_DATA = (
    "flx_meltano/py.typed",
    "flx_meltano/persistence/migrations/env.py",
    "flx_meltano/persistence/migrations/script.py.mako",
    "flx_meltano/persistence/migrations/versions/0001_store.py",
    "flx_meltano/templates/dagster.yaml",
    "flx_meltano/templates/workspace.yaml",
    "flx_meltano/templates/definitions.py.template",
    "flx_meltano/code_location.py",
)


def test_the_wheel_and_sdist_hold_migrations_settings_and_types_and_nothing_of_the_project(dist):
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert dist.wheel.name == f"flx_meltano-{declared}-py3-none-any.whl"
    wheel = set(zipfile.ZipFile(dist.wheel).namelist())
    assert set(PACKAGE_DATA) <= wheel
    assert {name.split("/")[0] for name in wheel} == {"flx_meltano", f"flx_meltano-{declared}.dist-info"}
    entry_points = zipfile.ZipFile(dist.wheel).read(f"flx_meltano-{declared}.dist-info/entry_points.txt")
    assert b"flx-meltano = flx_meltano.cli.app:main" in entry_points

    with tarfile.open(dist.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {f"src/{name}" for name in PACKAGE_DATA} <= names
    project = ("tests/", "taps/", "targets/", "meltano.yml", ".meltano")
    assert not any(name.startswith(project) for name in names)


def test_a_fresh_environment_with_the_wheel_prints_versions_and_its_doctor_passes(
    wheel_venv, adopted_project
):
    flx = wheel_venv / "bin" / "flx-meltano"
    assert REPO not in flx.parents
    shown = run([flx, "--version"], cwd=adopted_project.root, env=user_env()).stdout.splitlines()
    assert shown[:3] == [
        f"flx-meltano {version('flx-meltano')}",
        f"meltano {version('meltano')}",  # requirements.lock pins both environments alike
        f"dagster {version('dagster')}",
    ]

    # --version reads package metadata only: neither meltano nor dagster is imported for it.
    probe = (
        "import sys\nfrom flx_meltano.cli.app import app\n"
        "try:\n    app(['--version'])\nexcept SystemExit:\n    pass\n"
        "print('MODULES', [m for m in ('meltano', 'dagster') if m in sys.modules])"
    )
    probed = run([wheel_venv / "bin" / "python", "-c", probe], cwd=adopted_project.root, env=user_env())
    assert "MODULES []" in probed.stdout, probed.stdout

    doctor = run([flx, "doctor", "--json"], cwd=adopted_project.root, env=adopted_project.env())
    checks = {c["name"]: c for c in json.loads(doctor.stdout)}
    assert all(c["ok"] for c in checks.values()), checks
    expected = {"meltano executable", "meltano.yml", "plugin flx-meltano", "plugin target-jsonl", "database"}
    assert expected <= set(checks)
    # The meltano it found is the one installed beside it, in the fresh environment.
    assert checks["meltano executable"]["detail"].endswith(version("meltano"))
