"""The store: one engine per process, sessions, write transactions and migrations.

SQLite gets WAL, a busy timeout and foreign keys; write transactions on SQLite begin with
`BEGIN IMMEDIATE` so read-then-write sequences cannot race (SQLAlchemy's pysqlite recipe).
On PostgreSQL, services lock the rows they change (`SELECT ... FOR UPDATE`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, create_engine

ROOT = Path(__file__).resolve().parent.parent


class Database:
    """Wraps the engine. `session()` for reads, `transaction()` for writes."""

    def __init__(self, url: str, *, pool_size: int = 20, echo: bool = False):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = create_engine(
                url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=pool_size, max_overflow=pool_size,
            )
            _configure_sqlite(self.engine)
        else:
            self.engine = create_engine(
                url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
        # `call()`: one statement per transaction (autocommit), no pre-ping round trip; opens
        # its connections only when first used.
        self._call_engine = None if self.is_sqlite else sa_create_engine(
            url, echo=echo, pool_size=pool_size, max_overflow=0, isolation_level="AUTOCOMMIT",
            pool_reset_on_return=None,  # autocommit: no transaction is ever left open
        )
        self._write_engine = self.engine.execution_options(immediate_transaction=True)
        # SQLite has one writer at a time. Every write transaction of this process queues here,
        # in-process, instead of in SQLite's sleeping busy handler (much higher throughput with
        # many threads, and no "database is locked" under load). Re-entrant, so a mistaken
        # nested write fails on SQLite's busy timeout instead of hanging.
        self._writer = threading.RLock() if self.is_sqlite else None

    def _write_turn(self):
        return self._writer if self._writer is not None else nullcontext()

    def session(self) -> Session:
        """A session for reading (and simple single-row writes)."""
        return Session(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction: commits on success, rolls back whole on any exception.

        On SQLite it waits for this process's writer turn, then starts with BEGIN IMMEDIATE, so
        it holds the write lock from the first statement and a read-then-write inside it cannot
        interleave with another writer. This (and `write_connection()`) is the only write path.
        """
        with self._write_turn(), Session(self._write_engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """Like `transaction()`, for Core statements on a bare connection (no ORM session)."""
        with self._write_turn(), self._write_engine.begin() as conn:
            yield conn

    def call(self, sql: str, params: tuple) -> tuple | None:
        """PostgreSQL only: run one statement (a function call) as its own transaction on a
        bare driver connection and return its first row. The fast path for hot single-call
        operations: one round trip, no ORM, no pre-ping.

        Only for statements that are safe to repeat: on a dropped connection (the server
        restarted) it is run once more on a fresh one. Driver errors are raised as SQLAlchemy's
        (IntegrityError, OperationalError, ...).
        """
        assert self._call_engine is not None, "Database.call() is for PostgreSQL"
        dbapi = self._call_engine.dialect.loaded_dbapi
        for attempt in (1, 2):
            conn = self._call_engine.raw_connection()
            cursor = None
            try:
                cursor = conn.cursor()
                cursor.execute(sql, params)
                return cursor.fetchone()
            except dbapi.Error as exc:
                if self._call_engine.dialect.is_disconnect(exc, conn.dbapi_connection, cursor):
                    conn.invalidate()
                    if attempt == 1:
                        continue
                raise DBAPIError.instance(sql, params, exc, dbapi.Error) from exc
            finally:
                conn.close()
        raise AssertionError("unreachable")

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def upgrade(self) -> str:
        """Apply Alembic migrations up to head; returns the current revision."""
        return upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()
        if self._call_engine is not None:
            self._call_engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event emit BEGIN
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        immediate = conn.get_execution_options().get("immediate_transaction")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def alembic_config(engine_or_url: Engine | str):
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    if isinstance(engine_or_url, str):
        cfg.set_main_option("sqlalchemy.url", engine_or_url.replace("%", "%%"))
    else:
        cfg.attributes["engine"] = engine_or_url
    return cfg


def upgrade(engine: Engine) -> str:
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    command.upgrade(alembic_config(engine), "head")
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() or ""
