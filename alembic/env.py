"""Alembic environment. The app hands over its engine (config.attributes["engine"]);
the alembic CLI uses sqlalchemy.url or DATABASE_URL from Settings."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlmodel import SQLModel

import models  # noqa: F401  (registers every table on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata

# The alembic command line logs as alembic.ini says. Inside the app (`python app.py`, `db upgrade`)
# the app's logging stands, which keeps alembic's INFO lines out of its output.
if config.cmd_opts is not None and config.config_file_name:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# Replicas may start together: on PostgreSQL one migrates while the others wait.
_PG_MIGRATION_LOCK = 727_001


def _engine():
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from services.settings import load_settings

        url = load_settings().resolved_database_url
    from services.db import Database

    return Database(url).engine


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        is_pg = connection.dialect.name == "postgresql"
        if is_pg:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            connection.commit()
        try:
            context.configure(connection=connection, target_metadata=target_metadata,
                              render_as_batch=True, compare_type=True)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            if is_pg:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
