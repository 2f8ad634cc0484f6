import uuid

import pytest

from services.storage import ImageMissing, LocalImageStore, media_type


def test_save_open_delete(tmp_path):
    store = LocalImageStore(tmp_path / "images")
    key = uuid.uuid4().hex
    store.save(key, {"png": b"png-bytes", "webp": b"webp-bytes", "thumb": b"thumb-bytes"})
    assert store.exists(key)
    path = store.open(key, "png")
    assert path.read_bytes() == b"png-bytes" and path.is_relative_to(tmp_path / "images")
    assert store.read(key, "thumb") == b"thumb-bytes"
    assert media_type("png") == "image/png" and media_type("webp") == "image/webp"
    assert not [p for p in (tmp_path / "images").rglob(".*")], "no temporary files are left behind"
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(ImageMissing):
        store.open(key, "png")
    store.delete(key)  # deleting twice is fine


def test_overwrite_is_atomic_and_complete(tmp_path):
    store = LocalImageStore(tmp_path)
    key = uuid.uuid4().hex
    store.save(key, {"png": b"first"})
    store.save(key, {"png": b"second"})
    assert store.read(key, "png") == b"second"


@pytest.mark.parametrize("key", ["../../etc/passwd", "abc", "A" * 32, "", None, uuid.uuid4().hex + "/x"])
def test_keys_that_are_not_ours_never_touch_the_disk(tmp_path, key):
    store = LocalImageStore(tmp_path / "images")
    with pytest.raises(ImageMissing):
        store.open(key, "png")
    with pytest.raises(ImageMissing):
        store.save(key, {"png": b"x"})
    assert not store.exists(key)
    assert not (tmp_path / "images").exists()


def test_unknown_variant(tmp_path):
    store = LocalImageStore(tmp_path)
    key = uuid.uuid4().hex
    store.save(key, {"png": b"x"})
    with pytest.raises(ImageMissing):
        store.open(key, "../png")
    with pytest.raises(ValueError):
        store.save(key, {"gif": b"x"})
