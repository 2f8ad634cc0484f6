"""What a person sees when starting the app or running a CLI command: no library chatter (no
alembic INFO lines), one line per start naming the address, the store, the engine and the storage,
and the CLI's one JSON object as the last stdout line."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "STRIPE_", "SMTP_", "DATABASE_URL", "GRADIO_SERVER"))}
    env.update({"DATA_DIR": "data", "IMAGE_PROVIDER": "offline", "GRADIO_ANALYTICS_ENABLED": "False", **extra})
    return env


def _head() -> str:
    from alembic.script import ScriptDirectory

    from services.db import alembic_config

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _cli(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(ROOT / "app.py"), *args], cwd=tmp_path, env=_env(tmp_path, **extra),
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc


def test_db_upgrade_prints_its_json_and_no_migration_log(tmp_path):
    proc = _cli(tmp_path, "db", "upgrade")  # a new SQLite file: every migration runs
    assert proc.stdout.splitlines() == [json.dumps({"revision": _head()})]
    assert proc.stderr == ""


def test_cli_commands_end_with_their_json_and_say_nothing_of_alembic(tmp_path, database_url):
    created = _cli(tmp_path, "users", "create", "quiet@example.com", "--password", "a long password",
                   DATABASE_URL=database_url)
    assert json.loads(created.stdout.splitlines()[-1])["email"] == "quiet@example.com"
    assert len(created.stdout.splitlines()) == 1
    assert "alembic" not in created.stderr and "Context impl" not in created.stderr
    assert [line for line in created.stderr.splitlines() if "INFO" in line and "studio." not in line] == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tmp_path: Path, **extra: str):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=tmp_path, text=True,
                            env=_env(tmp_path, GRADIO_SERVER_PORT=str(port), **extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    return proc, port, lines, reader


def _stop(proc: subprocess.Popen, reader: threading.Thread) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
    reader.join(timeout=10)
    return stderr


def test_serving_prints_one_line_naming_address_store_engine_and_storage(tmp_path):
    proc, port, lines, reader = _serve(tmp_path)
    try:
        first = lines.get(timeout=180)
        assert first.rstrip("\n") == (f"Image Studio on http://127.0.0.1:{port} · store: SQLite (data/studio.db) · "
                                      "engine: offline preview · images: local disk (data/images)")
        for _ in range(600):  # the line is printed just before the socket opens
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                threading.Event().wait(0.1)
        else:
            raise AssertionError("the app never answered /healthz")
    finally:
        stderr = _stop(proc, reader)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert all('"GET /healthz HTTP/1.1"' in line for line in rest), rest  # only the access log follows
    assert "alembic" not in stderr and "Uvicorn running" not in stderr and "Started server" not in stderr, stderr


@pytest.mark.postgres
def test_the_start_line_names_postgresql_without_its_password(tmp_path, _postgres_migrated):
    secret_url = _postgres_migrated.replace("postgres@", "postgres:not-a-real-secret@", 1)
    proc, _port, lines, reader = _serve(tmp_path, DATABASE_URL=secret_url)
    try:
        first = lines.get(timeout=180)
    finally:
        _stop(proc, reader)
    assert " · store: PostgreSQL (127.0.0.1:5432/test) · engine: offline preview · " in first
    assert "not-a-real-secret" not in first
