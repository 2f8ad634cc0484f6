"""A process killed mid-generation loses nothing: the ledger's stale-hold sweep settles its hold,
capturing it only if the image was stored (`Studio.is_stored`)."""

import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import pytest
from PIL import Image
from sqlmodel import select

from models.base import utcnow
from models.generation import Generation
from models.ledger import Hold
from services.db import ROOT
from services.errors import NotFound
from services.ledger import Ledger
from tests.clock import Clock

SCRIPT = textwrap.dedent("""
    import asyncio, os, sys
    from sqlalchemy import event
    from services.db import Database
    from tests.integration.studio.child import child_studio

    db_url, data_dir, base_url, user_id, crash_at = sys.argv[1:6]
    db = Database(db_url)
    if crash_at == "capture":
        # Die the moment the capture starts writing: the image is stored and marked, not charged.
        @event.listens_for(db.engine, "before_cursor_execute")
        def die(conn, cursor, statement, params, context, executemany):
            # SQLite settles the hold in Python; PostgreSQL calls ledger_capture().
            if statement.lstrip().upper().startswith(("UPDATE HOLDS", "SELECT * FROM LEDGER_CAPTURE")):
                os._exit(9)
    studio = child_studio(db, data_dir=data_dir, base_url=base_url)
    asyncio.run(studio.generate(user_id=int(user_id), is_admin=False, prompt="a crash", style="none",
                                aspect_ratio="1:1", resolution="1K"))
    print("finished")
""")


def _run_until_killed(rig, fake, tmp_path, user_id: int, crash_at: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, rig.db.url, str(tmp_path / "data"), fake.url, str(user_id), crash_at],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    if crash_at == "engine":
        while not fake.calls("/images/generations"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        proc.kill()
    proc.wait(timeout=60)
    assert proc.returncode != 0, "the generation was meant to die midway"
    return proc


@pytest.mark.slow
def test_killed_processes_are_settled_by_the_sweep(make_rig, fake_openai, tmp_path):
    rig = make_rig("openai", fake_openai)  # its DATA_DIR is tmp_path / "data"
    uid = rig.user(credits=30)

    fake_openai.fail("hang")
    _run_until_killed(rig, fake_openai, tmp_path, uid, "engine")
    fake_openai.fail(None)
    _run_until_killed(rig, fake_openai, tmp_path, uid, "capture")

    assert rig.balance(uid) == 10, "both holds are still out"
    with rig.db.session() as s:
        rows = {g.prompt + str(g.image_key is not None): g for g in s.exec(select(Generation)).all()}
        assert s.exec(select(Hold.status)).all() == ["pending", "pending"]
    killed_in_engine, killed_at_capture = rows["a crashFalse"], rows["a crashTrue"]
    assert rig.studio.is_stored(killed_at_capture.id) and rig.store.exists(killed_at_capture.id)
    assert not rig.studio.is_stored(killed_in_engine.id)

    now = Ledger(rig.db).sweep_stale_holds(is_stored=rig.studio.is_stored)
    assert now == {"captured": 0, "released": 0, "errors": 0}, "live holds are left alone"
    later = Ledger(rig.db, clock=Clock(utcnow() + timedelta(hours=1)))
    assert later.sweep_stale_holds(is_stored=rig.studio.is_stored) == {"captured": 1, "released": 1, "errors": 0}

    assert rig.balance(uid) == 20, "charged once, for the image that was stored"
    assert rig.studio.settle_abandoned() == 2
    with rig.db.session() as s:
        assert s.get(Generation, killed_at_capture.id).status == "succeeded"
        failed = s.get(Generation, killed_in_engine.id)
        assert failed.status == "failed" and "not charged" in failed.error
    assert rig.studio.settle_abandoned() == 0
    assert [g.id for g in rig.studio.gallery(user_id=uid).items] == [killed_at_capture.id]
    assert rig.ledger.reconcile() == []

    # What the user was charged for is a whole image; what they were not charged for left no file.
    png, media = rig.studio.open_image(user_id=uid, generation_id=killed_at_capture.id, variant="png")
    with Image.open(png) as image:
        assert (image.format, image.size, media) == ("PNG", (1024, 1024), "image/png")
    with pytest.raises(NotFound):
        rig.studio.open_image(user_id=uid, generation_id=killed_in_engine.id, variant="png")
    files = sorted(p.relative_to(rig.store.root).as_posix() for p in rig.store.root.rglob("*") if p.is_file())
    key = killed_at_capture.id
    assert files == [f"{key[:2]}/{key}/{name}" for name in ("display.webp", "original.png", "thumb.webp")]
