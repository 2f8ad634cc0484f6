"""Hardening of sign-in, sign-up, reset and sign-out, through the served app (issue 17).

Limits are checked and attempts recorded before any password hash, so concurrent attempts are
held at the limits exactly; hashing is bounded per process; reset mail leaves the request path;
sign-out needs the token its page carries; authentication under a burst answers no 500.
"""

from __future__ import annotations

import queue
import re
import threading
import uuid
from collections import Counter

import httpx
from gradio_client import Client
from sqlalchemy import func
from sqlmodel import select

from models.user import PasswordReset, User
from tests.conftest import free_port
from tests.e2e.conftest import csrf_of, queue_event, sign_up
from tests.factories import make_user
from tests.fakes.smtp_server import FakeSMTP, _Handler

PASSWORD = "correct horse battery"
HANG_GUARD = 120  # seconds; only so that a broken build fails instead of hanging


def new_email() -> str:
    return f"h-{uuid.uuid4().hex[:10]}@example.com"


def form_client(app, page: str) -> tuple[httpx.Client, str]:
    """A browser-like client that has opened `page` (so it holds that form's CSRF pair)."""
    client = app.client(follow_redirects=False)
    return client, csrf_of(client.get(page))


def burst(app, page: str, forms: list[dict]) -> queue.Queue:
    """POST each form to `page` from its own client, all released at once by a barrier.
    Returns a queue that receives (index, status) in the order the answers arrive."""
    prepared = [form_client(app, page) for _ in forms]
    barrier = threading.Barrier(len(forms))
    answers: queue.Queue = queue.Queue()

    def post(i: int) -> None:
        client, csrf = prepared[i]
        barrier.wait()
        try:
            answers.put((i, client.post(page, data={**forms[i], "csrf": csrf}).status_code))
        except Exception as exc:  # the test sees it as an answer that is not a status
            answers.put((i, repr(exc)))

    for i in range(len(forms)):
        threading.Thread(target=post, args=(i,), daemon=True).start()
    return answers


def take(answers: queue.Queue, n: int) -> list[tuple[int, object]]:
    return [answers.get(timeout=HANG_GUARD) for _ in range(n)]


def hold_all_hash_slots(app) -> None:
    hasher = app.services.accounts.hasher
    for _ in range(hasher.size):
        hasher.slots.acquire()


def release_all_hash_slots(app) -> None:
    hasher = app.services.accounts.hasher
    for _ in range(hasher.size):
        hasher.slots.release()


# Sign-in and sign-up limits under concurrency ----------------------------------------------


def test_concurrent_guesses_against_one_account_are_held_at_the_lockout(serve_app, database_url):
    app = serve_app(database_url=database_url)
    email = new_email()
    sign_up(app, email, PASSWORD)
    forms = [{"email": email, "password": f"wrong guess {i}"} for i in range(39)] + [
        {"email": email, "password": PASSWORD}]
    runs = app.services.accounts.hasher.runs
    # With every hash slot taken, admitted attempts wait at the hash; refusals answer at once.
    hold_all_hash_slots(app)
    try:
        answers = burst(app, "/login", forms)
        refused = take(answers, 30)
        assert app.services.accounts.hasher.runs == runs, "nothing was hashed while the slots were held"
    finally:
        release_all_hash_slots(app)
    checked = take(answers, 10)
    assert [status for _, status in refused] == [429] * 30, "the first 30 answers are refusals, before any hash"
    statuses = Counter(status for _, status in checked)
    assert set(statuses) <= {401, 303} and statuses[401] >= 9, statuses
    right_password_checked = any(i == 39 for i, _ in checked)
    assert statuses[303] == (1 if right_password_checked else 0)
    assert app.services.accounts.hasher.runs == runs + 10, "exactly 10 passwords were checked"


def test_concurrent_sign_ins_from_one_ip_are_held_at_the_ip_limit(serve_app, database_url):
    app = serve_app(database_url=database_url)
    answers = burst(app, "/login", [{"email": new_email(), "password": "some password"} for _ in range(80)])
    statuses = Counter(status for _, status in take(answers, 80))
    assert statuses == {401: 30, 429: 50}, statuses


def test_concurrent_sign_ups_from_one_ip_are_held_at_the_limit(serve_app, database_url):
    app = serve_app(database_url=database_url)
    emails = [new_email() for _ in range(30)]
    answers = burst(app, "/signup", [{"email": e, "password": PASSWORD} for e in emails])
    statuses = Counter(status for _, status in take(answers, 30))
    assert statuses == {303: 20, 429: 10}, statuses
    services = app.services
    with services.db.session() as s:
        users = s.exec(select(User).where(User.email.in_(emails))).all()
    assert len(users) == 20
    assert sum(services.ledger.balance(u.id).total for u in users) == 20 * app.settings.trial_credits
    assert services.ledger.reconcile() == []


def test_malformed_email_sign_ins_count_against_the_ip_limit_and_hash_nothing(serve_app):
    app = serve_app(SIGNIN_RATE_PER_IP_PER_MINUTE=3)
    runs = app.services.accounts.hasher.runs
    for email in ("not-an-email", "x" * 400, "@@"):
        client, csrf = form_client(app, "/login")
        r = client.post("/login", data={"email": email, "password": "whatever password", "csrf": csrf})
        assert r.status_code == 401 and "Incorrect email or password." in r.text
    assert app.services.accounts.hasher.runs == runs
    client, csrf = form_client(app, "/login")
    r = client.post("/login", data={"email": new_email(), "password": "whatever password", "csrf": csrf})
    assert r.status_code == 429 and "Too many sign-in attempts" in r.text
    assert app.services.accounts.hasher.runs == runs


# Password reset ------------------------------------------------------------------------------


def test_reset_with_a_bogus_token_hashes_nothing(served_app, caplog):
    hasher = served_app.services.accounts.hasher
    runs = hasher.runs
    client, csrf = form_client(served_app, "/reset?token=bogus")
    r = client.post("/reset", data={"token": "bogus", "password": "a brand new password", "csrf": csrf})
    assert r.status_code == 400 and "invalid or has expired" in r.text
    assert hasher.runs == runs

    # The counter does see the hash of a real reset.
    email = new_email()
    sign_up(served_app, email, PASSWORD)
    client, csrf = form_client(served_app, "/forgot")
    assert client.post("/forgot", data={"email": email, "csrf": csrf}).status_code == 200
    served_app.services.accounts.outbox.join()
    [body] = [r.getMessage() for r in caplog.records if r.name == "studio.mail" and email in r.getMessage()]
    token = re.search(r"/reset\?token=([\w-]+)", body).group(1)
    runs = hasher.runs
    client, csrf = form_client(served_app, f"/reset?token={token}")
    r = client.post("/reset", data={"token": token, "password": "a brand new password", "csrf": csrf})
    assert r.status_code == 303 and hasher.runs == runs + 1


def forgot(app, email: str) -> httpx.Response:
    client, csrf = form_client(app, "/forgot")
    return client.post("/forgot", data={"email": email, "csrf": csrf})


def without_csrf(page: str) -> str:
    return re.sub(r'name="csrf" value="[^"]+"', 'name="csrf" value=""', page)


def test_password_reset_with_smtp_down_answers_the_same_for_known_and_unknown(serve_app, caplog):
    app = serve_app(SMTP_HOST="127.0.0.1", SMTP_PORT=free_port(), SMTP_STARTTLS="false")  # nobody listens
    known = new_email()
    sign_up(app, known, PASSWORD)
    app.services.accounts.outbox.join()  # the sign-up's verification mail fails first (SMTP is down)
    caplog.clear()
    for_known, for_unknown = forgot(app, known), forgot(app, new_email())
    assert for_known.status_code == for_unknown.status_code == 200
    assert without_csrf(for_known.text) == without_csrf(for_unknown.text)
    assert "reset link is on its way" in for_known.text
    app.services.accounts.outbox.join()
    failures = [r for r in caplog.records if r.name == "studio.mail" and r.levelname == "ERROR"]
    assert len(failures) == 1 and failures[0].exc_info, "the mail error is logged, once, for the known email"
    with app.services.db.session() as s:
        assert s.exec(select(func.count()).select_from(PasswordReset)).one() == 1


class _HeldHandler(_Handler):
    def handle(self) -> None:
        owner = self.server.fake
        owner.connected.set()
        if owner.release.wait(HANG_GUARD):
            super().handle()


class HeldSMTP(FakeSMTP):
    """The SMTP sink, which accepts a connection and then says nothing until `release` is set."""

    handler = _HeldHandler

    def __init__(self):
        super().__init__()
        self.connected, self.release = threading.Event(), threading.Event()


def test_password_reset_answers_while_the_mail_server_is_stuck(serve_app):
    with HeldSMTP() as smtp:
        app = serve_app(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port, SMTP_STARTTLS="false")
        email = new_email()
        sign_up(app, email, PASSWORD)
        try:
            r = forgot(app, email)
            assert r.status_code == 200 and "reset link is on its way" in r.text
            assert smtp.connected.wait(HANG_GUARD), "the mail is being sent"
            assert smtp.messages == [], "the answer came while the mail server still held the message"
        finally:
            smtp.release.set()
        app.services.accounts.outbox.join()
    [msg] = [m for m in smtp.messages if m["Subject"] == "Reset your password"]  # after the verification mail
    assert msg["To"] == email
    token = re.search(r"/reset\?token=([\w-]+)", msg.get_content()).group(1)
    client, csrf = form_client(app, f"/reset?token={token}")
    r = client.post("/reset", data={"token": token, "password": "a brand new password", "csrf": csrf})
    assert r.status_code == 303


# Sign-out ------------------------------------------------------------------------------------


def header_html(app, client: httpx.Client) -> str:
    """The header the signed-in page shows, fetched the way the browser does (the page-load
    event through Gradio's queue)."""
    config = client.get("/config").json()
    components = {c["id"]: c for c in config["components"]}
    [dep] = [d for d in config["dependencies"]
             if any("studio-user" in (components[o].get("props", {}).get("elem_classes") or []) for o in d["outputs"])]
    msg = queue_event(client, dep["id"], [], session_hash=uuid.uuid4().hex[:11])
    assert msg["success"], msg
    return msg["output"]["data"][0]


def test_cross_origin_sign_out_is_refused_and_the_page_button_works(served_app):
    client = sign_up(served_app, new_email(), PASSWORD)
    session = client.cookies["studio_session"]
    evil = {"origin": "https://evil.example", "referer": "https://evil.example/page"}
    for data in ({}, {"csrf": "0" * 64}):
        r = httpx.post(f"{served_app.url}/logout", data=data, headers=evil, cookies={"studio_session": session},
                       follow_redirects=False)
        assert r.status_code == 403
        assert client.get("/config").status_code == 200, "the session still works"

    header = header_html(served_app, client)
    form = re.search(r'<form method="post" action="/logout"><input type="hidden" name="csrf" value="(\w+)">', header)
    assert form, header
    out = client.post("/logout", data={"csrf": form.group(1)})
    assert out.status_code == 303 and out.headers["location"] == "/login?msg=signed_out"
    assert httpx.get(f"{served_app.url}/config", cookies={"studio_session": session}).status_code == 401

    other = sign_up(served_app, new_email(), PASSWORD)
    r = other.post("/logout", data={"csrf": form.group(1)})
    assert r.status_code == 403, "one session's token does not sign out another"
    assert other.get("/config").status_code == 200


# Authentication under load -------------------------------------------------------------------


def test_api_key_burst_on_sqlite_beside_writers_answers_no_500(serve_app):
    """50 clients × 20 API calls, each with its own key, started together with writers on the
    same SQLite file: authentication only reads, and its bookkeeping takes the one write path
    (before, a key's first use wrote from a read session and failed with "database is locked")."""
    app = serve_app()
    accounts, ledger = app.services.accounts, app.services.ledger
    keys = []
    for _ in range(50):
        user = make_user(app.services.db)
        ledger.grant(user_id=user.id, amount=7, kind="admin", idempotency_key=uuid.uuid4().hex)
        keys.append(accounts.create_api_key(user_id=user.id, name="burst")[1])
    bystander = make_user(app.services.db).id
    barrier = threading.Barrier(len(keys) + 2)
    results: list[object] = []

    def write() -> None:
        barrier.wait()
        for _ in range(150):
            ledger.grant(user_id=bystander, amount=1, kind="admin", idempotency_key=uuid.uuid4().hex)

    def call(key: str) -> None:
        barrier.wait()
        try:
            client = Client(app.url, headers={"Authorization": f"Bearer {key}"}, verbose=False,
                            httpx_kwargs={"timeout": HANG_GUARD})
        except Exception as exc:
            results.append(repr(exc))
            return
        for _ in range(20):
            try:
                results.append(client.predict(api_name="/balance") == 7 or "wrong balance")
            except Exception as exc:
                results.append(repr(exc))

    threads = [threading.Thread(target=write, daemon=True) for _ in range(2)]
    threads += [threading.Thread(target=call, args=(key,), daemon=True) for key in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    failures = [r for r in results if r is not True]
    assert failures == [] and len(results) == 1000, failures[:5]
