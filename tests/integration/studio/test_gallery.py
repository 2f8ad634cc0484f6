"""The gallery (search, filters), owner checks on every image, the trash (delete, restore, the purge
after 30 days), and the sweeps' view of storage."""

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from models.base import utcnow
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


def test_delete_moves_the_image_to_the_trash_keeping_its_files_and_refunds_nothing(make_rig):
    rig = make_rig()
    uid = rig.user(credits=20)
    keep, gone = rig.generate(uid).id, rig.generate(uid).id
    rig.studio.delete(user_id=uid, generation_id=gone)
    assert rig.store.exists(gone) and rig.store.exists(keep), "the trash keeps the files"
    assert [g.id for g in rig.studio.gallery(user_id=uid).items] == [keep]
    assert [g.id for g in rig.studio.trash(user_id=uid).items] == [gone]
    for variant in ("png", "webp", "thumb"):
        with pytest.raises(NotFound):
            rig.studio.open_image(user_id=uid, generation_id=gone, variant=variant)
    for variant in ("thumb", "webp"):  # the trash view's previews
        content, _ = rig.studio.open_trashed_image(user_id=uid, generation_id=gone, variant=variant)
        assert Path(content).read_bytes()[:4] == b"RIFF"
    with pytest.raises(NotFound):
        rig.studio.open_trashed_image(user_id=uid, generation_id=gone, variant="png")
    with pytest.raises(NotFound):
        rig.studio.open_trashed_image(user_id=uid, generation_id=keep, variant="thumb"), "only trashed ones"
    with pytest.raises(NotFound):
        rig.studio.delete(user_id=uid, generation_id=gone)
    assert [o.generation_id for o in rig.studio.originals(user_id=uid)] == [keep]
    assert rig.balance(uid) == 0
    assert rig.ledger.reconcile() == []


def test_restore_brings_the_image_back_for_its_owner_only(make_rig):
    rig = make_rig()
    alice, bob = rig.user(credits=10), rig.user(credits=10)
    gid = rig.generate(alice).id
    rig.studio.delete(user_id=alice, generation_id=gid)
    for call in (lambda: rig.studio.restore(user_id=bob, generation_id=gid),
                 lambda: rig.studio.open_trashed_image(user_id=bob, generation_id=gid, variant="thumb"),
                 lambda: rig.studio.restore(user_id=alice, generation_id=uuid.uuid4().hex)):
        with pytest.raises(NotFound):
            call()
    assert rig.studio.trash(user_id=bob).total == 0
    assert rig.studio.trash(user_id=alice).total == 1, "bob's attempt changed nothing"

    rig.clock.advance(days=29, hours=23)
    assert rig.studio.restore(user_id=alice, generation_id=gid).deleted_at is None
    assert [g.id for g in rig.studio.gallery(user_id=alice).items] == [gid]
    assert rig.studio.trash(user_id=alice).total == 0
    content, _ = rig.studio.open_image(user_id=alice, generation_id=gid, variant="png")
    assert Path(content).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(NotFound):
        rig.studio.restore(user_id=alice, generation_id=gid), "not in the trash any more"
    assert rig.balance(alice) == 0 and rig.ledger.reconcile() == []


def test_the_sweep_purges_the_trash_after_30_days_files_and_rows_and_no_credit_moves(make_rig):
    from models.generation import Generation
    from models.ledger import LedgerEntry
    from services.maintenance import Maintenance

    rig = make_rig()
    uid = rig.user(credits=30)
    old, recent, kept = (rig.generate(uid, prompt=f"picture {i}").id for i in range(3))
    rig.studio.delete(user_id=uid, generation_id=old)
    rig.clock.advance(days=10)
    rig.studio.delete(user_id=uid, generation_id=recent)
    sweep = Maintenance(db=rig.db, ledger=rig.ledger, studio=rig.studio, clock=rig.clock)

    def ledger_rows():
        with rig.db.session() as s:
            return [(e.kind, e.delta, e.held_delta, e.balance_after) for e in s.exec(
                select(LedgerEntry).where(LedgerEntry.user_id == uid).order_by(LedgerEntry.id)).all()]

    before = ledger_rows()
    rig.clock.advance(days=19, hours=23)  # the first deleted 29 days 23 hours ago
    assert sweep.sweep()["purged"] == 0
    assert rig.store.exists(old)

    rig.clock.advance(hours=2)  # now 30 days and 1 hour ago
    with pytest.raises(NotFound):
        rig.studio.restore(user_id=uid, generation_id=old), "past the 30 days: no restore"
    summary = sweep.sweep()
    assert summary["purged"] == 1 and summary["errors"] == 0
    assert not rig.store.exists(old), "its files are gone"
    with rig.db.session() as s:
        assert s.get(Generation, old) is None, "its row is gone"
        assert s.get(Generation, recent) is not None and s.get(Generation, kept) is not None
    assert rig.store.exists(recent) and rig.store.exists(kept)
    assert [g.id for g in rig.studio.trash(user_id=uid).items] == [recent]
    assert [g.id for g in rig.studio.gallery(user_id=uid).items] == [kept]
    assert ledger_rows() == before, "no credit moves"
    assert rig.balance(uid) == 0 and rig.ledger.reconcile() == []
    history = rig.ledger.history(uid, per_page=50).rows
    assert [r.detail for r in history if r.kind == "hold"].count("the image was deleted") == 1

    rig.clock.advance(days=11)
    assert sweep.sweep()["purged"] == 1
    assert not rig.store.exists(recent) and rig.store.exists(kept)
    assert sweep.sweep()["purged"] == 0


def test_the_orphan_sweep_leaves_the_files_of_trashed_images(make_rig):
    from services.maintenance import Maintenance

    rig = make_rig()
    uid = rig.user(credits=10)
    gid = rig.generate(uid).id
    rig.studio.delete(user_id=uid, generation_id=gid)
    sweep = Maintenance(db=rig.db, ledger=rig.ledger, studio=rig.studio, clock=rig.clock,
                        orphan_grace=timedelta(0))
    assert sweep.sweep(now=utcnow() + timedelta(hours=2))["orphan_files"] == 0
    assert rig.store.exists(gid)


def test_search_by_prompt_words_and_filter_by_style_and_resolution(make_rig):
    rig = make_rig()
    alice, bob = rig.user(credits=200), rig.user(credits=50)
    made = {}
    for prompt, style, resolution in (("A Lighthouse at dusk", "photographic", "1K"),
                                      ("lighthouse in the fog", "cinematic", "2K"),
                                      ("a red fox, 100% cute_", "cinematic", "1K")):
        rig.clock.advance(seconds=1)
        made[prompt] = rig.generate(alice, prompt=prompt, style=style, resolution=resolution).id
    rig.generate(bob, prompt="lighthouse of bob")

    def ids(**filters):
        return [g.id for g in rig.studio.gallery(user_id=alice, **filters).items]

    assert ids(query="LIGHTHOUSE") == [made["lighthouse in the fog"], made["A Lighthouse at dusk"]]
    assert ids(query="dusk lighthouse") == [made["A Lighthouse at dusk"]], "every word must match"
    assert ids(query="100%") == [made["a red fox, 100% cute_"]], "% is a character, not a wildcard"
    assert ids(query="x_") == [], "_ is a character too"
    assert ids(query="e_") == ids(query="%") == [made["a red fox, 100% cute_"]]
    assert ids(style="cinematic") == [made["a red fox, 100% cute_"], made["lighthouse in the fog"]]
    assert ids(resolution="2K") == [made["lighthouse in the fog"]]
    assert ids(query="lighthouse", style="photographic", resolution="1K") == [made["A Lighthouse at dusk"]]
    assert ids(query="   ") == ids() and len(ids()) == 3
    page = rig.studio.gallery(user_id=alice, query="lighthouse", per_page=1, page=2)
    assert (page.total, page.pages, [g.id for g in page.items]) == (2, 2, [made["A Lighthouse at dusk"]])
    rig.studio.delete(user_id=alice, generation_id=made["lighthouse in the fog"])
    assert ids(query="lighthouse") == [made["A Lighthouse at dusk"]], "the trash is not searched"
