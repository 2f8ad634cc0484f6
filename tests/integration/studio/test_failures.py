"""Every refusal and failure leaves the balance whole: refused before the hold, or released after it."""

import pytest
from sqlalchemy import func
from sqlmodel import select

from models.generation import Generation, ModerationEvent
from models.ledger import Hold
from services.errors import (
    ContentRejected,
    InsufficientCredits,
    PermissionDenied,
    ProviderFailed,
    ValidationFailed,
)
from services.studio import NOT_CHARGED

START = 100


def _count(db, model, *where):
    with db.session() as s:
        return s.exec(select(func.count()).select_from(model).where(*where)).one()


def _only_generation(db) -> Generation:
    with db.session() as s:
        return s.exec(select(Generation)).one()


@pytest.mark.parametrize("mode, error, reason, attempts", [
    ("error_500", ProviderFailed, "internal error", 3),
    ("rate_limit", ProviderFailed, "busy right now", 3),
    ("moderation_blocked", ContentRejected, "safety system refused", 1),
    ("content_policy_violation", ContentRejected, "safety system refused", 1),
    ("garbage_base64", ProviderFailed, "not a valid image", 1),
    ("not_an_image", ProviderFailed, "not a valid image", 1),
    ("no_data", ProviderFailed, "without an image", 1),
    ("hang", ProviderFailed, "took too long", 3),
])
def test_provider_failure_releases_the_hold(make_rig, fake_openai, mode, error, reason, attempts):
    rig = make_rig("openai", fake_openai, OPENAI_TIMEOUT=0.4)
    uid = rig.user(credits=START)
    fake_openai.fail(mode)
    with pytest.raises(error) as caught:
        rig.generate(uid, resolution="2K")

    message = str(caught.value)
    assert message.startswith(NOT_CHARGED) and reason in message
    assert "Traceback" not in message and "sk-" not in message
    assert rig.balance(uid) == START
    assert len(fake_openai.calls("/images/generations")) == attempts  # 429/5xx/timeouts retried; rejections never
    g = _only_generation(rig.db)
    assert g.status == "failed" and reason in g.error and g.image_key is None
    with rig.db.session() as s:
        hold = s.exec(select(Hold).where(Hold.job_id == g.id)).one()
    assert hold.status == "released" and reason in hold.reason
    assert not rig.store.exists(g.id)
    history = rig.ledger.history(uid).rows
    assert any(row.what.startswith("Not charged") for row in history)
    assert rig.ledger.reconcile() == []
    assert rig.studio.gallery(user_id=uid).total == 0
    if error is ContentRejected:
        assert _count(rig.db, ModerationEvent, ModerationEvent.source == "provider") == 1


def test_the_user_can_generate_again_after_a_failure(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=10)
    fake_openai.fail("error_500", times=3)
    with pytest.raises(ProviderFailed):
        rig.generate(uid)
    assert rig.generate(uid).balance == 0


def test_a_flagged_prompt_never_reaches_the_image_endpoint(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=START)
    with pytest.raises(ContentRejected, match="nothing was charged"):
        rig.generate(uid, prompt="something FORBIDDEN here")
    assert fake_openai.calls("/moderations") and not fake_openai.calls("/images/generations")
    assert rig.balance(uid) == START
    assert _count(rig.db, Generation) == 0
    with rig.db.session() as s:
        event = s.exec(select(ModerationEvent)).one()
    assert (event.user_id, event.source, event.categories) == (uid, "moderation", ["violence"])
    assert "FORBIDDEN" in event.prompt


def test_the_local_blocklist_applies_even_with_a_key_and_before_the_api(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=START)
    with pytest.raises(ContentRejected):
        rig.generate(uid, prompt="child porn")
    assert fake_openai.requests == []
    assert rig.balance(uid) == START and _count(rig.db, Generation) == 0
    assert _count(rig.db, ModerationEvent, ModerationEvent.source == "blocklist") == 1


def test_the_local_blocklist_applies_offline(make_rig):
    rig = make_rig()
    uid = rig.user(credits=START)
    with pytest.raises(ContentRejected):
        rig.generate(uid, prompt="Nude children on a beach")
    assert rig.balance(uid) == START and _count(rig.db, Generation) == 0


def test_moderation_outage_refuses_without_charging(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=START)
    fake_openai.moderation_fail = True
    with pytest.raises(ProviderFailed, match="could not check this prompt"):
        rig.generate(uid)
    assert not fake_openai.calls("/images/generations")
    assert rig.balance(uid) == START and _count(rig.db, Generation) == 0


BAD_INPUTS = [
    ({"prompt": ""}, "enter a prompt"),
    ({"prompt": "   \n\t "}, "enter a prompt"),
    ({"prompt": None}, "enter a prompt"),
    ({"prompt": 42}, "enter a prompt"),
    ({"prompt": "x" * 4001}, "too long"),
    ({"prompt": "a cat\x00"}, "control character"),
    ({"prompt": "a \x07 bell"}, "control character"),
    ({"prompt": "esc \x1b[31m red"}, "control character"),
    ({"prompt": "a cat \ud800"}, "control character"),
    ({"style": "not-a-style"}, "Unknown style"),
    ({"style": None}, "Unknown style"),
    ({"aspect_ratio": "5:4"}, "Unknown aspect ratio"),
    ({"aspect_ratio": "../../1:1"}, "Unknown aspect ratio"),
    ({"resolution": "8K"}, "Unknown resolution"),
    ({"resolution": ""}, "Unknown resolution"),
]


@pytest.mark.parametrize("bad, message", BAD_INPUTS, ids=[m + str(i) for i, (_, m) in enumerate(BAD_INPUTS)])
def test_bad_input_is_refused_before_anything_happens(make_rig, fake_openai, bad, message):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=START)
    args = {"prompt": "a cat", "style": "photographic", "aspect_ratio": "1:1", "resolution": "1K", **bad}
    with pytest.raises(ValidationFailed, match=message):
        rig.generate(uid, **args)
    assert fake_openai.requests == [], "no engine or moderation call"
    assert rig.balance(uid) == START
    assert _count(rig.db, Generation) == 0 and _count(rig.db, Hold) == 0


def test_the_longest_prompt_and_newlines_are_accepted(make_rig):
    rig = make_rig()
    uid = rig.user(credits=20)
    long_prompt = ("word " * 800)[:4000]
    assert rig.generate(uid, prompt=long_prompt, style="none").generation.prompt == long_prompt.strip()
    g = rig.generate(uid, prompt="line one\r\nline two\tend", style="none").generation
    assert g.prompt == "line one\nline two\tend" == g.styled_prompt


def test_not_enough_credits_changes_nothing(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=15)
    with pytest.raises(InsufficientCredits) as caught:
        rig.generate(uid, resolution="2K")
    assert caught.value.needed == 20 and caught.value.available == 15
    assert "Pricing" in str(caught.value)
    assert not fake_openai.calls("/images/generations")
    assert rig.balance(uid) == 15
    assert _count(rig.db, Generation) == 0 and _count(rig.db, Hold) == 0


def _gate(catalog, resolution: str, requirement: str):
    from dataclasses import replace

    return replace(catalog, resolutions=tuple(replace(r, requires=requirement) if r.key == resolution else r
                                              for r in catalog.resolutions))


def test_a_gated_resolution_is_refused_on_the_server(make_rig, catalog):
    rig = make_rig()
    rig.studio.catalog = rig.entitlements.catalog = _gate(catalog, "4K", "paid")
    uid = rig.user(credits=100)
    assert rig.entitlements.resolution_block(user_id=uid, is_admin=False, resolution="4K") is not None
    with pytest.raises(PermissionDenied, match="paid plan"):
        rig.generate(uid, resolution="4K")
    assert rig.balance(uid) == 100 and _count(rig.db, Generation) == 0
    assert rig.generate(uid, resolution="2K").balance == 80  # others stay open


def test_a_pack_buyer_passes_the_purchase_gate_and_a_trial_user_does_not(make_rig, catalog, fake_stripe):
    """The Studio asks the real Entitlements, which ask the real Billing: a pack bought through
    Stripe Checkout opens a resolution that needs a purchase; trial credits alone do not, and a
    pack is not a plan."""
    rig = make_rig(stripe=fake_stripe)
    rig.studio.catalog = rig.entitlements.catalog = _gate(_gate(catalog, "4K", "purchase"), "2K", "paid")
    trial = rig.make_user(rig.db).id
    rig.ledger.grant(user_id=trial, amount=100, kind="trial", idempotency_key=f"trial:{trial}")
    buyer = rig.make_user(rig.db).id
    rig.buy(buyer, "pack_100")
    assert rig.balance(buyer) == 100

    with pytest.raises(PermissionDenied, match="plan or a credit pack"):
        rig.generate(trial, resolution="4K")
    assert rig.balance(trial) == 100 and _count(rig.db, Generation) == 0

    done = rig.generate(buyer, resolution="4K")
    assert (done.generation.resolution, done.generation.status) == ("4K", "succeeded")
    assert done.balance == 100 - done.generation.cost
    with pytest.raises(PermissionDenied, match="paid plan"):
        rig.generate(buyer, resolution="2K")
    assert rig.ledger.reconcile() == []
