"""The CLI end to end, in a subprocess: one JSON object on the last stdout line; errors exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(tmp_path, database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "STRIPE_", "SMTP_"))}
    env.update({"DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url, "IMAGE_PROVIDER": "offline",
                "TRIAL_CREDITS": "40", "GRADIO_ANALYTICS_ENABLED": "False"})

    def run(*args: str, expect: int = 0, **extra_env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, str(ROOT / "app.py"), *args], cwd=tmp_path, env={**env, **extra_env},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == expect, (proc.stdout, proc.stderr)
        return proc

    return run


def last_json(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_db_upgrade(cli):
    assert last_json(cli("db", "upgrade"))["revision"]


def test_users_apikey_credits(cli):
    created = last_json(cli("users", "create", "Alice@Example.com", "--password", "a long password"))
    assert created["email"] == "alice@example.com" and created["balance"] == 40 and isinstance(created["id"], int)
    admin = last_json(cli("users", "create", "root@example.com", "--password", "a long password", "--admin"))
    assert admin["role"] == "admin"

    key = last_json(cli("apikey", "create", "alice@example.com"))["api_key"]
    assert key.startswith("sk_studio_")

    assert last_json(cli("credits", "grant", "alice@example.com", "25", "--note", "support"))["balance"] == 65
    assert last_json(cli("credits", "balance", "alice@example.com"))["balance"] == 65
    assert last_json(cli("credits", "reconcile"))["discrepancies"] == []


def test_errors_go_to_stderr_with_exit_1(cli):
    cli("users", "create", "bob@example.com", "--password", "a long password")
    dup = cli("users", "create", "bob@example.com", "--password", "a long password", expect=1)
    assert "already exists" in dup.stderr and dup.stdout.strip() == ""
    short = cli("users", "create", "carol@example.com", "--password", "short", expect=1)
    assert "at least 8" in short.stderr
    missing = cli("credits", "balance", "nobody@example.com", expect=1)
    assert "No user" in missing.stderr
    bad_amount = cli("credits", "grant", "bob@example.com", "0", expect=1)
    assert bad_amount.stderr.strip()
    assert last_json(cli("credits", "balance", "bob@example.com"))["balance"] == 40


def test_invalid_setting_stops_with_one_clear_line(cli):
    proc = cli("db", "upgrade", expect=1, TRIAL_CREDITS="lots")
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "TRIAL_CREDITS" in lines[0]


def test_catalog(cli):
    out = last_json(cli("catalog"))
    assert out["resolutions"] == {"1K": 10, "2K": 20, "4K": 40}
    assert any("16:9" in str(a) for a in out["aspect_ratios"])
    assert len(out["styles"]) >= 16
    assert isinstance(out["products"], dict)
    assert out["reference_surcharge"] == 0  # credits per reference image (assets/catalog.json)
