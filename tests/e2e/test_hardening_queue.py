"""Gradio's queue ran at most 40 events at once over all events: forty generations waiting on the
engine held every slot, and a balance (or any other call) waited for one of them to finish. The
per-event limits decide now (QUEUE_CONCURRENCY for the generations): more generations than 40 reach
the engine at once, and a balance is answered while they are all still in flight. And the queue
has a ceiling (QUEUE_MAX_SIZE) past which a call is told at once that the studio is busy."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from tests.e2e.test_hardening_guards import api_user, call
from ui.guards import BUSY

IN_FLIGHT = 45  # more than Gradio's default of 40 slots


@pytest.mark.slow
def test_a_balance_is_not_queued_behind_running_generations(serve_app, fake_openai):
    app = serve_app(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.url, IMAGE_PROVIDER="openai",
                    TRIAL_CREDITS=1000, GENERATION_MAX_CONCURRENT=IN_FLIGHT + 5,
                    GENERATION_RATE_PER_MINUTE=1000, QUEUE_CONCURRENCY=64)
    user, headers = api_user(app)
    fake_openai.hold()
    outcomes: list = []

    def generate(n: int) -> None:
        with httpx.Client(base_url=app.url, headers=headers, timeout=300) as http:
            try:
                outcomes.append(call(http, "generate", [f"a lighthouse {n}", "none", "1:1", "1K"]))
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                outcomes.append(exc)

    threads = [threading.Thread(target=generate, args=(n,)) for n in range(IN_FLIGHT)]
    for t in threads:
        t.start()
    try:
        # The timeout only keeps a broken run from hanging: with 40 slots the count stops at 40.
        fake_openai.wait_until(lambda f: f.in_flight == IN_FLIGHT, timeout=120)
        with app.client(headers=headers) as http:
            assert call(http, "balance", []) == [1000 - 10 * IN_FLIGHT], \
                "answered while every generation is still held at the engine, their credits held"
        assert fake_openai.in_flight == IN_FLIGHT and fake_openai.ended == 0
    finally:
        fake_openai.release_all()
    for t in threads:
        t.join(timeout=300)
    assert len(outcomes) == IN_FLIGHT and not [o for o in outcomes if isinstance(o, Exception)]
    assert all("10 credits charged" in json.dumps(o) for o in outcomes)
    with app.client(headers=headers) as http:
        assert call(http, "balance", []) == [1000 - 10 * IN_FLIGHT]


@pytest.mark.slow
def test_a_full_queue_answers_busy_at_once(serve_app, fake_openai):
    """QUEUE_MAX_SIZE events waiting: the next call is refused at once with 503, the studio's words
    and Retry-After (Gradio's own answer named its queue sizes), and nothing is charged for it."""
    app = serve_app(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.url, IMAGE_PROVIDER="openai",
                    QUEUE_CONCURRENCY=1, QUEUE_MAX_SIZE=1)
    queue = app.server.config.app.state.blocks._queue
    user, headers = api_user(app)
    fake_openai.hold()
    outcomes: list = []

    def generate(n: int) -> None:
        with httpx.Client(base_url=app.url, headers=headers, timeout=300) as http:
            outcomes.append(call(http, "generate", [f"a lighthouse {n}", "none", "1:1", "1K"]))

    running = threading.Thread(target=generate, args=(1,))
    running.start()
    waiting = None
    try:
        fake_openai.wait_until(lambda f: f.in_flight == 1, timeout=120)
        waiting = threading.Thread(target=generate, args=(2,))
        waiting.start()
        deadline = time.monotonic() + 60
        while len(queue) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(queue) == 1, "the second generation waits for the first"
        with app.client(headers=headers) as http:
            r = http.post("/gradio_api/call/generate", json={"data": ["a third", "none", "1:1", "1K"]})
        assert r.status_code == 503 and r.json() == {"detail": BUSY}
        assert r.headers["retry-after"] == "5"
    finally:
        fake_openai.release_all()
    running.join(timeout=300)
    if waiting:
        waiting.join(timeout=300)
    assert len(outcomes) == 2 and all("10 credits charged" in json.dumps(o) for o in outcomes)
    with app.client(headers=headers) as http:
        assert call(http, "balance", []) == [20], "two images charged, the refused one not"
