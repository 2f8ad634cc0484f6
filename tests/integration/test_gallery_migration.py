"""Migration 0004 (the gallery's trash) on SQLite and PostgreSQL: from 0003 with rows in place, up
to head and back. Images deleted before the trash existed had their files removed at once, so the
trash must not offer them (their key is forgotten); live images keep theirs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from services.db import Database, alembic_config
from tests.conftest import TEST_DATABASE_URL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request, tmp_path):
    """An empty database (no migration applied yet)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    if not TEST_DATABASE_URL:
        pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL cases skipped (SQLite still runs)")
    schema = f"m_{uuid.uuid4().hex[:12]}"
    admin = Database(TEST_DATABASE_URL, pool_size=1)
    with admin.engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in TEST_DATABASE_URL else "?"
    try:
        yield f"{TEST_DATABASE_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def _generation(gen_id: str, *, deleted: bool, status: str = "succeeded") -> dict:
    now = datetime.now(UTC)
    return {"id": gen_id, "user_id": 1, "prompt": "p", "styled_prompt": "p", "style": "none", "aspect_ratio": "1:1",
            "resolution": "1K", "engine": "offline", "model": "offline", "cost": 10, "status": status,
            "image_key": gen_id, "timings": "{}", "created_at": now, "deleted_at": now if deleted else None}


def test_0004_forgets_the_keys_of_images_deleted_before_the_trash_and_indexes_deleted_at(empty_url):
    db = Database(empty_url)
    try:
        config = alembic_config(db.engine)
        command.upgrade(config, "0003")
        live, old_delete, pending = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
        with db.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO users (id, email, password_hash, role, created_at) "
                                 "VALUES (1, 'old@example.com', 'x', 'user', :now)"), {"now": datetime.now(UTC)})
            gens = sa.table("generations", *[sa.column(c) for c in _generation(live, deleted=False)])
            conn.execute(gens.insert(), [_generation(live, deleted=False), _generation(old_delete, deleted=True),
                                         _generation(pending, deleted=True, status="pending")])

        command.upgrade(config, "0004")
        with db.engine.connect() as conn:
            keys = dict(conn.execute(sa.text("SELECT id, image_key FROM generations")).all())
            indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("generations")}
        assert keys == {live: live, old_delete: None, pending: pending}, \
            "a pending job keeps its key: the sweep still needs it to settle the hold"
        assert "ix_generations_deleted_at" in indexes

        command.downgrade(config, "0003")
        with db.engine.connect() as conn:
            assert "ix_generations_deleted_at" not in {ix["name"] for ix in sa.inspect(conn).get_indexes("generations")}
        command.upgrade(config, "head")
    finally:
        db.dispose()
