"""Hardening of the web layer (issue 17: 3, 8, 10 queue half, 11) through the served app.

Request bodies are capped before they are read, uploads need a signed-in user, a Gradio session_hash
answers only its owner, and API calls leave no Gradio session state behind while a browser tab's
state survives.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from starlette.routing import Mount

from tests.conftest import sqlite_url
from tests.e2e.conftest import sign_up, start_app

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def app(tmp_path_factory, _sqlite_template):
    data_dir = tmp_path_factory.mktemp("guards")
    served = start_app(data_dir, sqlite_url(_sqlite_template, data_dir))
    yield served
    served.stop()


def gradio_app(app):
    """The mounted Gradio App of the served FastAPI app (its state holder and queue)."""
    return next(r.app for r in app.server.config.app.routes if isinstance(r, Mount))


def live_sessions(app) -> set[str]:
    return set(gradio_app(app).state_holder.session_data)


def rss_bytes() -> int:
    """This process's resident set: the served app runs in it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def raw_request(app, head: bytes, body_chunks=()) -> bytes:
    """Send a request head, then body chunks until the server answers; return what it answered.

    A reader thread collects the answer while we send, so an early 413 is seen even though the
    server closes the connection without reading the rest."""
    port = int(app.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    answer = bytearray()
    done = threading.Event()

    def read():
        try:
            while chunk := sock.recv(65536):
                answer.extend(chunk)
        except OSError:
            pass
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        sock.sendall(head)
        for chunk in body_chunks:
            if done.is_set():
                break
            sock.sendall(chunk)
    except OSError:
        pass  # the server stopped reading and closed: its answer is what matters
    reader.join(60)
    sock.close()
    return bytes(answer)


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def chunked(total: int, size: int = 64 * 1024):
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield f"{n:x}\r\n".encode() + b"a" * n + b"\r\n"
        sent += n
    yield b"0\r\n\r\n"


def api_user(app, *, email: str | None = None):
    services = app.services
    email = email or f"guards-{uuid.uuid4().hex[:10]}@example.com"
    try:
        user = services.accounts.get_user_by_email(email)
    except Exception:
        user = services.accounts.create_user(email=email, password="correct horse battery")
    _, key = services.accounts.create_api_key(user_id=user.id, name="guards")
    return user, {"Authorization": f"Bearer {key}"}


def sse_events(response: httpx.Response):
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line[len("data: "):])


def call(http: httpx.Client, api_name: str, data: list) -> list:
    """POST /gradio_api/call/<api>, then read its result stream: the call's output data."""
    r = http.post(f"/gradio_api/call/{api_name}", json={"data": data})
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]
    with http.stream("GET", f"/gradio_api/call/{api_name}/{event_id}") as stream:
        assert stream.status_code == 200
        lines = list(stream.iter_lines())
    assert "event: complete" in lines, lines
    return json.loads(lines[lines.index("event: complete") + 1][len("data: "):])


def dependencies(http: httpx.Client) -> tuple[list, list]:
    config = http.get("/config").json()
    return config["components"], config["dependencies"]


def fn_index(deps: list, *, api_name: str) -> int:
    return next(d["id"] for d in deps if d.get("api_name") == api_name)


def join(http: httpx.Client, session_hash: str, fn: int, data: list, **extra) -> httpx.Response:
    return http.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn, "session_hash": session_hash,
                                                     "event_data": None, **extra})


def completed(http: httpx.Client, session_hash: str) -> list[dict]:
    """Read a session's queue stream to its end: the process_completed messages."""
    with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session_hash}) as stream:
        assert stream.status_code == 200, stream.read()
        return [m for m in sse_events(stream) if m.get("msg") == "process_completed"]


# 8: bodies capped before they are read -------------------------------------------------------


def test_a_20_mb_webhook_body_is_refused_with_413_and_never_held(app):
    head = b"POST /webhooks/stripe HTTP/1.1\r\nHost: t\r\nConnection: close\r\nStripe-Signature: t=1,v1=bogus\r\n"
    warm = raw_request(app, head + b"Content-Length: 2\r\n\r\n{}")
    assert status_of(warm) == 503, "a small body still reaches the route (webhooks are off in this app)"

    before = rss_bytes()
    # Declared too large: answered from the head alone, with no body sent at all.
    declared = raw_request(app, head + f"Content-Length: {20 * MiB}\r\n\r\n".encode())
    assert status_of(declared) == 413 and b"limit" in declared
    # Chunked, no Content-Length: counted while it streams, cut past the limit.
    streamed = raw_request(app, head + b"Transfer-Encoding: chunked\r\n\r\n", chunked(20 * MiB))
    assert status_of(streamed) == 413
    grown = rss_bytes() - before
    assert grown < 6 * MiB, f"RSS grew by {grown / MiB:.1f} MiB for two refused 20 MiB bodies"


def test_form_and_gradio_bodies_over_their_limits_are_refused(app):
    _, auth = api_user(app)
    with app.client(headers=auth) as http:
        big_form = http.post("/login", data={"email": "a@example.com", "password": "x" * (100 * 1024),
                                             "csrf": "t"})
        assert big_form.status_code == 413
        small_form = http.post("/login", data={"email": "a@example.com", "password": "x" * 100, "csrf": "t"})
        assert small_form.status_code == 400 and "form expired" in small_form.text, "a normal form still arrives"

        _, deps = dependencies(http)
        fn = fn_index(deps, api_name="generate")
        huge_prompt = ["p" * (300 * 1024), "none", "1:1", "1K"]
        assert join(http, uuid.uuid4().hex, fn, huge_prompt).status_code == 413
        assert http.post("/gradio_api/call/generate", json={"data": huge_prompt}).status_code == 413
        assert http.post("/gradio_api/run/generate", json={"data": huge_prompt}).status_code == 413
        streamed = http.post("/gradio_api/queue/join", content=(b"x" * 65536 for _ in range(8)),
                             headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413, "a chunked body past the limit is cut too"

        # The longest prompt the product accepts, escaped to its worst JSON size, is let through.
        session = uuid.uuid4().hex
        body = json.dumps({"data": ["😀" * 4000, "none", "1:1", "1K"], "fn_index": fn, "session_hash": session},
                          ensure_ascii=True)  # 12 bytes a character: the worst case
        assert len(body) > 48_000
        longest = http.post("/gradio_api/queue/join", content=body, headers={"Content-Type": "application/json"})
        assert longest.status_code == 200, longest.text
        assert len(completed(http, session)) == 1


# 11: uploads only for signed-in users, other upload routes off (issue #11 opened /upload) ---------


def test_uploads_need_a_signed_in_user_and_other_upload_routes_stay_off(app):
    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder())
    before = sorted(folder.rglob("*")) if folder.exists() else []
    _, auth = api_user(app)
    files = [("files", (f"f{i}.png", os.urandom(200 * 1024), "image/png")) for i in range(20)]
    with app.client() as anonymous:
        r = anonymous.post("/gradio_api/upload", files=files)
        assert r.status_code == 401 and "sign in" in r.text.lower()
        assert anonymous.post("/gradio_api/upload/", files=files[:1]).status_code == 401
    with app.client(headers=auth) as http:
        r = http.post("/gradio_api/process_recording", files=files[:1])
        assert r.status_code == 403 and "turned off" in r.text.lower()
    after = sorted(folder.rglob("*")) if folder.exists() else []
    assert after == before


# 10: a session answers only its owner --------------------------------------------------------


def test_another_user_presenting_a_session_hash_gets_nothing(app):
    alice, alice_auth = api_user(app)
    _, bob_auth = api_user(app)
    secret_balance = app.services.ledger.balance(alice.id).total
    with app.client(headers=alice_auth) as a, app.client(headers=bob_auth) as b:
        _, deps = dependencies(a)
        fn = fn_index(deps, api_name="balance")
        session = uuid.uuid4().hex
        event_id = join(a, session, fn, []).json()["event_id"]

        # Bob, knowing Alice's hash and event id, reads first: nothing.
        stolen = b.get("/gradio_api/queue/data", params={"session_hash": session})
        assert stolen.status_code == 404 and str(secret_balance) not in stolen.text
        assert b.get(f"/gradio_api/call/balance/{event_id}").status_code == 404
        assert b.get(f"/gradio_api/heartbeat/{session}").status_code == 404
        assert b.post("/gradio_api/cancel", json={"session_hash": session, "fn_index": fn,
                                                  "event_id": event_id}).status_code == 404
        assert join(b, session, fn, []).status_code == 404, "nor can he join Alice's session"
        bob_session = uuid.uuid4().hex
        assert join(b, bob_session, fn, []).status_code == 200
        assert b.post("/gradio_api/cancel", json={"session_hash": bob_session, "fn_index": fn,
                                                  "event_id": event_id}).status_code == 404, \
            "his own session with her event id"
        assert len(completed(b, bob_session)) == 1
        assert a.get("/gradio_api/queue/data").status_code in (404, 422)
        assert httpx.get(f"{app.url}/gradio_api/queue/data", params={"session_hash": session}).status_code \
            in (401, 404)

        # Alice still gets her own result, untouched.
        results = completed(a, session)
        assert [m["output"]["data"] for m in results] == [[secret_balance]]

        # A /call event id is its hash: bound to the caller before they learn it.
        r = a.post("/gradio_api/call/balance", json={"data": []})
        call_id = r.json()["event_id"]
        assert b.get(f"/gradio_api/call/balance/{call_id}").status_code == 404
        with a.stream("GET", f"/gradio_api/call/balance/{call_id}") as stream:
            assert f"data: [{secret_balance}]" in list(stream.iter_lines())


# 3: API calls leave no session behind; a browser tab keeps its state --------------------------


def test_api_calls_leave_no_sessions_behind_while_a_browser_tab_keeps_its_state(app, monkeypatch):
    monkeypatch.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.2")  # closed gradio_clients are noticed quickly
    email = f"tab-{uuid.uuid4().hex[:8]}@example.com"
    browser = sign_up(app, email)
    _, auth = api_user(app, email=email)
    with app.client(headers=auth) as api:
        image, message, _ = call(api, "generate", ["a lighthouse at dusk", "none", "1:1", "1K"])
        assert "credits charged" in message

    # A browser tab: a heartbeat held open, then the gallery's load and a search, which leave the
    # tab's view (the search, the page) in its gr.State.
    components, deps = dependencies(browser)
    tab = uuid.uuid4().hex
    stop = threading.Event()

    def heartbeat():
        try:
            with browser.stream("GET", f"/gradio_api/heartbeat/{tab}") as beats:
                for _ in beats.iter_lines():
                    if stop.is_set():
                        return
        except httpx.HTTPError:
            return  # the tab closed

    beating = threading.Thread(target=heartbeat, daemon=True)
    beating.start()
    try:
        browser_tab_survives_api_calls(app, browser, auth, tab, components, deps)
    finally:
        stop.set()
        browser.close()
        beating.join(10)


def browser_tab_survives_api_calls(app, browser, auth, tab, components, deps):
    grid = next(c["id"] for c in components if c["props"].get("elem_id") == "studio-gallery")
    load = next(d for d in deps if grid in d["outputs"] and any(t[1] == "load" for t in d["targets"]))
    search = next(d for d in deps if d.get("api_name") == "gallery_search")
    newer = next(d for d in deps if d.get("api_name") == "gallery_newer")
    for dep, data in ((load, [None] * len(load["inputs"])), (search, ["lighthouse", "", "", "Gallery"])):
        r = join(browser, tab, dep["id"], data)
        assert r.status_code == 200, r.text
        assert [m["success"] for m in completed(browser, tab)] == [True]
    assert tab in live_sessions(app)

    # 500 API calls through /gradio_api/call, and gradio_client clients opened and closed.
    baseline = live_sessions(app)
    balances, most = [], 0
    with app.client(headers=auth) as api:
        for _ in range(500):
            balances.append(call(api, "balance", [])[0])
            most = max(most, len(live_sessions(app) - baseline))
    assert len(set(balances)) == 1
    # The session of the call just answered may still be winding down on the server; no other.
    assert most <= 1, f"{most} /call sessions alive at once: each goes when its result is delivered"

    clients = [Client(app.url, headers=auth, verbose=False) for _ in range(10)]
    hashes = {c.session_hash for c in clients}
    assert [c.predict(api_name="/balance") for c in clients] == balances[:10]
    assert hashes <= live_sessions(app), "an open gradio_client keeps its session"
    for c in clients:
        c.close()
    released = threading.Event()
    for _ in range(600):  # each closed heartbeat is noticed at the server's next beat
        if not hashes & live_sessions(app):
            released.set()
            break
        released.wait(0.1)
    assert not hashes & live_sessions(app), "a closed gradio_client's session is released"
    assert tab in live_sessions(app)

    # The tab still has its view: "Newer" redraws the search kept in the tab's gr.State.
    r = join(browser, tab, newer["id"], [None])
    assert r.status_code == 200
    [done] = completed(browser, tab)
    summary = done["output"]["data"][0]
    summary = summary.get("value") if isinstance(summary, dict) else summary
    assert done["success"] and "1 image matching “lighthouse”" in summary


# The session cap and the sweep, on a small Gradio app behind the same guard ---------------------


@pytest.fixture
def small_app():
    """A two-event Gradio app (a gr.State counter and a plain API) mounted like ours, behind
    GradioSessions with a cap of 3 sessions per user; the user is the X-User header."""
    import time

    import gradio as gr
    import uvicorn
    from fastapi import FastAPI

    from tests.conftest import free_port
    from ui.guards import GradioSessions

    with gr.Blocks() as blocks:
        count = gr.State(0)
        shown = gr.Number()
        button = gr.Button()
        button.click(lambda n: (n + 1, n + 1), [count], [count, shown], api_name="inc")

        def ping() -> str:
            return "pong"

        gr.api(ping, api_name="ping")
    blocks.queue()

    def user_of(request) -> str | None:
        return request.headers.get("x-user")

    async def identify(scope) -> str | None:
        return dict(scope["headers"]).get(b"x-user", b"").decode() or None

    app = gr.mount_gradio_app(FastAPI(), blocks, path="/", auth_dependency=user_of, ssr_mode=False)
    guard = GradioSessions(app, blocks=blocks, identify=identify, max_per_user=3, reconnect_seconds=0)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(guard, host="127.0.0.1", port=port, log_level="warning",
                                           ws="none", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", guard, blocks
    server.should_exit = True
    thread.join(15)


def test_each_user_holds_a_few_sessions_and_abandoned_results_are_swept(small_app):
    import time

    url, guard, blocks = small_app
    holder = blocks.state_holder
    with httpx.Client(base_url=url, headers={"X-User": "u1"}, timeout=30) as u1:
        inc = fn_index(dependencies(u1)[1], api_name="inc")

        # A session without heartbeat (a raw queue/join) keeps its state between events.
        first = uuid.uuid4().hex
        for expected in (1, 2):
            join(u1, first, inc, [None])
            assert [m["output"]["data"][1] for m in completed(u1, first)] == [expected]

        # Ten more sessions: the user's least recently used idle ones make room, three stay.
        sessions = [first] + [uuid.uuid4().hex for _ in range(10)]
        for session in sessions[1:]:
            assert join(u1, session, inc, [None]).status_code == 200
            assert len(completed(u1, session)) == 1
        assert set(holder.session_data) == set(sessions[-3:])

        # Three held by open heartbeats: a fourth is refused, none of the held ones is touched.
        held = [uuid.uuid4().hex for _ in range(3)]
        with u1.stream("GET", f"/gradio_api/heartbeat/{held[0]}"), \
                u1.stream("GET", f"/gradio_api/heartbeat/{held[1]}"), \
                u1.stream("GET", f"/gradio_api/heartbeat/{held[2]}"):
            refused = join(u1, uuid.uuid4().hex, inc, [None])
            assert refused.status_code == 429 and "Too many open sessions" in refused.text
            with httpx.Client(base_url=url, headers={"X-User": "u2"}, timeout=30) as u2:
                other = uuid.uuid4().hex
                assert join(u2, other, inc, [None]).status_code == 200, "another user is not affected"
                assert len(completed(u2, other)) == 1

    # A /call whose result is never fetched is kept for a while, then swept with its messages.
    with httpx.Client(base_url=url, headers={"X-User": "u3"}, timeout=30) as u3:
        event_id = u3.post("/gradio_api/call/ping", json={"data": []}).json()["event_id"]
        queue = blocks._queue
        for _ in range(300):
            if event_id in holder.session_data and event_id not in queue.event_ids_to_events:
                break
            time.sleep(0.05)
        assert event_id in holder.session_data and queue.pending_messages_per_session[event_id].qsize() > 0
        guard.sweep()
        assert event_id in holder.session_data, "not yet: its caller may still come for it"
        guard.sweep(now=time.monotonic() + guard.idle_seconds + 1)
        assert event_id not in holder.session_data and event_id not in queue.pending_messages_per_session
        assert u3.get(f"/gradio_api/call/ping/{event_id}").status_code == 404
