"""Shared fixtures.

`database` runs a test on SQLite and, when TEST_DATABASE_URL is set, again on PostgreSQL
(skipped with a reason otherwise). Each test gets an empty, fully migrated store.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import SQLModel

import models  # noqa: F401
from services.db import Database
from tests.factories import make_user as _make_user

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


@contextmanager
def postgres_schema(base_url: str, prefix: str) -> Iterator[str]:
    """A fresh, migrated schema `<prefix>_<random>` in the database at `base_url`; yields a URL
    whose connections use it (search_path), and drops it afterwards. Two test runs, or a
    benchmark beside the tests, never see each other's rows."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = Database(base_url, pool_size=1)
    try:
        with admin.engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in base_url else "?"
        url = f"{base_url}{sep}options=-csearch_path%3D{schema}"
        db = Database(url)
        db.upgrade()
        db.dispose()
        yield url
    finally:
        with admin.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def _postgres_migrated():
    """A private schema in the PostgreSQL test database for this pytest run, migrated once."""
    if not TEST_DATABASE_URL:
        pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL cases skipped (SQLite still runs)")
    with postgres_schema(TEST_DATABASE_URL, "t") as url:
        yield url


def sqlite_url(template: Path, directory: Path) -> str:
    path = directory / "studio.db"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


def truncate_all(url: str) -> None:
    db = Database(url)
    try:
        tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
        with db.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        db.dispose()


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
