"""The served app killed (SIGKILL) in the middle of a generation: the next start gives the user's
credits back at once, not after the hold's 15 minutes, and leaves a live replica's job alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from gradio_client import Client
from sqlmodel import select

from models.base import utcnow
from models.generation import Boot, Generation
from services.db import ROOT, Database
from services.ledger import Ledger
from services.maintenance import BootIdentity, Maintenance, current_boot
from tests.conftest import free_port
from tests.e2e.conftest import BASE_SETTINGS, start_app
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture
def fake_openai():
    server = FakeOpenAI().start()
    yield server
    server.stop()


def _serve_in_a_process(data_dir, database_url: str, fake: FakeOpenAI) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, **BASE_SETTINGS, "DATA_DIR": str(data_dir), "DATABASE_URL": database_url,
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "IMAGE_PROVIDER": "openai",
           "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": fake.url}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-3000:]
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)


def _wait_until(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _boot_row(db, boot_id: str):
    with db.session() as s:
        return s.get(Boot, boot_id)


def _status(db, generation_id: str) -> str:
    with db.session() as s:
        return s.get(Generation, generation_id).status


def test_a_killed_app_is_recovered_at_the_next_start(tmp_path, database_url, fake_openai):
    url = database_url
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()

    proc, app_url = _serve_in_a_process(first_dir, url, fake_openai)
    db = Database(url)
    ledger = Ledger(db)
    client = None
    try:
        from app import build_services
        from services.settings import load_settings

        services = build_services(load_settings(env_file=None, **{
            **{k: (None if v == "" else v) for k, v in BASE_SETTINGS.items()}, "DATABASE_URL": url,
            "DATA_DIR": str(first_dir)}), migrate=False)
        user = services.accounts.create_user(email=f"crash-{uuid.uuid4().hex[:8]}@example.com",
                                             password="correct horse battery")
        _, key = services.accounts.create_api_key(user_id=user.id, name="e2e")
        start = ledger.balance(user.id).total
        assert start == 40

        # A job of a live replica on another host: it heartbeats, so nobody may settle it.
        replica = BootIdentity(id=uuid.uuid4().hex, host="replica-2|other-kernel|pid:[1]", pid=1)
        Maintenance(db=db, ledger=ledger, studio=services.studio, boot=replica).heartbeat()
        with db.transaction() as s:
            s.add(Generation(id=uuid.uuid4().hex, user_id=user.id, prompt="elsewhere", styled_prompt="elsewhere",
                             style="none", aspect_ratio="1:1", resolution="1K", engine="openai", model="m",
                             cost=10, boot_id=replica.id))
        with db.session() as s:
            replica_job = s.exec(select(Generation.id).where(Generation.boot_id == replica.id)).one()
        ledger.reserve(user_id=user.id, amount=10, job_id=replica_job)

        fake_openai.fail("hang")
        client = Client(app_url, headers={"Authorization": f"Bearer {key}"}, verbose=False)
        client.submit("a lighthouse", "none", "1:1", "1K", api_name="/generate")
        _wait_until(lambda: fake_openai.calls("/images/generations"))
        os.kill(proc.pid, signal.SIGKILL)  # mid-generation: its hold is out, nothing will settle it
        proc.wait(timeout=30)
        with db.session() as s:
            job = s.exec(select(Generation).where(Generation.prompt == "a lighthouse")).one()
        hold = ledger.get_hold(job.id)
        assert hold.status == "pending" and hold.expires_at > utcnow() + timedelta(minutes=10)
        assert ledger.balance(user.id).total == start - 20
        services.db.dispose()
    finally:
        if client is not None:
            client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    restarted = start_app(second_dir, url)  # the same host: the dead pid tells at once
    try:
        _wait_until(lambda: ledger.get_hold(job.id).status != "pending")
        hold = ledger.get_hold(job.id)
        assert hold.status == "expired" and hold.settled_at < hold.expires_at - timedelta(minutes=10)
        _wait_until(lambda: _status(db, job.id) != "pending")
        # The same sweep then forgets the dead start, in a transaction of its own.
        _wait_until(lambda: _boot_row(db, job.boot_id) is None)
        with db.session() as s:
            failed = s.get(Generation, job.id)
            assert failed.status == "failed" and "not charged" in failed.error
            assert s.get(Boot, replica.id) is not None
        assert ledger.balance(user.id).total == start - 10, "whole again, but for the live replica's hold"
        assert ledger.get_hold(replica_job).status == "pending", "a live replica's job is left alone"
        assert ledger.reconcile() == []
    finally:
        restarted.stop()
    try:
        with db.session() as s:
            assert s.get(Boot, current_boot().id).ended_at is not None, "a clean shutdown is recorded"
    finally:
        db.dispose()
