#!/usr/bin/env python3
"""Build the real Dockerfile and prove the container works; exit 1 with a clear message otherwise.

Run by .ci/run (as root, needs Docker); not part of the pytest run. Standard library only.

  1. tools: dockerd (Debian's docker.io), debootstrap, a compose CLI - installed with apt when missing;
     dockerd started when no daemon answers (and stopped again at the end).
  2. base: BASE_IMAGE if given, else docker/build-base.sh's Debian stand-in for python:3.11-slim.
  3. build: `docker build --build-arg BASE_IMAGE=...` of the repository's Dockerfile.
  4. run: non-root, a named volume on /data, the rest read-only (/tmp a tmpfs), offline engine,
     port published on 127.0.0.1 only.
  5. /healthz; a user and an API key through `python app.py users create` / `apikey create`;
     one offline generation through POST /gradio_api/call/generate and its event stream;
     the PNG through the owner-checked /images route.
  6. restart: the same PNG bytes and the same balance are still there; HEALTHCHECK reports healthy.
  7. compose: `docker compose config` (or docker-compose) accepts docker-compose.yml.

Environment: BASE_IMAGE (skip the stand-in), STUDIO_IMAGE (tag, default image-studio:ci),
KEEP_CONTAINER=1 (leave the container and volume for inspection).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("STUDIO_IMAGE", "image-studio:ci")
NAME = f"studio-verify-{os.getpid()}"
VOLUME = f"{NAME}-data"
EMAIL = "container-check@example.com"
LOG_DIR = Path(os.environ.get("VERIFY_LOG_DIR", "/tmp/studio-verify"))


class Failed(Exception):
    pass


def step(msg: str) -> None:
    print(f"container: {msg}", flush=True)


def run(*cmd: str, check: bool = True, timeout: float = 1800, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, text=True, capture_output=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        raise Failed(f"`{' '.join(cmd)}` exited {proc.returncode}:\n{tail}")
    return proc


def apt_install(*packages: str) -> None:
    step(f"installing {' '.join(packages)} from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", "update", "-qq", env=env)
    run("apt-get", "install", "-y", "-qq", *packages, env=env)


def daemon_answers() -> bool:
    return run("docker", "info", "--format", "{{.ServerVersion}}", check=False).returncode == 0


def ensure_tools() -> subprocess.Popen | None:
    missing = [pkg for pkg, exe in (("docker.io", "dockerd"), ("debootstrap", "debootstrap")) if not shutil.which(exe)]
    if not compose_cli() and "docker-compose" not in missing:
        missing.append("docker-compose")
    if missing and not (missing == ["docker.io"] and daemon_answers()):
        apt_install(*missing)
    if daemon_answers():
        return None
    step("no Docker daemon answers; starting dockerd")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / "dockerd.log", "ab") as log:  # dockerd keeps its own copy of the descriptor
        daemon = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(60):
        if daemon_answers():
            return daemon
        if daemon.poll() is not None:
            break
        time.sleep(1)
    tail = (LOG_DIR / "dockerd.log").read_text(errors="replace").splitlines()[-20:]
    raise Failed("dockerd did not start:\n" + "\n".join(tail))


def stop_daemon(daemon: subprocess.Popen) -> None:
    daemon.terminate()
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()


def compose_cli() -> list[str] | None:
    if shutil.which("docker") and run("docker", "compose", "version", check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# HTTP ------------------------------------------------------------------------------------------


def http(method: str, url: str, *, body: dict | None = None, key: str | None = None,
         timeout: float = 30) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_healthz(base: str, *, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    last = ""
    while time.monotonic() < deadline:
        try:
            status, body = http("GET", f"{base}/healthz", timeout=5)
            if status == 200 and json.loads(body).get("status") == "ok":
                return
            last = f"{status} {body[:200]!r}"
        except (OSError, ValueError) as err:
            last = repr(err)
        if container_state().get("Status") not in ("running", "restarting", "created"):
            break
        time.sleep(1)
    raise Failed(f"/healthz did not answer 200 ok within {seconds:.0f}s (last: {last})\n{logs_tail()}")


def call_api(base: str, api: str, data: list, key: str) -> list:
    """POST /gradio_api/call/<api>, then read its event stream to the `complete` event's data."""
    status, body = http("POST", f"{base}/gradio_api/call/{api}", body={"data": data}, key=key)
    if status != 200:
        raise Failed(f"POST /gradio_api/call/{api} answered {status}: {body[:300]!r}")
    event_id = json.loads(body)["event_id"]
    status, stream = http("GET", f"{base}/gradio_api/call/{api}/{event_id}", key=key, timeout=120)
    lines = stream.decode().splitlines()
    if status != 200 or "event: complete" not in lines:
        raise Failed(f"/gradio_api/call/{api} did not complete ({status}): {lines[-6:]}")
    return json.loads(lines[lines.index("event: complete") + 1][len("data: "):])


# Docker helpers --------------------------------------------------------------------------------


def container_state() -> dict:
    proc = run("docker", "inspect", "--format", "{{json .State}}", NAME, check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


def logs_tail() -> str:
    proc = run("docker", "logs", "--tail", "30", NAME, check=False)
    return "container log (last 30 lines):\n" + (proc.stdout + proc.stderr).strip()


def app_cli(*args: str) -> dict:
    proc = run("docker", "exec", NAME, "python", "app.py", *args, check=False)
    if proc.returncode != 0:
        raise Failed(f"`python app.py {' '.join(args)}` in the container exited {proc.returncode}: "
                     f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def wait_healthy(seconds: float = 150) -> None:
    deadline = time.monotonic() + seconds
    health = {}
    while time.monotonic() < deadline:
        health = container_state().get("Health") or {}
        if health.get("Status") == "healthy":
            return
        if health.get("Status") == "unhealthy":
            break
        time.sleep(2)
    raise Failed(f"HEALTHCHECK did not report healthy within {seconds:.0f}s: {json.dumps(health)[-600:]}")


# The check -------------------------------------------------------------------------------------


def build() -> None:
    base = os.environ.get("BASE_IMAGE")
    if not base:
        step("base image: Debian stand-in for python:3.11-slim (docker/build-base.sh)")
        proc = subprocess.run(["bash", str(ROOT / "docker" / "build-base.sh")], text=True)
        if proc.returncode != 0:
            raise Failed("docker/build-base.sh failed (see its output above)")
        base = os.environ.get("BASE_TAG", "studio-base:local")
    step(f"docker build --build-arg BASE_IMAGE={base} -t {IMAGE} .")
    started = time.monotonic()
    # The classic builder (Debian's docker.io has no buildx); host network so pip reaches PyPI.
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    run("docker", "build", "--force-rm", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
        "-t", IMAGE, str(ROOT), env=env)
    run("docker", "image", "prune", "-f", check=False)
    step(f"built {IMAGE} in {time.monotonic() - started:.0f}s")


def check_container() -> None:
    config = json.loads(run("docker", "image", "inspect", "--format", "{{json .Config}}", IMAGE).stdout)
    if config.get("User") in (None, "", "root", "0"):
        raise Failed(f"the image runs as root (Config.User={config.get('User')!r}); it must run as a non-root user")
    if not config.get("Healthcheck"):
        raise Failed("the image has no HEALTHCHECK")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run("docker", "volume", "create", VOLUME)
    # --read-only: the app writes nowhere but its volume and /tmp (as the Dockerfile says).
    run("docker", "run", "-d", "--name", NAME, "-p", f"127.0.0.1:{port}:7860", "-v", f"{VOLUME}:/data",
        "--read-only", "--tmpfs", "/tmp", "-e", "IMAGE_PROVIDER=offline", IMAGE)
    step(f"started {NAME} on {base} with volume {VOLUME} on /data, root filesystem read-only")

    uid = run("docker", "exec", NAME, "id", "-u").stdout.strip()
    if uid == "0":
        raise Failed("the app process runs as root inside the container")
    wait_healthz(base)
    step(f"/healthz ok; running as uid {uid}")
    start_line = next((line for line in run("docker", "logs", NAME).stdout.splitlines()
                       if line.startswith("Image Studio on")), "")
    if "/data/" not in start_line or "offline preview" not in start_line:
        raise Failed(f"start line does not show SQLite under /data and the offline engine: {start_line!r}\n"
                     f"{logs_tail()}")

    user = app_cli("users", "create", EMAIL, "--password", "container check passphrase")
    key = app_cli("apikey", "create", EMAIL)["api_key"]
    step(f"user {user['email']} created with {user['balance']} credits, API key issued")

    image, message, balance = call_api(base, "generate", ["a lighthouse at dusk", "none", "1:1", "1K"], key)
    found = re.search(r"/images/([^/\s)]+)/png", message or "")
    if not found:
        raise Failed(f"the generation did not return a PNG link: message={message!r} image={image!r}")
    generation_id = found.group(1)
    if not isinstance(balance, int) or balance >= user["balance"]:
        raise Failed(f"the generation did not charge: balance {user['balance']} -> {balance!r}")
    status, png = http("GET", f"{base}/images/{generation_id}/png", key=key)
    if status != 200 or not png.startswith(b"\x89PNG"):
        raise Failed(f"GET /images/{generation_id}/png answered {status} ({png[:40]!r})")
    digest = hashlib.sha256(png).hexdigest()
    if http("GET", f"{base}/images/{generation_id}/png")[0] != 401:
        raise Failed("the image route served a PNG without credentials")
    step(f"generated {generation_id} offline ({len(png)} bytes PNG); balance {user['balance']} -> {balance}")

    run("docker", "restart", NAME)
    wait_healthz(base)
    status, png_after = http("GET", f"{base}/images/{generation_id}/png", key=key)
    if status != 200 or hashlib.sha256(png_after).hexdigest() != digest:
        raise Failed(f"after a restart GET /images/{generation_id}/png answered {status} with other bytes")
    balance_after = call_api(base, "balance", [], key)[0]
    cli_balance = app_cli("credits", "balance", EMAIL)["balance"]
    if balance_after != balance or cli_balance != balance:
        raise Failed(f"after a restart the balance is {balance_after} (API) / {cli_balance} (CLI), "
                     f"not {balance}")
    discrepancies = app_cli("credits", "reconcile")["discrepancies"]  # exits 1 (a Failed) on any
    step(f"after a restart: same PNG, same API key, balance still {balance}, ledger reconciles "
         f"({len(discrepancies)} discrepancies)")

    wait_healthy()
    step("HEALTHCHECK reports healthy")


def check_compose() -> None:
    cli = compose_cli()
    if cli is None:
        raise Failed("no compose CLI (`docker compose` or `docker-compose`)")
    # As an operator would: a copy of the project with .env made from .env.example.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_") and k != "BASE_IMAGE"}
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "studio"
        shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(".git", "data", ".env"))
        shutil.copy(ROOT / ".env.example", project / ".env")
        proc = run(*cli, "config", check=False, env=env, cwd=str(project))
    if proc.returncode != 0:
        raise Failed(f"`{' '.join(cli)} config` rejected docker-compose.yml:\n{(proc.stderr or proc.stdout)[-800:]}")
    rendered = proc.stdout
    for needle in ("postgresql+psycopg://", "BASE_IMAGE", "/data"):
        if needle not in rendered:
            raise Failed(f"`{' '.join(cli)} config` output lacks {needle!r}")
    step(f"`{' '.join(cli)} config` accepts docker-compose.yml")


def cleanup() -> None:
    if os.environ.get("KEEP_CONTAINER") == "1":
        step(f"leaving {NAME} and {VOLUME} (KEEP_CONTAINER=1)")
        return
    run("docker", "rm", "-f", NAME, check=False)
    run("docker", "volume", "rm", "-f", VOLUME, check=False)


def main() -> int:
    if os.geteuid() != 0:
        print("container: FAILED: needs root (to install and start Docker)", file=sys.stderr)
        return 1
    started = time.monotonic()
    daemon = None
    try:
        daemon = ensure_tools()
        build()
        try:
            check_container()
        finally:
            cleanup()
        check_compose()
    except (Failed, subprocess.TimeoutExpired) as err:
        print(f"container: FAILED: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        if daemon is not None:
            stop_daemon(daemon)
    step(f"verified in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
