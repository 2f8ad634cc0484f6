"""Serve the real app with uvicorn on a free 127.0.0.1 port.

`served_app` (module scope) is one app per test module, on SQLite and, when TEST_DATABASE_URL is
set, on PostgreSQL. `serve_app(**settings)` starts another one with its own settings (for
fake-server URLs, limits, keys); it is stopped at the end of the test.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.conftest import TEST_DATABASE_URL
from tests.databases import sqlite_url, truncate_all
from tests.fakes.base import free_port

# Settings that must not leak in from the machine's environment or a developer's .env.
BASE_SETTINGS = {
    "OPENAI_API_KEY": "", "OPENAI_BASE_URL": "", "IMAGE_PROVIDER": "offline",
    "STRIPE_SECRET_KEY": "", "STRIPE_WEBHOOK_SECRET": "", "STRIPE_API_BASE": "",
    "SMTP_HOST": "", "PUBLIC_URL": "", "ADMIN_EMAILS": "admin@example.com", "SECRET_KEY": "test-secret",
}


@dataclass
class ServedApp:
    url: str
    services: object
    settings: object
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.services.db.dispose()


def start_app(data_dir: Path, database_url: str, **overrides) -> ServedApp:
    from app import create_app
    from services.settings import load_settings

    port = free_port()
    values = {**BASE_SETTINGS, "DATA_DIR": str(data_dir), "DATABASE_URL": database_url,
              "GRADIO_SERVER_PORT": port, **overrides}
    settings = load_settings(env_file=None, **{k: (None if v == "" else v) for k, v in values.items()})
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", ws="none", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.02)
    return ServedApp(url=f"http://127.0.0.1:{port}", services=app.state.services, settings=settings,
                     server=server, thread=thread)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served_app(request, tmp_path_factory, _sqlite_template):
    data_dir = tmp_path_factory.mktemp("served")
    if request.param == "sqlite":
        url = sqlite_url(_sqlite_template, data_dir)
    else:
        if not TEST_DATABASE_URL:
            pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL cases skipped (SQLite still runs)")
        url = request.getfixturevalue("_postgres_migrated")
        truncate_all(url)
    served = start_app(data_dir, url)
    yield served
    served.stop()


@pytest.fixture
def serve_app(tmp_path, _sqlite_template):
    """serve_app(database_url=None, **settings) -> ServedApp; SQLite in tmp_path by default."""
    started: list[ServedApp] = []

    def _serve(database_url: str | None = None, **overrides) -> ServedApp:
        data_dir = tmp_path / f"app{len(started)}"
        data_dir.mkdir()
        served = start_app(data_dir, database_url or sqlite_url(_sqlite_template, data_dir), **overrides)
        started.append(served)
        return served

    yield _serve
    for served in started:
        served.stop()


def api_user(app: ServedApp, *, credits: int | None = None, name: str = "e2e") -> tuple[object, str]:
    """A user (the 40 trial credits, or exactly `credits` when more) and a plaintext API key, for the
    API doors (/v1, /mcp)."""
    services = app.services
    user = services.accounts.create_user(email=f"{name}-{uuid.uuid4().hex[:10]}@example.com",
                                         password="correct horse battery")
    have = services.ledger.balance(user.id).total
    if credits is not None and credits > have:
        services.ledger.grant(user_id=user.id, amount=credits - have, kind="admin",
                              idempotency_key=f"e2e:{uuid.uuid4().hex}")
    _, key = services.accounts.create_api_key(user_id=user.id, name=name)
    return user, key


def balance_of(app: ServedApp, user) -> int:
    return app.services.ledger.balance(user.id).total


_clients: list = []  # gradio_client Clients to close after the test (see `closing`)


def keep_closing(client):
    """Register a gradio_client Client for the `closing` fixture; returns it."""
    _clients.append(client)
    return client


@pytest.fixture
def closing():
    """Request it after the app fixture: the clients close before the app stops (which waits for them)."""
    yield
    while _clients:
        _clients.pop().close()


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token of a served form page (each page carries a fresh one, paired with its cookie)."""
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, "the page has no form token"
    return match.group(1)


def sign_up(app: ServedApp, email: str, password: str = "correct horse battery") -> httpx.Client:
    """A browser-like client signed up (and so signed in) through the real pages."""
    client = app.client(follow_redirects=False)
    page = client.get("/signup")
    csrf = csrf_of(page)
    r = client.post("/signup", data={"email": email, "password": password, "csrf": csrf})
    assert r.status_code == 303, r.text
    return client


def sign_in(app: ServedApp, email: str, password: str) -> tuple[httpx.Client, httpx.Response]:
    client = app.client(follow_redirects=False)
    page = client.get("/login")
    csrf = csrf_of(page)
    return client, client.post("/login", data={"email": email, "password": password, "csrf": csrf})


def queue_event(http: httpx.Client, fn_index: int, data: list, *, session_hash: str,
                event_data: dict | None = None) -> dict:
    """One UI event through Gradio's queue exactly as the page does (join, then the session's event
    stream); private events are not callable through gradio_client. Returns the final message."""
    joined = http.post("/gradio_api/queue/join", json={
        "data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": event_data,
        "trigger_id": None})
    assert joined.status_code == 200, joined.text
    with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session_hash}) as events:
        for line in events.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the event stream ended without a result")


def shop(serve_app, *, database_url: str, stripe_url: str, webhook_secret: str) -> ServedApp:
    """A served app with payments on (the fake Stripe at `stripe_url`) and the catalog synced."""
    app = serve_app(database_url=database_url, STRIPE_SECRET_KEY="sk_test_e2e", STRIPE_WEBHOOK_SECRET=webhook_secret,
                    STRIPE_API_BASE=stripe_url)
    app.services.billing.sync_catalog()
    return app


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where a browser test saves its screenshots: SCREENSHOT_DIR (.ci/run names it), else tmp."""
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser():
    """Debian's chromium, headless, for one test."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.browser import ARGS, CHROMIUM

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
