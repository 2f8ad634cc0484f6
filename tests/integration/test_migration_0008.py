"""Migration 0008 (style lab) on SQLite and PostgreSQL: saved styles unique per user without regard
to case (through name_key), share codes unique, deleted with their user; generations keep their rows
when going back to 0007 and forward again."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from services.db import alembic_config

STYLE = ("INSERT INTO saved_styles (user_id, name, name_key, template, share_code, created_at, updated_at) "
         "VALUES (:u, :name, :key, '{prompt}', :code, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)")


def test_saved_styles_constraints_and_the_way_back(fresh_db):
    cfg = alembic_config(fresh_db.engine)
    with fresh_db.engine.begin() as c:
        for n in (1, 2):
            c.execute(text("INSERT INTO users (id, email, password_hash, role, created_at) "
                           "VALUES (:id, :email, 'x', 'user', CURRENT_TIMESTAMP)"), {"id": n, "email": f"u{n}@example.com"})
        c.execute(text(STYLE), {"u": 1, "name": "Moody", "key": "moody", "code": "c" * 16})
        c.execute(text(STYLE), {"u": 2, "name": "MOODY", "key": "moody", "code": None})  # another user: fine
        c.execute(text("INSERT INTO generations (id, user_id, prompt, styled_prompt, style, aspect_ratio, resolution, "
                       "engine, model, cost, status, timings, created_at, batch_id) VALUES ('g1', 1, 'p', 'p', "
                       "'Moody', '1:1', '1K', 'offline', 'm', 10, 'failed', '{}', CURRENT_TIMESTAMP, 'b1')"))
    for params in ({"u": 1, "name": "moody", "key": "moody", "code": None},
                   {"u": 2, "name": "Other", "key": "other", "code": "c" * 16}):
        with pytest.raises(IntegrityError), fresh_db.engine.begin() as c:
            c.execute(text(STYLE), params)
    with fresh_db.engine.begin() as c:
        c.execute(text("DELETE FROM users WHERE id = 2"))
        assert c.execute(text("SELECT user_id FROM saved_styles")).scalars().all() == [1]
    command.downgrade(cfg, "0007")
    with fresh_db.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM generations")).scalar() == 1
    command.upgrade(cfg, "head")
    with fresh_db.engine.connect() as c:
        assert c.execute(text("SELECT batch_id FROM generations")).scalar() is None
        assert c.execute(text("SELECT count(*) FROM saved_styles")).scalar() == 0
