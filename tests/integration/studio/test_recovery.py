"""Recovery without waiting: the jobs of a process start that is gone are settled by the next
sweep (long before their holds expire), a live replica's jobs are left alone, and image files
that belong to no live generation are deleted once older than the grace period."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import timedelta

import pytest
from sqlmodel import select

from models.base import utcnow
from models.generation import Boot, Generation
from services.db import ROOT
from services.maintenance import MISSED_HEARTBEATS, ORPHAN_GRACE, BootIdentity, Maintenance, current_boot

INTERVAL = 60

# A process that registers its start like the served app does (one sweep), then generates and
# is killed: in the engine call ("engine") or the moment the capture starts writing ("capture").
SCRIPT = textwrap.dedent("""
    import asyncio, os, sys
    from sqlalchemy import event
    from services.db import Database
    from services.maintenance import Maintenance
    from tests.integration.studio.child import child_studio

    db_url, data_dir, base_url, user_id, crash_at = sys.argv[1:6]
    db = Database(db_url)
    studio = child_studio(db, data_dir=data_dir, base_url=base_url)
    Maintenance(db=db, ledger=studio.ledger, studio=studio).sweep()
    if crash_at == "capture":
        @event.listens_for(db.engine, "before_cursor_execute")
        def die(conn, cursor, statement, params, context, executemany):
            if statement.lstrip().upper().startswith(("UPDATE HOLDS", "SELECT * FROM LEDGER_CAPTURE")):
                os._exit(9)
    asyncio.run(studio.generate(user_id=int(user_id), is_admin=False, prompt="a crash " + crash_at,
                                style="none", aspect_ratio="1:1", resolution="1K"))
    print("finished")
""")


def _run_until_killed(rig, fake, tmp_path, user_id: int, crash_at: str) -> None:
    calls_before = len(fake.calls("/images/generations"))
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, rig.db.url, str(tmp_path / "data"), fake.url, str(user_id), crash_at],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    if crash_at == "engine":
        while len(fake.calls("/images/generations")) == calls_before:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        os.kill(proc.pid, 9)
    proc.wait(timeout=60)  # reaped: its pid is no longer running
    assert proc.returncode != 0, "the generation was meant to die midway"


def _maintenance(rig, **kwargs) -> Maintenance:
    return Maintenance(db=rig.db, ledger=rig.ledger, studio=rig.studio, interval_seconds=INTERVAL, **kwargs)


@pytest.mark.slow
def test_the_jobs_of_a_killed_process_are_settled_at_the_next_start_without_waiting(make_rig, fake_openai,
                                                                                  tmp_path):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=30)

    _run_until_killed(rig, fake_openai, tmp_path, uid, "capture")  # stored, then killed
    with rig.db.session() as s:
        at_capture = s.exec(select(Generation)).one()
        first_boot = s.get(Boot, at_capture.boot_id)
    assert first_boot is not None and first_boot.host == current_boot().host, "same host: its pid tells"
    hold = rig.ledger.get_hold(at_capture.id)
    assert hold.status == "pending" and hold.expires_at > utcnow() + timedelta(minutes=10)
    assert rig.balance(uid) == 20

    fake_openai.fail("hang")  # the next process: its start-up sweep settles the first one's job
    _run_until_killed(rig, fake_openai, tmp_path, uid, "engine")
    assert rig.ledger.get_hold(at_capture.id).status == "captured", "settled at the next start"
    with rig.db.session() as s:
        in_engine = s.exec(select(Generation).where(Generation.id != at_capture.id)).one()
        assert s.get(Generation, at_capture.id).status == "succeeded"
    assert in_engine.boot_id not in (None, first_boot.id)
    assert rig.ledger.get_hold(in_engine.id).status == "pending"
    assert rig.balance(uid) == 10

    summary = _maintenance(rig).sweep()  # what a restarted app runs at start-up

    assert summary["released"] == 1 and summary["gone_boots"] == 1 and summary["errors"] == 0, summary
    assert rig.balance(uid) == 20, "whole again, charged once for the image that was stored"
    for job in (in_engine, at_capture):
        hold = rig.ledger.get_hold(job.id)
        assert hold.settled_at < hold.expires_at - timedelta(minutes=10), "no wait for the hold to expire"
    assert rig.ledger.get_hold(in_engine.id).status == "expired"
    with rig.db.session() as s:
        assert s.get(Generation, at_capture.id).status == "succeeded"
        failed = s.get(Generation, in_engine.id)
        assert failed.status == "failed" and "not charged" in failed.error
        assert s.exec(select(Boot.id)).all() == [current_boot().id], "the gone starts are forgotten"
    assert [g.id for g in rig.studio.gallery(user_id=uid).items] == [at_capture.id]
    assert rig.ledger.reconcile() == []


def _open_job(rig, user_id: int, boot_id: str | None, *, status: str = "pending", image: bool = False,
              deleted: bool = False) -> str:
    """A generation row (with its hold while pending), as Studio._open_job writes it."""
    gen_id = uuid.uuid4().hex
    with rig.db.transaction() as s:
        s.add(Generation(id=gen_id, user_id=user_id, prompt="p", styled_prompt="p", style="none",
                         aspect_ratio="1:1", resolution="1K", engine="offline", model="offline", cost=10,
                         status=status, boot_id=boot_id, image_key=gen_id if image else None,
                         deleted_at=utcnow() if deleted else None))
        s.flush()
        if status == "pending":
            rig.ledger.reserve(user_id=user_id, amount=10, job_id=gen_id, session=s)
    return gen_id


def _register(rig, *, host: str, pid: int, heartbeat_age: timedelta = timedelta(0), ended: bool = False) -> str:
    boot = BootIdentity(id=uuid.uuid4().hex, host=host, pid=pid)
    other = Maintenance(db=rig.db, ledger=rig.ledger, studio=rig.studio, boot=boot)
    other.heartbeat(now=utcnow() - heartbeat_age)
    if ended:
        other.stop()
    return boot.id


def test_only_the_jobs_of_starts_proven_gone_are_settled(make_rig):
    rig = make_rig()
    uid = rig.user(credits=100)
    here = current_boot().host
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live_elsewhere = _open_job(rig, uid, _register(rig, host="replica-2|k|pid:[1]", pid=os.getpid()))
        live_here = _open_job(rig, uid, _register(rig, host=here, pid=sleeper.pid))
        silent = _open_job(rig, uid, _register(rig, host="replica-3|k|pid:[1]", pid=7,
                                               heartbeat_age=timedelta(seconds=INTERVAL * MISSED_HEARTBEATS + 1)))
        shut_down = _open_job(rig, uid, _register(rig, host="replica-4|k|pid:[1]", pid=7, ended=True))
        unregistered = _open_job(rig, uid, uuid.uuid4().hex)
        before_0003 = _open_job(rig, uid, None)
        ours = _open_job(rig, uid, current_boot().id)
        assert rig.balance(uid) == 30

        summary = _maintenance(rig).sweep()

        assert summary["released"] == 2 and summary["gone_boots"] == 2, summary
        status = {job: rig.ledger.get_hold(job).status for job in
                  (live_elsewhere, live_here, silent, shut_down, unregistered, before_0003, ours)}
        assert status == {live_elsewhere: "pending", live_here: "pending", silent: "expired", shut_down: "expired",
                          unregistered: "pending", before_0003: "pending", ours: "pending"}
        assert rig.balance(uid) == 50

        sleeper.kill()
        sleeper.wait()  # the process on this host is gone: its job is settled at the next sweep
        assert _maintenance(rig).sweep()["released"] == 1
        assert rig.ledger.get_hold(live_here).status == "expired"
        assert rig.ledger.get_hold(live_elsewhere).status == "pending", "a fresh heartbeat elsewhere"
        assert rig.balance(uid) == 60
        assert rig.ledger.reconcile() == []
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_start_that_reuses_our_pid_on_this_host_is_gone(make_rig):
    # In a container the app is often pid 1 at every start: a previous start with our pid is over.
    rig = make_rig()
    uid = rig.user(credits=20)
    job = _open_job(rig, uid, _register(rig, host=current_boot().host, pid=os.getpid()))
    assert _maintenance(rig).sweep()["released"] == 1
    assert rig.ledger.get_hold(job).status == "expired" and rig.balance(uid) == 20


def _age(store, key: str, age: timedelta, now) -> None:
    stamp = (now - age).timestamp()
    directory = store.root / key[:2] / key
    for entry in directory.iterdir():
        os.utime(entry, (stamp, stamp))


def test_orphan_files_are_deleted_after_the_grace_period(make_rig):
    rig = make_rig()
    uid = rig.user(credits=100)
    kept = rig.generate(uid).id  # a stored, live generation
    now = utcnow()
    files = {"png": b"png", "webp": b"webp", "thumb": b"thumb"}
    old, young = ORPHAN_GRACE + timedelta(minutes=1), ORPHAN_GRACE - timedelta(minutes=1)
    unknown_old, unknown_young = uuid.uuid4().hex, uuid.uuid4().hex
    in_progress = _open_job(rig, uid, current_boot().id)  # files written, not yet marked stored
    failed = _open_job(rig, uid, None, status="failed", image=True)
    deleted = _open_job(rig, uid, None, status="succeeded", image=True, deleted=True)
    for key in (unknown_old, unknown_young, in_progress, failed, deleted):
        rig.store.save(key, files)
    for key in (kept, unknown_old, in_progress, failed, deleted):
        _age(rig.store, key, old, now)
    _age(rig.store, unknown_young, young, now)
    assert dict(rig.store.list_keys()).keys() == {kept, unknown_old, unknown_young, in_progress, failed, deleted}

    maintenance = _maintenance(rig)
    summary = maintenance.sweep(now=now)

    # A deleted image is in the trash: its files stay until the trash step purges it (30 days).
    assert summary["orphan_files"] == 2 and summary["errors"] == 0
    assert {key for key, _ in rig.store.list_keys()} == {kept, unknown_young, in_progress, deleted}
    assert rig.store.read(kept, "png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert rig.store.read(in_progress, "webp") == b"webp"
    # An hour later the young orphan is old enough too.
    assert maintenance.sweep(now=now + timedelta(hours=1))["orphan_files"] == 1
    assert {key for key, _ in rig.store.list_keys()} == {kept, in_progress, deleted}
