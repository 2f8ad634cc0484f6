"""Two replicas: two `python app.py` processes on one PostgreSQL database and one S3 store (moto's
server), with the engine the fake OpenAI server. What must hold across them: credits and the
per-user limits (counted in the database), images (the shared store), a replica killed in the
middle of a generation (another one's sweep settles it), sessions (a sign-out on one is refused
on the other at once, and so is a member an administrator disabled on one).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
import zipfile
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from bench.served import ServedApp
from models.generation import Generation
from models.ledger import Hold
from tests.conftest import TEST_DATABASE_URL
from tests.databases import postgres_schema
from tests.e2e.conftest import queue_event
from tests.fakes.base import free_port
from tests.fakes.openai_server import FakeOpenAI

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SECRET = "replicas-test-secret"  # every replica shares SECRET_KEY (sign-out proofs, form tokens)
MAX_CONCURRENT = 3
RATE = 12
SWEEP_SECONDS = 1


@pytest.fixture(scope="module")
def shared(moto_s3, tmp_path_factory):
    """The PostgreSQL schema, bucket and fake engine every replica of this module shares, and
    the services in this process (on the same database and store) for set-up and reading."""
    if not TEST_DATABASE_URL:
        pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL cases skipped (SQLite still runs)")
    from app import build_services
    from services.settings import load_settings

    bucket = moto_s3.bucket("replicas")
    with postgres_schema(TEST_DATABASE_URL, "replicas") as url, FakeOpenAI() as fake:
        env = {"DATABASE_URL": url, "SECRET_KEY": SECRET, "STORAGE_URL": f"s3://{bucket}/studio",
               **moto_s3.settings(), "OPENAI_API_KEY": "sk-replicas", "OPENAI_BASE_URL": fake.url,
               "IMAGE_PROVIDER": "openai", "TRIAL_CREDITS": "0", "SWEEP_INTERVAL_SECONDS": str(SWEEP_SECONDS),
               "GENERATION_MAX_CONCURRENT": str(MAX_CONCURRENT), "GENERATION_RATE_PER_MINUTE": str(RATE),
               "STRIPE_SECRET_KEY": "", "SMTP_HOST": "", "PUBLIC_URL": "", "ADMIN_EMAILS": "",
               "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_ANALYTICS_ENABLED": "False"}
        here = tmp_path_factory.mktemp("replicas-here")
        services = build_services(load_settings(env_file=None, DATA_DIR=str(here), **env), migrate=False)
        try:
            yield env, services, fake, tmp_path_factory
        finally:
            services.db.dispose()


def start_replica(shared, name: str) -> ServedApp:
    env, _, _, tmp = shared
    data_dir = tmp.mktemp(name)
    return ServedApp({**env, "DATA_DIR": str(data_dir), "GRADIO_SERVER_PORT": str(free_port())},
                     data_dir=data_dir, timeout=120)


@pytest.fixture(scope="module")
def pair(shared):
    a = start_replica(shared, "replica-a")
    try:
        b = start_replica(shared, "replica-b")
    except Exception:
        a.stop()
        raise
    yield a, b
    b.stop()
    a.stop()


@pytest.fixture
def fake(shared):
    fake = shared[2]
    fake.reset()
    yield fake
    fake.release_all()
    fake.latency = 0.0


def member(shared, credits: int) -> tuple[int, str]:
    """A user with `credits` (granted by an administrator) and an API key."""
    services = shared[1]
    user = services.accounts.create_user(email=f"r-{uuid.uuid4().hex[:10]}@example.com",
                                         password="correct horse battery")
    if credits:
        services.ledger.grant(user_id=user.id, amount=credits, kind="admin", idempotency_key=f"r:{uuid.uuid4().hex}")
    return user.id, services.accounts.create_api_key(user_id=user.id, name="replicas")[1]


async def generate(http: httpx.AsyncClient, key: str, prompt: str = "a lighthouse") -> tuple[str, object]:
    """One /generate through Gradio's REST API: ("complete", data) or ("error", message)."""
    headers = {"Authorization": f"Bearer {key}"}
    r = await http.post("/gradio_api/call/generate", json={"data": [prompt, "none", "1:1", "1K"]}, headers=headers)
    r.raise_for_status()
    event = None
    async with http.stream("GET", f"/gradio_api/call/generate/{r.json()['event_id']}", headers=headers) as s:
        async for line in s.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                return event, json.loads(line[5:])
    raise AssertionError("the event stream ended without a result")


async def burst(urls: list[str], key: str, n: int) -> list[tuple[str, object]]:
    """n generations at once for one key, spread over the replicas in turn."""
    clients = [httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=2 * n))
               for url in urls]
    try:
        return await asyncio.gather(*(generate(clients[i % len(clients)], key, f"job {i}") for i in range(n)))
    finally:
        for client in clients:
            await client.aclose()


def generation_id(data) -> str:
    return data[1].split("/images/", 1)[1].split("/png", 1)[0]


def rows(services, user_id: int) -> list[Generation]:
    with services.db.session() as s:
        return list(s.exec(select(Generation).where(Generation.user_id == user_id)))


def test_thirty_at_once_over_two_replicas_with_credit_for_ten(shared, pair, fake):
    services = shared[1]
    a, b = pair
    uid, key = member(shared, credits=100)  # a 1K image costs 10
    fake.latency = 0.3  # long enough for the slots to fill: the cap must hold across both
    results = asyncio.run(burst([a.url, b.url], key, 30))
    done = [data for event, data in results if event == "complete"]
    refused = [data for event, data in results if event == "error"]
    assert len(done) == 10 and len(refused) == 20, results
    assert all("credits and you have" in json.dumps(r) for r in refused), refused[:3]
    assert services.ledger.balance(uid).total == 0
    made = rows(services, uid)
    assert sorted(g.status for g in made) == ["succeeded"] * 10, "a refused reservation leaves no row"
    assert fake.max_in_flight == MAX_CONCURRENT, "the per-user cap is one count for both replicas"
    assert services.ledger.reconcile() == []


def test_the_rate_limit_is_one_count_for_both_replicas(shared, pair, fake):
    services = shared[1]
    a, b = pair
    uid, key = member(shared, credits=10_000)
    results = asyncio.run(burst([a.url, b.url], key, RATE + 8))
    done = [data for event, data in results if event == "complete"]
    limited = [data for event, data in results if event == "error" and "images a minute" in json.dumps(data)]
    assert (len(done), len(limited)) == (RATE, 8), results
    assert services.ledger.balance(uid).total == 10_000 - 10 * RATE
    assert services.ledger.reconcile() == []


def test_an_image_made_on_one_is_listed_and_downloaded_on_the_other(shared, pair, fake, moto_s3):
    services = shared[1]
    a, b = pair
    uid, key = member(shared, credits=10)
    event, data = asyncio.run(burst([a.url], key, 1))[0]
    assert event == "complete", data
    gen_id = generation_id(data)
    headers = {"Authorization": f"Bearer {key}"}
    bucket = shared[0]["STORAGE_URL"].removeprefix("s3://").split("/")[0]
    stored = moto_s3.client.get_object(Bucket=bucket, Key=f"studio/{gen_id[:2]}/{gen_id}/original.png")["Body"].read()
    with httpx.Client(base_url=b.url, headers=headers, timeout=60) as other:
        png = other.get(f"/images/{gen_id}/png")
        assert png.status_code == 200 and png.content == stored
        listed = other.get("/images/download-all.zip")
        assert listed.status_code == 200
        with zipfile.ZipFile(BytesIO(listed.content)) as archive:
            assert [archive.read(n) for n in archive.namelist()] == [stored]
        assert other.post("/gradio_api/call/balance", json={"data": []}).status_code == 200
    assert [g.id for g in rows(services, uid)] == [gen_id]


def test_a_replica_killed_mid_generation_is_settled_by_the_others_sweep(shared, pair, fake):
    services = shared[1]
    uid, key = member(shared, credits=30)
    doomed = start_replica(shared, "replica-doomed")
    fake.hold()  # the engine has the request and does not answer
    client = httpx.Client(base_url=doomed.url, timeout=60, headers={"Authorization": f"Bearer {key}"})
    try:
        client.post("/gradio_api/call/generate", json={"data": ["killed", "none", "1:1", "1K"]}).raise_for_status()
        fake.wait_until(lambda f: f.in_flight == 1)
        [job] = rows(services, uid)
        assert job.status == "pending" and services.ledger.balance(uid).total == 20, "the hold is placed"
        os.kill(doomed.proc.pid, signal.SIGKILL)
        doomed.proc.wait(timeout=10)
        killed_at = time.monotonic()
        # Same host, so the next sweep of a survivor proves the pid gone (0.9 s measured with a 1 s
        # interval); the slack is for a shared, busy machine, not for missed heartbeats (5 intervals).
        deadline = killed_at + 2 * SWEEP_SECONDS + 2
        while rows(services, uid)[0].status == "pending" and time.monotonic() < deadline:
            time.sleep(0.1)
        settled_after = time.monotonic() - killed_at
    finally:
        client.close()
        doomed.stop()
    [job] = rows(services, uid)
    assert job.status == "failed", f"still {job.status} {settled_after:.1f} s after the kill"
    with services.db.session() as s:
        [hold] = s.exec(select(Hold).where(Hold.job_id == job.id)).all()
    assert hold.status == "expired" and hold.settled_at is not None, "nothing was stored: given back, not charged"
    assert services.ledger.balance(uid).total == 30, "nothing lost"
    assert services.ledger.reconcile() == []


def test_a_sign_out_on_one_replica_is_refused_on_the_other(shared, pair):
    services = shared[1]
    a, b = pair
    email = f"r-{uuid.uuid4().hex[:10]}@example.com"
    services.accounts.create_user(email=email, password="correct horse battery")
    with httpx.Client(base_url=a.url, timeout=60) as on_a:
        page = on_a.get("/login")
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        signed_in = on_a.post("/login", data={"email": email, "password": "correct horse battery", "csrf": csrf})
        assert signed_in.status_code == 303, signed_in.text
        token = on_a.cookies["studio_session"]
    cookie = {"studio_session": token}
    with httpx.Client(base_url=b.url, timeout=60, cookies=cookie) as on_b:
        assert on_b.post("/gradio_api/call/balance", json={"data": []}).status_code == 200, "signed in on both"
        out = httpx.post(f"{a.url}/logout", cookies=cookie, data={"csrf": services.accounts.sign_out_proof(token)})
        assert out.status_code == 303
        assert on_b.post("/gradio_api/call/balance", json={"data": []}).status_code == 401, "refused at once"


def test_a_member_disabled_on_one_replica_is_refused_on_the_other(shared, pair):
    """The admin console's Disable, clicked on A (its Gradio event, with the admin's key): the
    member's open session and API key are refused by B at their next request."""
    services = shared[1]
    a, b = pair
    boss = services.accounts.create_user(email=f"boss-{uuid.uuid4().hex[:8]}@example.com",
                                         password="correct horse battery", admin=True)
    boss_key = services.accounts.create_api_key(user_id=boss.id, name="console")[1]
    user_id, key = member(shared, 0)
    email = services.accounts.get_user(user_id).email
    with httpx.Client(base_url=b.url, timeout=60) as on_b:
        page = on_b.get("/login")
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        assert on_b.post("/login", data={"email": email, "password": "correct horse battery",
                                         "csrf": csrf}).status_code == 303
        assert on_b.post("/gradio_api/call/balance", json={"data": []}).status_code == 200
        assert on_b.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200

        with httpx.Client(base_url=a.url, timeout=60, headers={"Authorization": f"Bearer {boss_key}"}) as on_a:
            done = run_event(on_a, "admin_disable", [email])
        assert done["success"] is True, done

        assert on_b.post("/gradio_api/call/balance", json={"data": []}).status_code == 401, "session refused on B"
        refused = on_b.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert refused.status_code == 401, "API key refused on B"


def test_every_replica_heartbeats_in_the_shared_database(shared, pair):
    from models.generation import Boot

    a, b = pair
    with shared[1].db.session() as s:
        pids = {boot.pid for boot in s.exec(select(Boot).where(Boot.ended_at.is_(None)))}
    assert {a.proc.pid, b.proc.pid} <= pids




# nginx in front of both (docker/nginx.conf, Debian's package) ------------------------------------

NGINX_CONF = Path(__file__).resolve().parents[2] / "docker" / "nginx.conf"


@pytest.fixture(scope="module")
def nginx(pair, tmp_path_factory):
    """Debian's nginx (`apt-get install nginx`; .ci/run installs it) running docker/nginx.conf in the
    foreground, its port and upstream servers templated to this test's replicas."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(binary).exists(), "nginx is not installed: apt-get install -y nginx (as .ci/run does)"
    a, b = pair
    prefix = tmp_path_factory.mktemp("nginx")
    port = free_port()
    site = NGINX_CONF.read_text()
    site = re.sub(r"listen 8080;", f"listen 127.0.0.1:{port};", site)
    upstreams = [line for line in site.splitlines() if line.strip().startswith("server 127.0.0.1:")]
    assert len(upstreams) == 2, "the shipped config names two replicas"
    for line, replica in zip(upstreams, (a, b), strict=True):
        site = site.replace(line, re.sub(r"127\.0\.0\.1:\d+", replica.url.removeprefix("http://"), line))
    (prefix / "studio.conf").write_text(site)
    temp = "".join(f"    {kind}_temp_path {prefix / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                        "scgi"))
    (prefix / "nginx.conf").write_text(
        f"worker_processes 1;\npid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} warn;\n"
        f"events {{ worker_connections 1024; }}\n"
        f"http {{\n    access_log {prefix / 'access.log'};\n{temp}    include {prefix / 'studio.conf'};\n}}\n")
    command = [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(prefix / "nginx.conf"),
               "-g", "daemon off;"]
    checked = subprocess.run([*command[:-2], "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (prefix / "error.log").read_text()
            time.sleep(0.1)
        yield url, prefix
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_gradio_client_generates_through_nginx_with_its_previews(shared, pair, nginx, fake):
    from gradio_client import Client
    from PIL import Image

    services = shared[1]
    url, prefix = nginx
    uid, key = member(shared, credits=20)
    fake.latency = 0.6  # frame, frame, final image
    client = Client(url, headers={"Authorization": f"Bearer {key}"}, verbose=False)
    try:
        job = client.submit("a lighthouse through the proxy", "none", "16:9", "1K", api_name="/generate")
        image, message, balance = job.result(timeout=120)
        outputs = job.outputs()
    finally:
        client.close()
    assert [o[1].split(" · ")[0] for o in outputs[:-1]] == ["Preview 1 of 2", "Preview 2 of 2"], \
        "the preview frames came back through nginx: the same replica served the job and its frames"
    assert Image.open(outputs[0][0]).format == "WEBP"
    assert Image.open(image).size == (1024, 576)
    assert "10 credits charged" in message and balance == 10 == services.ledger.balance(uid).total
    gen_id = message.split("/images/", 1)[1].split("/png", 1)[0]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        png = http.get(f"/images/{gen_id}/png")
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    # Preview frames live in the memory of the replica that made them: the one nginx chose.
    frame = f"/previews/{gen_id}/0/preview-{gen_id[:12]}-1.webp"
    answers = [httpx.get(f"{replica.url}{frame}", headers={"Authorization": f"Bearer {key}"}) for replica in pair]
    assert sorted(r.status_code for r in answers) == [200, 404]
    assert next(r for r in answers if r.status_code == 200).content == Path(outputs[0][0]).read_bytes()
    assert "/gradio_api/queue/join" in (prefix / "access.log").read_text()


def test_a_browser_session_signs_in_and_generates_through_nginx(shared, pair, nginx, fake):
    services = shared[1]
    url, _ = nginx
    email = f"r-{uuid.uuid4().hex[:10]}@example.com"
    user = services.accounts.create_user(email=email, password="correct horse battery")
    services.ledger.grant(user_id=user.id, amount=50, kind="admin", idempotency_key=f"r:{uuid.uuid4().hex}")
    fake.latency = 0.3
    with httpx.Client(base_url=url, timeout=120) as browser:
        page = browser.get("/login")
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        signed_in = browser.post("/login", data={"email": email, "password": "correct horse battery", "csrf": csrf})
        assert signed_in.status_code == 303, signed_in.text
        app_page = browser.get("/")
        assert app_page.status_code == 200 and "gradio" in app_page.text.lower(), "the studio, not the landing page"
        # The page's own way: join the queue, then read this session's event stream. Five sessions in
        # a row: each join and its stream must reach the same replica, or the stream answers 404.
        for n in range(5):
            done = run_event(browser, "/generate", [f"through nginx {n}", "none", "1:1", "1K"])
            assert done["success"], done
            image_url = done["output"]["data"][0]["url"]
            assert image_url.startswith(url), "Gradio builds its URLs for the proxy's address"
            shown = browser.get(image_url)
            assert shown.status_code == 200 and shown.headers["content-type"] == "image/webp"
    assert services.ledger.balance(user.id).total == 0
    assert services.ledger.reconcile() == []


def run_event(http: httpx.Client, api_name: str, data: list) -> dict:
    """One named event through Gradio's queue as the page does it (conftest's queue_event)."""
    config = http.get("/config").json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name.strip("/"))
    return queue_event(http, fn_index, data, session_hash=uuid.uuid4().hex[:11])
