"""The port contracts (tests/contracts.py) against the in-memory fakes."""

from __future__ import annotations

import pytest

from tests.contracts import StateStoreContract, UnitOfWorkContract
from tests.fakes import InMemoryStateStore, InMemoryStore


class TestInMemoryUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def make_unit_of_work(self):
        return InMemoryStore().unit_of_work


class TestInMemoryStateStore(StateStoreContract):
    @pytest.fixture
    def make_state_store(self):
        states = InMemoryStateStore()
        return lambda: states
