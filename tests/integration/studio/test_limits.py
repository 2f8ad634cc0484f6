"""Per-user limits: a rate per minute (refused, not charged) and a concurrency cap (they wait)."""

import asyncio

import pytest

from services.errors import RateLimited


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


def test_failed_generations_count_towards_the_rate(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai, GENERATION_RATE_PER_MINUTE=2)
    uid = rig.user(credits=100)
    fake_openai.fail("moderation_blocked")
    for _ in range(2):
        with pytest.raises(Exception, match="not charged"):
            rig.generate(uid)
    fake_openai.fail(None)
    with pytest.raises(RateLimited):
        rig.generate(uid)
    assert rig.balance(uid) == 100


async def _many(rig, jobs):
    return await asyncio.gather(*(rig.studio.generate(user_id=uid, is_admin=admin, prompt=f"job {i}",
                                                      style="none", aspect_ratio="1:1", resolution="1K")
                                  for i, (uid, admin) in enumerate(jobs)), return_exceptions=True)


@pytest.mark.slow
def test_more_than_the_concurrency_cap_wait_their_turn(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai, GENERATION_MAX_CONCURRENT=2)
    uid = rig.user(credits=100)
    fake_openai.latency = 0.4
    results = asyncio.run(_many(rig, [(uid, False)] * 5))
    assert all(not isinstance(r, Exception) for r in results), results
    assert fake_openai.max_in_flight == 2
    assert rig.balance(uid) == 50


@pytest.mark.slow
def test_the_cap_is_per_user_and_admins_are_exempt(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai, GENERATION_MAX_CONCURRENT=1)
    users = [rig.user(credits=10) for _ in range(3)]
    admin = rig.user(credits=30, role="admin")
    fake_openai.latency = 0.4
    results = asyncio.run(_many(rig, [(u, False) for u in users]))
    assert all(not isinstance(r, Exception) for r in results), results
    assert fake_openai.max_in_flight == 3
    fake_openai.reset()
    fake_openai.latency = 0.4
    results = asyncio.run(_many(rig, [(admin, True)] * 3))
    assert all(not isinstance(r, Exception) for r in results), results
    assert fake_openai.max_in_flight == 3
    assert rig.balance(admin) == 0


@pytest.mark.slow
def test_a_cancelled_generation_gives_its_credits_back(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=10)
    fake_openai.latency = 2.0

    async def cancel_midway():
        task = asyncio.create_task(rig.studio.generate(user_id=uid, is_admin=False, prompt="slow", style="none",
                                                       aspect_ratio="1:1", resolution="1K"))
        while not fake_openai.calls("/images/generations"):
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    assert rig.balance(uid) == 10
    assert rig.ledger.history(uid).rows[0].what.startswith("Not charged")
