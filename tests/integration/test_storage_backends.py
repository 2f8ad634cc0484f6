"""The same storage tests against local disk and against S3 (real boto3, moto in server mode),
plus what only a remote store can do: a missing bucket, denied access, a store that is gone."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.s3storage import S3ImageStore, StorageUnavailable
from services.storage import ImageMissing, LocalImageStore, migrate
from tests.fakes.base import free_port
from tests.fakes.s3_server import ACCESS_KEY, REGION, SECRET_KEY


def s3_store(moto_s3, url: str, **overrides) -> S3ImageStore:
    options = {"endpoint_url": moto_s3.url, "region": REGION, "access_key_id": ACCESS_KEY,
               "secret_access_key": SECRET_KEY, **overrides}
    return S3ImageStore(url, **options)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalImageStore(tmp_path / "images")
    moto_s3 = request.getfixturevalue("moto_s3")
    return s3_store(moto_s3, f"s3://{moto_s3.bucket()}/studio/images")


def content(store, key, variant) -> bytes:
    data = store.open(key, variant)
    return data if isinstance(data, bytes) else data.read_bytes()


def test_save_open_delete(store):
    key = uuid.uuid4().hex
    store.save(key, {"png": b"png-bytes", "webp": b"webp-bytes", "thumb": b"thumb-bytes"})
    assert store.exists(key)
    assert content(store, key, "png") == b"png-bytes"
    assert store.read(key, "thumb") == b"thumb-bytes"
    assert store.checksum(key, "webp") == hashlib.md5(b"webp-bytes").hexdigest()
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(ImageMissing):
        store.open(key, "png")
    assert store.checksum(key, "png") is None
    store.delete(key)  # deleting twice is fine


def test_reference_images_are_kept_under_the_generation_and_go_with_it(store, tmp_path):
    key = uuid.uuid4().hex
    store.save(key, {"png": b"png", "webp": b"webp", "thumb": b"thumb", "ref0.jpg": b"first", "ref1.png": b"second"})
    assert store.read(key, "ref0.jpg") == b"first" and store.read(key, "ref1.png") == b"second"
    copy = LocalImageStore(tmp_path / "copy")
    assert migrate(store, copy)["copied"] == 5  # `storage migrate` takes them along
    store.delete(key)
    with pytest.raises(ImageMissing):
        store.read(key, "ref0.jpg")
    assert list(store.list_keys()) == []


def test_overwrite_and_put_one_variant(store):
    key = uuid.uuid4().hex
    store.save(key, {"png": b"first"})
    store.save(key, {"png": b"second"})
    store.put(key, "thumb", b"small")
    assert store.read(key, "png") == b"second" and store.read(key, "thumb") == b"small"
    with pytest.raises(ImageMissing):
        store.read(key, "webp")


def test_list_keys_for_the_orphan_sweep(store):
    before = datetime.now(UTC) - timedelta(seconds=5)
    keys = sorted(uuid.uuid4().hex for _ in range(3))
    for key in keys:
        store.save(key, {"png": b"x", "thumb": b"y"})
    store.put(uuid.uuid4().hex, "thumb", b"half written")  # no original: still listed
    listed = dict(store.list_keys())
    assert set(keys) <= set(listed) and len(listed) == 4
    assert all(before <= written <= datetime.now(UTC) + timedelta(seconds=5) for written in listed.values())
    store.delete(keys[1])
    assert keys[1] not in dict(store.list_keys())


@pytest.mark.parametrize("key", ["../../etc/passwd", "abc", "A" * 32, "", None, uuid.uuid4().hex + "/x"])
def test_keys_that_are_not_ours_are_refused(store, key):
    with pytest.raises(ImageMissing):
        store.open(key, "png")
    with pytest.raises(ImageMissing):
        store.save(key, {"png": b"x"})
    assert not store.exists(key)
    assert list(store.list_keys()) == []


def test_unknown_variant(store):
    key = uuid.uuid4().hex
    store.save(key, {"png": b"x"})
    with pytest.raises(ImageMissing):
        store.open(key, "../png")
    with pytest.raises(ValueError):
        store.save(key, {"gif": b"x"})


@pytest.mark.parametrize("direction", ["local-to-s3", "s3-to-local"])
def test_migrate_copies_verifies_and_resumes(direction, tmp_path, moto_s3):
    local = LocalImageStore(tmp_path / "images")
    remote = s3_store(moto_s3, f"s3://{moto_s3.bucket()}/p")
    source, target = (local, remote) if direction == "local-to-s3" else (remote, local)
    keys = [uuid.uuid4().hex for _ in range(3)]
    for i, key in enumerate(keys):
        source.save(key, {"png": b"png%d" % i, "webp": b"webp%d" % i, "thumb": b"thumb%d" % i})
    target.save(keys[0], {"png": b"png0"})  # an earlier, interrupted run copied one object

    first = migrate(source, target)
    assert first | {"failures": []} == {"keys": 3, "objects": 9, "copied": 8, "skipped": 1, "failed": 0,
                                        "failures": []}
    for key in keys:
        for variant in ("png", "webp", "thumb"):
            assert target.read(key, variant) == source.read(key, variant)
    second = migrate(source, target)
    assert (second["copied"], second["skipped"], second["failed"]) == (0, 9, 0)


def test_missing_bucket_is_a_clear_error(moto_s3):
    store = s3_store(moto_s3, f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x")
    with pytest.raises(StorageUnavailable, match="does not exist"):
        store.save(uuid.uuid4().hex, {"png": b"x"})
    with pytest.raises(StorageUnavailable, match="does not exist"):
        list(store.list_keys())
    with pytest.raises(StorageUnavailable, match="does not exist"):
        store.read(uuid.uuid4().hex, "png")


def test_denied_access_is_a_clear_error(moto_s3):
    bucket = moto_s3.bucket()
    store = s3_store(moto_s3, f"s3://{bucket}", access_key_id="AKIAUNKNOWNUNKNOWN00", secret_access_key="nope")
    moto_s3.require_auth()
    try:
        with pytest.raises(StorageUnavailable, match="denied"):
            store.save(uuid.uuid4().hex, {"png": b"x"})
        with pytest.raises(StorageUnavailable, match="denied"):
            store.read(uuid.uuid4().hex, "png")
    finally:
        moto_s3.allow_all()
    assert moto_s3.objects(bucket) == []


def test_a_store_that_is_not_there_is_a_clear_error():
    store = S3ImageStore("s3://bucket/x", endpoint_url=f"http://127.0.0.1:{free_port()}", region=REGION,
                         access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, connect_timeout=1, read_timeout=2)
    with pytest.raises(StorageUnavailable, match="could not be reached"):
        store.save(uuid.uuid4().hex, {"png": b"x"})


def test_presigned_url_serves_the_bytes_and_expires(moto_s3):
    store = s3_store(moto_s3, f"s3://{moto_s3.bucket()}/p")
    key = uuid.uuid4().hex
    store.save(key, {"png": b"the original"})
    url = store.presigned_url(key, "png", expires_seconds=60, filename="image.png")
    assert url.startswith(moto_s3.url) and "X-Amz-Signature" in url
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == b"the original"
    assert r.headers["content-disposition"] == 'attachment; filename="image.png"'
