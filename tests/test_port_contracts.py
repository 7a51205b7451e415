"""The port contracts (tests/contracts.py) against the real adapters: PostgreSQL, Meltano's backend."""

from __future__ import annotations

import pytest

from flx_meltano.integration.state_access import MeltanoStateStore
from flx_meltano.persistence import database
from flx_meltano.persistence.unit_of_work import SqlUnitOfWork
from tests.contracts import StateStoreContract, UnitOfWorkContract

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


class TestSqlUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def make_unit_of_work(self, store_url):
        engine = database.ready_engine(store_url)
        return lambda: SqlUnitOfWork(engine)


class TestMeltanoStateStore(StateStoreContract):
    """Through Meltano's own state service, on a file:// backend (no meltano process)."""

    @pytest.fixture
    def make_state_store(self, tmp_path):
        stores: list[MeltanoStateStore] = []

        def make():
            store = MeltanoStateStore(
                REPO, "dev", env={"MELTANO_STATE_BACKEND_URI": f"file://{tmp_path}/state"}
            )
            stores.append(store)
            return store

        yield make
        for store in stores:
            store.close()
