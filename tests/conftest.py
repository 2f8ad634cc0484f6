"""Shared fixtures, in one place.

`database` runs a test on SQLite and, when TEST_DATABASE_URL is set, again on PostgreSQL
(skipped with a reason otherwise). Each test gets an empty, fully migrated store.
`clock` is the one settable test clock; `catalog` the shipped catalog; `fake_openai` and
`fake_stripe` the loopback fakes (tests/fakes/), started and stopped around the test.

The helpers that benchmarks also need live in pytest-free modules (tests/databases.py,
tests/fakes/base.py, tests/clock.py); their names stay importable from here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import models  # noqa: F401
from services.catalog import Catalog
from services.db import ROOT, Database
from tests.clock import Clock
from tests.databases import postgres_schema, sqlite_url, truncate_all
from tests.factories import make_user as _make_user
from tests.fakes.base import free_port
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.stripe_server import FakeStripe

# The tests' balances are computed from a 40-credit trial (the product's default is 60: see
# services/settings.py); served apps inherit it. A test about the default removes it (test_settings).
os.environ.setdefault("TRIAL_CREDITS", "40")

__all__ = ["TEST_DATABASE_URL", "free_port", "postgres_schema", "sqlite_url", "truncate_all"]

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "").strip()

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def pytest_report_header(config):
    if TEST_DATABASE_URL:
        return "stores: SQLite and PostgreSQL (TEST_DATABASE_URL is set)"
    return "stores: SQLite only; PostgreSQL cases skip (set TEST_DATABASE_URL to run them)"


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> Path:
    """One migrated SQLite file, copied for each test (much faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return path


@pytest.fixture(scope="session")
def _postgres_migrated():
    """A private schema in the PostgreSQL test database for this pytest run, migrated once."""
    if not TEST_DATABASE_URL:
        pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL cases skipped (SQLite still runs)")
    with postgres_schema(TEST_DATABASE_URL, "t") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path, _sqlite_template) -> str:
    """A URL to an empty, migrated database: SQLite file, or the PostgreSQL test database."""
    if request.param == "sqlite":
        return sqlite_url(_sqlite_template, tmp_path)
    url = request.getfixturevalue("_postgres_migrated")
    truncate_all(url)
    return url


@pytest.fixture
def database(database_url):
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def sqlite_database(tmp_path, _sqlite_template):
    """SQLite only, for tests that have nothing database-specific to check."""
    db = Database(sqlite_url(_sqlite_template, tmp_path))
    yield db
    db.dispose()


@pytest.fixture
def make_user(request):
    """make_user(db, email=None, role="user") -> User, inserted directly (no password hashing)."""
    return _make_user


@pytest.fixture
def clock() -> Clock:
    """A clock that stands still at the test's start until the test moves it."""
    return Clock()


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog.load(ROOT / "assets")


@pytest.fixture
def fake_openai():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake_stripe():
    with FakeStripe() as server:
        yield server


@pytest.fixture(scope="session")
def moto_s3():
    """moto's S3 in server mode on 127.0.0.1 (tests/fakes/s3_server.py), one per test session."""
    from tests.fakes.s3_server import MotoS3

    server = MotoS3()
    yield server
    server.stop()
