"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from services.db import Database
from tests.conftest import TEST_DATABASE_URL
from tests.databases import postgres_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_db(request, tmp_path):
    """An empty database migrated to head, on SQLite and on PostgreSQL (a schema of its own): for
    the migration tests, which go down and up from there."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'm.db'}")
        db.upgrade()
        yield db
        db.dispose()
        return
    if not TEST_DATABASE_URL:
        pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL cases skipped (SQLite still runs)")
    with postgres_schema(TEST_DATABASE_URL, "migr") as url:
        db = Database(url)
        yield db
        db.dispose()
