"""The served app with its images in S3 (real boto3 against moto's server on 127.0.0.1): generate,
fetch through the owner-checked route (streamed, or a presigned redirect), a store that is missing
or goes away mid-write (not charged, nothing recorded as made), and `storage migrate`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from gradio_client.exceptions import AppError
from sqlmodel import select

from models.generation import Generation
from tests.e2e.test_studio import api_user, balance_of
from tests.fakes.s3_server import GoesAwayProxy

ROOT = Path(__file__).resolve().parents[2]


def generation_id_of(message: str) -> str:
    return message.split("/images/", 1)[1].split("/png", 1)[0]


def rows_of(app, user) -> list[Generation]:
    with app.services.db.session() as s:
        return list(s.exec(select(Generation).where(Generation.user_id == user.id)))


def test_generate_and_fetch_streamed_from_s3(serve_app, database_url, moto_s3, closing):
    bucket = moto_s3.bucket()
    app = serve_app(database_url=database_url, STORAGE_URL=f"s3://{bucket}/studio", **moto_s3.settings())
    user, key, client = api_user(app)
    _, message, balance = client.predict("a lighthouse", "none", "1:1", "1K", api_name="/generate")
    assert balance == 30
    gen_id = generation_id_of(message)
    names = moto_s3.objects(bucket)
    assert sorted(names) == sorted(f"studio/{gen_id[:2]}/{gen_id}/{n}"
                                   for n in ("original.png", "display.webp", "thumb.webp"))
    stored = moto_s3.client.get_object(Bucket=bucket, Key=f"studio/{gen_id[:2]}/{gen_id}/original.png")["Body"].read()
    with app.client(headers={"Authorization": f"Bearer {key}"}) as http:
        png = http.get(f"/images/{gen_id}/png")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content == stored and png.content.startswith(b"\x89PNG")
        assert http.get(f"/images/{gen_id}/thumb").headers["content-type"] == "image/webp"
    assert app.services.studio.gallery(user_id=user.id).total == 1


def test_presigned_redirect_after_the_owner_check(serve_app, moto_s3, closing):
    bucket = moto_s3.bucket()
    app = serve_app(STORAGE_URL=f"s3://{bucket}", STORAGE_PRESIGN="1", **moto_s3.settings())
    _, key, client = api_user(app)
    _, bob_key, _ = api_user(app)
    gen_id = generation_id_of(client.predict("a cat", "none", "1:1", "1K", api_name="/generate")[1])
    with app.client(headers={"Authorization": f"Bearer {key}"}) as http:
        r = http.get(f"/images/{gen_id}/png")
        assert r.status_code == 307 and r.headers["location"].startswith(moto_s3.url + f"/{bucket}/")
        fetched = httpx.get(r.headers["location"])
        assert fetched.status_code == 200 and fetched.content.startswith(b"\x89PNG")
        assert "attachment" in fetched.headers["content-disposition"]
    with app.client(headers={"Authorization": f"Bearer {bob_key}"}) as http:
        assert http.get(f"/images/{gen_id}/png").status_code == 404, "no link for someone else's image"
    with app.client() as anonymous:
        refused = anonymous.get(f"/images/{gen_id}/png")
        assert refused.status_code in (401, 303, 307)
        assert not refused.headers.get("location", "").startswith(moto_s3.url)


def assert_nothing_charged_nothing_made(app, user):
    assert balance_of(app, user) == 40
    assert [g.status for g in rows_of(app, user)] in ([], ["failed"])
    assert app.services.studio.gallery(user_id=user.id).total == 0
    assert app.services.ledger.reconcile() == []


def test_missing_bucket_charges_nothing(serve_app, moto_s3, closing):
    app = serve_app(STORAGE_URL=f"s3://missing-{uuid.uuid4().hex[:8]}/x", **moto_s3.settings())
    user, _, client = api_user(app)
    with pytest.raises(AppError, match="not charged.*Image storage is unavailable.*does not exist"):
        client.predict("a cat", "none", "1:1", "1K", api_name="/generate")
    assert_nothing_charged_nothing_made(app, user)


def test_a_store_that_goes_away_mid_write_charges_nothing(serve_app, database_url, moto_s3,
                                                         closing):
    bucket = moto_s3.bucket()
    proxy = GoesAwayProxy(moto_s3.port, puts=1)  # the thumbnail is written, then the store is gone
    settings = {**moto_s3.settings(), "S3_ENDPOINT_URL": proxy.url}
    app = serve_app(database_url=database_url, STORAGE_URL=f"s3://{bucket}", **settings)
    user, _, client = api_user(app)
    with pytest.raises(AppError, match="not charged.*could not be reached"):
        client.predict("a cat", "none", "1:1", "1K", api_name="/generate")
    assert proxy.seen >= 2 and proxy.gone
    assert_nothing_charged_nothing_made(app, user)
    half = moto_s3.objects(bucket)
    assert all(name.endswith("thumb.webp") for name in half), "no original: never counted as stored"


def test_denied_access_charges_nothing(serve_app, moto_s3, closing):
    bucket = moto_s3.bucket()
    app = serve_app(STORAGE_URL=f"s3://{bucket}", **{**moto_s3.settings(), "AWS_ACCESS_KEY_ID": "AKIAUNKNOWN0000000"})
    user, _, client = api_user(app)
    moto_s3.require_auth()
    try:
        with pytest.raises(AppError, match="not charged.*denied"):
            client.predict("a cat", "none", "1:1", "1K", api_name="/generate")
    finally:
        moto_s3.allow_all()
    assert_nothing_charged_nothing_made(app, user)
    assert moto_s3.objects(bucket) == []


def test_storage_migrate_local_to_s3_twice(serve_app, moto_s3, closing):
    app = serve_app()
    _, _, client = api_user(app)
    ids = [generation_id_of(client.predict(f"a cat {i}", "none", "1:1", "1K", api_name="/generate")[1])
           for i in range(2)]
    bucket = moto_s3.bucket()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "STRIPE_", "SMTP_", "AWS_"))}
    env.update({"DATA_DIR": str(app.settings.data_dir), "DATABASE_URL": app.settings.resolved_database_url,
                "IMAGE_PROVIDER": "offline", "GRADIO_ANALYTICS_ENABLED": "False", **moto_s3.settings()})

    def migrate() -> dict:
        proc = subprocess.run([sys.executable, str(ROOT / "app.py"), "storage", "migrate", "--to", f"s3://{bucket}/m"],
                              cwd=app.settings.data_dir, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    first = migrate()
    assert (first["keys"], first["objects"], first["copied"], first["skipped"], first["failed"]) == (2, 6, 6, 0, 0)
    assert first["to"].startswith("S3 (s3://") and first["from"].startswith("local disk")
    second = migrate()
    assert (second["copied"], second["skipped"], second["failed"]) == (0, 6, 0)
    assert sorted(moto_s3.objects(bucket)) == sorted(f"m/{i[:2]}/{i}/{n}" for i in ids
                                                     for n in ("display.webp", "original.png", "thumb.webp"))


def test_the_orphan_sweep_works_on_s3(serve_app, moto_s3, closing):
    from datetime import timedelta

    from models.base import utcnow
    from services.maintenance import Maintenance

    bucket = moto_s3.bucket()
    app = serve_app(STORAGE_URL=f"s3://{bucket}/o", **moto_s3.settings())
    _, _, client = api_user(app)
    kept = generation_id_of(client.predict("a cat", "none", "1:1", "1K", api_name="/generate")[1])
    orphan = uuid.uuid4().hex
    app.services.studio.store.save(orphan, {"thumb": b"left by a crash"})
    services = app.services
    maintenance = Maintenance(db=services.db, ledger=services.ledger, studio=services.studio)
    summary = maintenance.sweep(now=utcnow() + timedelta(hours=2))
    assert summary["orphan_files"] == 1 and summary["errors"] == 0
    assert {key for key, _ in services.studio.store.list_keys()} == {kept}
