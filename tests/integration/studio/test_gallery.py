"""The gallery, owner checks on every image, deletion, and the stale-hold sweep's view of storage."""

import uuid
from pathlib import Path

import pytest

from services.errors import NotFound, ProviderFailed


def test_gallery_is_the_owners_stored_images_newest_first_paginated(make_rig, fake_openai):
    rig = make_rig()
    alice, bob = rig.user(credits=100), rig.user(credits=10)
    made = []
    for i in range(5):
        rig.clock.advance(seconds=1)  # the rig's clock stands still unless moved: each image is newer
        made.append(rig.generate(alice, prompt=f"picture {i}").id)
    rig.generate(bob)

    page1 = rig.studio.gallery(user_id=alice, page=1, per_page=2)
    page3 = rig.studio.gallery(user_id=alice, page=3, per_page=2)
    assert (page1.total, page1.pages) == (5, 3)
    assert [g.id for g in page1.items] == made[::-1][:2]
    assert [g.id for g in page3.items] == [made[0]]
    assert rig.studio.gallery(user_id=alice, page=4, per_page=2).items == []
    assert all(g.user_id == alice for g in rig.studio.gallery(user_id=alice, per_page=100).items)
    assert rig.studio.gallery(user_id=bob).total == 1


def test_failed_generations_stay_out_of_the_gallery(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=100)
    fake_openai.fail("not_an_image", times=1)
    with pytest.raises(ProviderFailed):
        rig.generate(uid)
    ok = rig.generate(uid)
    assert [g.id for g in rig.studio.gallery(user_id=uid).items] == [ok.id]


def test_images_are_served_to_their_owner_only(make_rig):
    rig = make_rig()
    alice, bob = rig.user(credits=10), rig.user(credits=10)
    gid = rig.generate(alice).id

    for variant, media in (("png", "image/png"), ("webp", "image/webp"), ("thumb", "image/webp")):
        content, media_type = rig.studio.open_image(user_id=alice, generation_id=gid, variant=variant)
        assert media_type == media
        data = content.read_bytes() if isinstance(content, Path) else content
        assert data[:4] in (b"\x89PNG", b"RIFF")
    assert rig.studio.get(user_id=alice, generation_id=gid).id == gid

    for call in (lambda: rig.studio.open_image(user_id=bob, generation_id=gid, variant="png"),
                 lambda: rig.studio.get(user_id=bob, generation_id=gid),
                 lambda: rig.studio.delete(user_id=bob, generation_id=gid),
                 lambda: rig.studio.open_image(user_id=alice, generation_id=gid, variant="../png"),
                 lambda: rig.studio.open_image(user_id=alice, generation_id="../../studio.db", variant="png"),
                 lambda: rig.studio.open_image(user_id=alice, generation_id=uuid.uuid4().hex, variant="png")):
        with pytest.raises(NotFound):
            call()
    assert rig.store.exists(gid), "bob's attempt to delete changed nothing"


def test_delete_removes_the_files_and_hides_the_image_but_refunds_nothing(make_rig):
    rig = make_rig()
    uid = rig.user(credits=20)
    keep, gone = rig.generate(uid).id, rig.generate(uid).id
    rig.studio.delete(user_id=uid, generation_id=gone)
    assert not rig.store.exists(gone) and rig.store.exists(keep)
    assert [g.id for g in rig.studio.gallery(user_id=uid).items] == [keep]
    with pytest.raises(NotFound):
        rig.studio.open_image(user_id=uid, generation_id=gone, variant="webp")
    with pytest.raises(NotFound):
        rig.studio.delete(user_id=uid, generation_id=gone)
    assert rig.balance(uid) == 0
    assert rig.ledger.reconcile() == []
