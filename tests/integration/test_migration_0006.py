"""Migration 0006 (reference images, issue #11) on SQLite and PostgreSQL: generations made before
it read as made without references, new ones keep theirs, and going back to 0005 keeps every row."""

from __future__ import annotations

import json

from alembic import command
from sqlalchemy import inspect, text

from services.db import alembic_config


def test_0006_adds_reference_images_and_masked_and_downgrades_keeping_the_rows(fresh_db):
    cfg = alembic_config(fresh_db.engine)
    command.downgrade(cfg, "0005")
    with fresh_db.engine.begin() as c:
        c.execute(text("INSERT INTO users (id, email, password_hash, role, created_at) "
                       "VALUES (1, 'a@example.com', 'x', 'user', CURRENT_TIMESTAMP)"))
        c.execute(text(
            "INSERT INTO generations (id, user_id, prompt, styled_prompt, style, aspect_ratio, resolution, engine,"
            " model, cost, status, timings, created_at) VALUES ('g1', 1, 'p', 'p', 's', '1:1', '1K', 'offline',"
            " 'm', 10, 'succeeded', '{}', CURRENT_TIMESTAMP)"))
    command.upgrade(cfg, "0006")
    with fresh_db.engine.begin() as c:
        refs, masked = c.execute(text("SELECT reference_images, masked FROM generations")).one()
        assert refs is None and not masked and masked is not None  # an old image: made without references
        c.execute(text("UPDATE generations SET reference_images = :r, masked = :m"),
                  {"r": json.dumps([{"variant": "ref0.jpg", "name": "a.jpg"}]), "m": True})
    command.downgrade(cfg, "0005")
    with fresh_db.engine.begin() as c:
        columns = {col["name"] for col in inspect(c).get_columns("generations")}
        assert not {"reference_images", "masked"} & columns
        assert c.execute(text("SELECT id, cost FROM generations")).one() == ("g1", 10)
    command.upgrade(cfg, "head")
