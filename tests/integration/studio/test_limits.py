"""Per-user limits: a rate per minute (refused, not charged) and a concurrency cap (they wait).

The rate window runs on the rig's clock, which moves only when a test moves it; the concurrency
tests hold the fake engine's answers, so what they see is counts and order, not a latency."""

import asyncio

import pytest

from services.errors import ContentRejected, RateLimited


def test_rate_limit_refuses_without_charging_and_admins_are_exempt(make_rig):
    rig = make_rig(GENERATION_RATE_PER_MINUTE=3)
    uid = rig.user(credits=100)
    for _ in range(3):
        rig.generate(uid)
    with pytest.raises(RateLimited, match="3 images a minute") as caught:
        rig.generate(uid)
    assert "nothing was charged" in str(caught.value)
    assert rig.balance(uid) == 70
    other = rig.user(credits=10)
    rig.generate(other)  # the limit is per user
    admin = rig.user(credits=100, role="admin")
    for _ in range(4):
        rig.generate(admin, is_admin=True)
    assert rig.balance(admin) == 60


def test_the_rate_window_is_a_minute_on_the_studio_clock(make_rig):
    rig = make_rig(GENERATION_RATE_PER_MINUTE=2)
    uid = rig.user(credits=100)
    for _ in range(2):
        rig.generate(uid)
    rig.clock.advance(seconds=59)
    with pytest.raises(RateLimited):
        rig.generate(uid)
    rig.clock.advance(seconds=2)  # the first two are now more than a minute old
    rig.generate(uid)
    rig.generate(uid)
    with pytest.raises(RateLimited):
        rig.generate(uid)
    assert rig.balance(uid) == 60


def test_failed_generations_count_towards_the_rate(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai, GENERATION_RATE_PER_MINUTE=2)
    uid = rig.user(credits=100)
    fake_openai.fail("moderation_blocked")
    for _ in range(2):
        with pytest.raises(ContentRejected, match="not charged"):
            rig.generate(uid)
    fake_openai.fail(None)
    with pytest.raises(RateLimited):
        rig.generate(uid)
    assert rig.balance(uid) == 100


async def _held(rig, fake, jobs, *, release_when):
    """Run the jobs at once while the fake engine holds every answer; each time
    `release_when(fake, released)` is true, one held request is answered."""
    tasks = [asyncio.ensure_future(rig.studio.generate(user_id=uid, is_admin=admin, prompt=f"job {i}", style="none",
                                                       aspect_ratio="1:1", resolution="1K"))
             for i, (uid, admin) in enumerate(jobs)]
    try:
        for released in range(len(jobs)):
            await asyncio.to_thread(fake.wait_until, lambda f, r=released: release_when(f, r))
            fake.release()
        return await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        fake.release_all()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_more_than_the_concurrency_cap_wait_their_turn(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai, GENERATION_MAX_CONCURRENT=2)
    uid = rig.user(credits=100)
    fake_openai.hold()

    def two_at_a_time(f, released):  # after r answers, exactly r + 2 requests have reached the engine
        return f.ended == released and f.started == min(5, released + 2)

    results = asyncio.run(_held(rig, fake_openai, [(uid, False)] * 5, release_when=two_at_a_time))
    assert all(not isinstance(r, Exception) for r in results), results
    assert fake_openai.max_in_flight == 2
    assert [kind for kind, _ in fake_openai.timeline] == ["start", "start"] + ["end", "start"] * 3 + ["end", "end"]
    assert rig.balance(uid) == 50


def test_the_cap_is_per_user_and_admins_are_exempt(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai, GENERATION_MAX_CONCURRENT=1)
    users = [rig.user(credits=10) for _ in range(3)]
    admin = rig.user(credits=30, role="admin")

    def all_three_in_flight(f, released):
        return f.started == 3 and f.ended == released

    fake_openai.hold()
    results = asyncio.run(_held(rig, fake_openai, [(u, False) for u in users], release_when=all_three_in_flight))
    assert all(not isinstance(r, Exception) for r in results), results
    assert fake_openai.max_in_flight == 3, "three users with a cap of one each: all three at the engine at once"
    fake_openai.reset()
    fake_openai.hold()
    results = asyncio.run(_held(rig, fake_openai, [(admin, True)] * 3, release_when=all_three_in_flight))
    assert all(not isinstance(r, Exception) for r in results), results
    assert fake_openai.max_in_flight == 3, "an admin is not capped"
    assert rig.balance(admin) == 0


def test_the_cap_is_one_count_for_two_studios_on_one_database(make_rig, fake_openai):
    """Two Studio instances (as two replicas would have) share the cap through the database."""
    a = make_rig("openai", fake_openai, GENERATION_MAX_CONCURRENT=1)
    b = make_rig("openai", fake_openai, GENERATION_MAX_CONCURRENT=1)
    uid = a.user(credits=30)
    fake_openai.hold()

    async def one_after_another():
        jobs = [asyncio.ensure_future(rig.studio.generate(user_id=uid, is_admin=False, prompt=f"job {i}", style="none",
                                                          aspect_ratio="1:1", resolution="1K"))
                for i, rig in enumerate((a, b, a))]
        try:
            for released in range(3):
                await asyncio.to_thread(fake_openai.wait_until,
                                        lambda f, r=released: f.started == r + 1 and f.ended == r)
                fake_openai.release()
            return await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            fake_openai.release_all()
            await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(one_after_another())
    assert all(not isinstance(r, Exception) for r in results), results
    assert fake_openai.max_in_flight == 1, "each instance alone would have let one through: two at once"
    assert a.balance(uid) == 0


def test_a_cancelled_generation_gives_its_credits_back(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=10)
    fake_openai.hold()  # the engine has the request and does not answer

    async def cancel_midway():
        task = asyncio.create_task(rig.studio.generate(user_id=uid, is_admin=False, prompt="slow", style="none",
                                                       aspect_ratio="1:1", resolution="1K"))
        await asyncio.to_thread(fake_openai.wait_until, lambda f: f.in_flight == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(cancel_midway())
    finally:
        fake_openai.release_all()
    assert rig.balance(uid) == 10
    assert rig.ledger.history(uid).rows[0].what.startswith("Not charged")
