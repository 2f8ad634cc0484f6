"""Migration 0005 on SQLite and PostgreSQL: accounts that already had their trial get their
mailbox claimed, and going back to 0004 keeps every user and credit."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from services.db import alembic_config


def test_upgrade_claims_existing_trials_and_downgrade_keeps_the_money(fresh_db):
    cfg = alembic_config(fresh_db.engine)
    command.downgrade(cfg, "0004")
    with fresh_db.engine.begin() as c:
        for n, email in enumerate(("Jane.Doe@gmail.com", "janedoe+x@googlemail.com", "bob@example.com"), 1):
            c.execute(text("INSERT INTO users (id, email, password_hash, role, created_at) "
                           "VALUES (:id, :email, 'x', 'user', CURRENT_TIMESTAMP)"), {"id": n, "email": email.lower()})
        for n in (1, 2):  # Bob never had a trial (TRIAL_CREDITS=0 then)
            c.execute(text("INSERT INTO credit_grants (user_id, kind, original, remaining, source_ref, created_at) "
                           "VALUES (:n, 'trial', 40, 40, :ref, CURRENT_TIMESTAMP)"), {"n": n, "ref": f"trial:{n}"})
    command.upgrade(cfg, "head")
    with fresh_db.engine.connect() as c:
        claims = c.execute(text("SELECT claim_key, user_id FROM trial_claims")).all()
    assert claims == [("email:janedoe@gmail.com", 1)]
    command.downgrade(cfg, "0004")
    with fresh_db.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM users")).scalar() == 3
        assert c.execute(text("SELECT count(*) FROM credit_grants")).scalar() == 2
    command.upgrade(cfg, "head")
