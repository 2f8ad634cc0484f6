"""Images in an S3-compatible object store (AWS S3, MinIO, Cloudflare R2, …) through boto3.

`STORAGE_URL=s3://bucket/prefix`; `S3_ENDPOINT_URL` names a store other than AWS; credentials and
region come from the `AWS_*` settings, else from boto3's usual chain (instance roles, profiles).
Objects mirror the local layout: `<prefix>/<key[:2]>/<key>/original.png` and so on. The PNG is
written last, so `exists()` (which looks for it) never sees a half-written image.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime
from urllib.parse import urlsplit

from services.errors import DomainError
from services.storage import KEY_RE, VARIANTS, ImageMissing

log = logging.getLogger(__name__)
# PNG last: the original's presence is what says "this image is complete".
WRITE_ORDER = ("thumb", "webp", "png")


class StorageUnavailable(DomainError):
    """The object store refused or could not be reached; the message says which, for people."""


def parse_storage_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → ("bucket", "some/prefix")."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError("must look like s3://bucket or s3://bucket/prefix")
    return parts.netloc, parts.path.strip("/")


class S3ImageStore:
    """The ImageStore interface (services/storage.py) over one bucket and prefix."""

    def __init__(self, url: str, *, endpoint_url: str | None = None, region: str | None = None,
                 access_key_id: str | None = None, secret_access_key: str | None = None,
                 session_token: str | None = None, connect_timeout: float = 5, read_timeout: float = 30):
        import boto3
        from botocore.config import Config

        self.url = url
        self.bucket, self.prefix = parse_storage_url(url)
        self.endpoint_url = endpoint_url
        config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                        retries={"max_attempts": 2, "mode": "standard"}, signature_version="s3v4",
                        s3={"addressing_style": "path"} if endpoint_url else {})
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key,
            aws_session_token=session_token, config=config)

    def __repr__(self) -> str:
        return f"S3ImageStore({self.url!r})"

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3 ({self.url}{where})"

    # Object names ---------------------------------------------------------------------------

    def _base(self, key: str) -> str:
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise ImageMissing(key)
        return f"{self.prefix}/{key[:2]}/{key}/" if self.prefix else f"{key[:2]}/{key}/"

    def _name(self, key: str, variant: str) -> str:
        if variant not in VARIANTS:
            raise ImageMissing(variant)
        return self._base(key) + VARIANTS[variant][0]

    # The ImageStore interface ---------------------------------------------------------------

    def save(self, key: str, files: Mapping[str, bytes]) -> None:
        unknown = set(files) - set(VARIANTS)
        if unknown:
            raise ValueError(f"unknown variants: {sorted(unknown)}")
        for variant in sorted(files, key=lambda v: WRITE_ORDER.index(v) if v in WRITE_ORDER else -1):  # refs first
            self.put(key, variant, files[variant])

    def put(self, key: str, variant: str, data: bytes) -> None:
        """Write one variant; the store checks the body against its MD5 (Content-MD5)."""
        digest = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        with self._errors("write to"):
            self.client.put_object(Bucket=self.bucket, Key=self._name(key, variant), Body=data,
                                   ContentType=VARIANTS[variant][1], ContentMD5=digest)

    def open(self, key: str, variant: str) -> bytes:
        return self.read(key, variant)

    def read(self, key: str, variant: str) -> bytes:
        with self._errors("read from", missing=f"{key}/{variant}"):
            return self.client.get_object(Bucket=self.bucket, Key=self._name(key, variant))["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            return self.checksum(key, "png") is not None
        except ImageMissing:
            return False

    def checksum(self, key: str, variant: str) -> str | None:
        """The object's MD5 (hex; its ETag, as every object here is one single-part upload), or None."""
        try:
            with self._errors("read from", missing=f"{key}/{variant}"):
                head = self.client.head_object(Bucket=self.bucket, Key=self._name(key, variant))
        except ImageMissing:
            return None
        return head["ETag"].strip('"')

    def delete(self, key: str) -> None:
        try:
            base = self._base(key)
        except ImageMissing:
            return
        with self._errors("delete from"):
            names = [obj["Key"] for page in self._pages(base) for obj in page.get("Contents", [])]
            if names:
                self.client.delete_objects(Bucket=self.bucket,
                                           Delete={"Objects": [{"Key": n} for n in names], "Quiet": True})

    def list_keys(self) -> Iterator[tuple[str, datetime]]:
        """Every key with objects under the prefix (also one a failed save left half written),
        with the newest object's LastModified."""
        newest: dict[str, datetime] = {}
        root = f"{self.prefix}/" if self.prefix else ""
        with self._errors("list"):
            for page in self._pages(root):
                for obj in page.get("Contents", []):
                    parts = obj["Key"][len(root):].split("/")
                    if len(parts) != 3 or not KEY_RE.match(parts[1]) or parts[1][:2] != parts[0]:
                        continue
                    key = parts[1]
                    newest[key] = max(newest.get(key, obj["LastModified"]), obj["LastModified"])
        yield from sorted(newest.items())

    def presigned_url(self, key: str, variant: str, *, expires_seconds: int = 300,
                      filename: str | None = None) -> str:
        """A short-lived GET link to one variant (signed locally: no request to the store)."""
        params = {"Bucket": self.bucket, "Key": self._name(key, variant),
                  "ResponseContentType": VARIANTS[variant][1]}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_seconds)

    # Helpers --------------------------------------------------------------------------------

    def _pages(self, prefix: str):
        return self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)

    def _errors(self, doing: str, *, missing: str | None = None):
        return _StoreErrors(self, doing, missing)


class _StoreErrors:
    """botocore's errors → ImageMissing (no such object) or StorageUnavailable (with the reason)."""

    def __init__(self, store: S3ImageStore, doing: str, missing: str | None):
        self.store, self.doing, self.missing = store, doing, missing

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            return False
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if self.missing is not None and (code in ("NoSuchKey", "404", "NotFound") or
                                             (status == 404 and code != "NoSuchBucket")):
                raise ImageMissing(self.missing) from None
            if code == "NoSuchBucket" or (status == 404 and self.missing is None):
                reason = "the bucket does not exist"
            elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403",
                          "ExpiredToken", "InvalidToken") or status == 403:
                reason = "access to the bucket was denied"
            else:
                reason = f"the store answered {code or status}"
        elif isinstance(exc, BotoCoreError):
            reason = f"the store could not be reached ({type(exc).__name__})"
        else:
            return False
        # The bucket's name and the store's own code go to the log, not to the person who sees the message.
        log.warning("image store: could not %s %s: %s (%s)", self.doing, self.store.url, reason, exc)
        raise StorageUnavailable(f"Image storage is unavailable: {reason}.") from exc
