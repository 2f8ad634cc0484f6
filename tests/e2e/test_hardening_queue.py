"""Gradio's queue ran at most 40 events at once over all events: forty generations waiting on the
engine held every slot, and a balance (or any other call) waited for one of them to finish. The
per-event limits decide now (QUEUE_CONCURRENCY for the generations): more generations than 40 reach
the engine at once, and a balance is answered while they are all still in flight."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from tests.e2e.test_hardening_guards import api_user, call

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
