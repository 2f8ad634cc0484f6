"""Housekeeping every app process runs: one call, `Maintenance.sweep()`, at start-up and then
every sweep interval (app.py schedules it).

One sweep, in order:
1. heartbeat: this process start's `boots` row says it is alive;
2. gone boots: the pending jobs of a process start that is gone are settled now (captured if
   their image was stored, else given back), instead of waiting for their holds to expire;
3. stale holds: any pending hold past its expiry is settled the same way (jobs without a
   known owner, or whose owner looked alive);
4. abandoned generations: generations whose hold was settled behind their back are marked;
5. the trash: generations deleted more than 30 days ago are purged with their files (no credit
   moves: the ledger keeps its rows; see StudioGallery.purge_trash);
6. orphan files: image files that belong to no generation are deleted after a grace period;
7. retention; 8. team allowances (MONTHLY_ALLOWANCE_CREDITS): this month's team bucket for every
   active member who lacks it (services/team.py; the ledger's key makes it once across replicas).

Several replicas may share one PostgreSQL database: a process never settles the jobs of a start
it cannot prove gone (see `_is_gone`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.exc import IntegrityError

from models.base import utcnow
from models.generation import Boot, Generation
from services.retention import prune_due

log = logging.getLogger("studio.maintenance")

ORPHAN_GRACE = timedelta(hours=1)
ORPHAN_SCAN_EVERY = timedelta(minutes=15)
MISSED_HEARTBEATS = 5  # a start whose heartbeat is this many sweep intervals old is gone
_CHUNK = 500

B = Boot.__table__
GEN = Generation.__table__


@dataclass(frozen=True)
class BootIdentity:
    """One start of this process: a fresh id, where it runs, and its pid there."""

    id: str
    host: str
    pid: int


_current: BootIdentity | None = None


def current_boot() -> BootIdentity:
    """This process start's identity (a new one in a forked child)."""
    global _current
    if _current is None or _current.pid != os.getpid():
        _current = BootIdentity(id=uuid.uuid4().hex, host=host_key(), pid=os.getpid())
    return _current


def host_key() -> str:
    """Names the pid namespace this process runs in: the host name, the running kernel's boot
    id and the pid namespace. Two processes with the same key see the same pids, so one can ask
    the kernel whether the other is still running; a container restarted gets a new key."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return "|".join(parts)[:255]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs in our pid namespace (a zombie does not count)."""
    if pid <= 0:
        return True  # cannot tell: assume alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, under another user
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2:][:1] != "Z"


class Maintenance:
    """The periodic sweep of one app process. `sweep()` is safe to run in several processes at
    once (every settlement is a conditional update that exactly one caller wins)."""

    def __init__(self, *, db, ledger, studio, interval_seconds: float = 60,
                 orphan_grace: timedelta = ORPHAN_GRACE, orphan_scan_every: timedelta = ORPHAN_SCAN_EVERY,
                 boot: BootIdentity | None = None, clock: Callable[[], datetime] = utcnow,
                 allowances: Callable[[], dict] | None = None):
        self.db = db
        self.ledger = ledger
        self.studio = studio
        self.store = studio.store
        self.boot = boot or current_boot()
        # Heartbeats are written with the writer's clock and read with ours: several intervals
        # of slack also absorb clock skew between replicas and a slow sweep.
        self.boot_timeout = timedelta(seconds=interval_seconds * MISSED_HEARTBEATS)
        self.orphan_grace = orphan_grace
        self.orphan_scan_every = orphan_scan_every
        self.clock = clock
        self._last_orphan_scan: datetime | None = None
        self._stopped = False
        self.allowances = allowances  # Team.refresh_allowances: this month's team buckets

    def sweep(self, *, now: datetime | None = None) -> dict:
        """Run every housekeeping step once; returns how much each did ("errors": steps that
        failed and were logged; the next sweep tries again)."""
        now = now or self.clock()
        summary = {"gone_boots": 0, "captured": 0, "released": 0, "generations": 0, "purged": 0,
                   "orphan_files": 0, "errors": 0}
        steps = (
            ("heartbeat", lambda: self.heartbeat(now=now)),
            ("gone boots", lambda: self._settle_gone_boots(now, summary)),
            ("stale holds", lambda: self._add(summary, self.ledger.sweep_stale_holds(is_stored=self.studio.is_stored))),
            ("abandoned generations", lambda: self._add(summary, {"generations": self.studio.settle_abandoned()})),
            ("trash", lambda: self._add(summary, {"purged": self.studio.purge_trash(now=now)})),
            ("orphan files", lambda: self._add(summary, {"orphan_files": self._delete_orphan_files(now)})),
            ("retention", lambda: self._add(summary, prune_due(self, now))),
            ("team allowances", lambda: self._add(summary, self.allowances() if self.allowances else {})),
        )
        for name, step in steps:
            try:
                step()
            except Exception:
                log.exception("sweep step failed: %s", name)
                summary["errors"] += 1
        return summary

    @staticmethod
    def _add(summary: dict, counts: dict) -> None:
        for key, n in counts.items():
            summary[key] = summary.get(key, 0) + n

    # This process start ---------------------------------------------------------------------

    def heartbeat(self, *, now: datetime | None = None) -> None:
        """Register this process start, or say it is still alive."""
        if self._stopped:  # a sweep still running in its thread as the app shuts down
            return
        now = now or self.clock()
        for attempt in (1, 2):
            try:
                with self.db.write_connection() as conn:
                    seen = conn.execute(
                        update(B).where(B.c.id == self.boot.id).values(heartbeat_at=now, ended_at=None)
                    ).rowcount
                    if not seen:
                        conn.execute(B.insert().values(id=self.boot.id, host=self.boot.host, pid=self.boot.pid,
                                                       started_at=now, heartbeat_at=now, ended_at=None))
                return
            except IntegrityError:  # registered at the same moment by another sweep of this process
                if attempt == 2:
                    raise

    def stop(self, *, now: datetime | None = None) -> None:
        """A clean shutdown: this start is gone, any job it left pending is settled at once by
        the next sweep of any process."""
        self._stopped = True
        with self.db.write_connection() as conn:
            conn.execute(update(B).where(B.c.id == self.boot.id).values(ended_at=now or self.clock()))

    # Jobs of process starts that are gone --------------------------------------------------------

    def _is_gone(self, boot, now: datetime) -> bool:
        """Only what can be proven: it shut down cleanly; or it ran where we can see its pid (same
        pid namespace) and that pid is no longer running, or is ours; or it stopped
        heartbeating several sweep intervals ago. A live replica elsewhere heartbeats, so its
        jobs are never taken for abandoned."""
        if boot.id == self.boot.id:
            return False
        if boot.ended_at is not None:
            return True
        if boot.host == self.boot.host and (boot.pid == self.boot.pid or not pid_alive(boot.pid)):
            return True
        return boot.heartbeat_at <= now - self.boot_timeout

    def _settle_gone_boots(self, now: datetime, summary: dict) -> None:
        with self.db.session() as s:
            boots = s.connection().execute(select(B.c.id, B.c.host, B.c.pid, B.c.heartbeat_at, B.c.ended_at)).all()
        gone = [b.id for b in boots if self._is_gone(b, now)]
        if not gone:
            return
        with self.db.session() as s:
            jobs = s.connection().execute(
                select(GEN.c.id).where(GEN.c.boot_id.in_(gone), GEN.c.status == "pending").order_by(GEN.c.id)
            ).scalars().all()
        counts = self.ledger.settle_jobs_of_gone_process(job_ids=list(jobs), is_stored=self.studio.is_stored)
        self._add(summary, counts)
        if jobs:
            log.warning("settled %d job(s) left pending by %d stopped process(es): %s", len(jobs), len(gone), counts)
        # Mark their generations now too, then forget the starts that have nothing pending left.
        self._add(summary, {"generations": self.studio.settle_abandoned()})
        with self.db.write_connection() as conn:
            still_pending = exists().where(GEN.c.boot_id == B.c.id, GEN.c.status == "pending")
            summary["gone_boots"] += conn.execute(delete(B).where(B.c.id.in_(gone), ~still_pending)).rowcount

    # Orphan files -------------------------------------------------------------------------------

    def _delete_orphan_files(self, now: datetime) -> int:
        """Delete stored images that belong to no live generation (none with that key, or a
        failed one), once their newest file is older than the grace period. A deleted image in
        the trash keeps its files until the trash step purges it.

        Why a job in progress is never touched: its row is committed as "pending" before any of
        its files is written (Studio._open_job, then store.save), a pending row keeps its files,
        and the rows are read after the files are listed, so a listed file of a job in progress
        always finds its pending row. The grace period makes that hold even where this ordering
        alone would not: a store shared by several hosts whose clocks or database views lag by
        less than the grace period, and a generation that turns failed while its owner still
        writes (its own failure path deletes those files).
        """
        if self._last_orphan_scan is not None and now - self._last_orphan_scan < self.orphan_scan_every:
            return 0
        self._last_orphan_scan = now
        cutoff = now - self.orphan_grace
        old = [key for key, written in self.store.list_keys() if written <= cutoff]
        deleted = 0
        for start in range(0, len(old), _CHUNK):
            chunk = old[start:start + _CHUNK]
            with self.db.session() as s:
                rows = s.connection().execute(
                    select(GEN.c.id, GEN.c.image_key).where(
                        or_(GEN.c.id.in_(chunk), GEN.c.image_key.in_(chunk)),
                        GEN.c.status != "failed",
                    )
                ).all()
            live = {row.id for row in rows} | {row.image_key for row in rows if row.image_key}
            for key in chunk:
                if key not in live:
                    self.store.delete(key)
                    deleted += 1
        if deleted:
            log.info("deleted the files of %d image(s) that belong to no generation", deleted)
        return deleted
