"""The fast tier: no PostgreSQL, no meltano process (a test that reaches for either fails here)."""

from __future__ import annotations

import subprocess

import psycopg
import pytest


@pytest.fixture(autouse=True)
def no_processes_no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the fast tier starts no process and opens no database: {args[:1]}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(psycopg, "connect", refuse)
