"""Test stores without pytest: a fresh PostgreSQL schema, a copied SQLite template, a truncate.

Benchmarks import this too (bench/ledger.py), so it must never import pytest or tests.conftest.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlmodel import SQLModel

import models  # noqa: F401 - every table on SQLModel.metadata
from services.db import Database


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


def sqlite_url(template: Path, directory: Path) -> str:
    """A copy of the migrated SQLite `template` in `directory`, as a URL."""
    path = directory / "studio.db"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


def truncate_all(url: str) -> None:
    """Empty every table of the PostgreSQL database at `url` (identities restart)."""
    db = Database(url)
    try:
        tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
        with db.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        db.dispose()
