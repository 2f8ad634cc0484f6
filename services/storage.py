"""Where images live: behind a small interface, on local disk (the default) or in an
S3-compatible object store (services/s3storage.py, `STORAGE_URL=s3://bucket/prefix`).

Each generation keeps three files under its key: the lossless PNG original, a full-resolution
lossy WebP for display, and a small WebP thumbnail.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

VARIANTS = {
    "png": ("original.png", "image/png"),
    "webp": ("display.webp", "image/webp"),
    "thumb": ("thumb.webp", "image/webp"),
}
# A generation's reference images (issue #11), stored under its key as cleaned: ref0.jpg … ref15.png.
MAX_REFERENCES = 16
for _i in range(MAX_REFERENCES):
    VARIANTS[f"ref{_i}.jpg"] = (f"reference-{_i:02d}.jpg", "image/jpeg")
    VARIANTS[f"ref{_i}.png"] = (f"reference-{_i:02d}.png", "image/png")
del _i


def reference_variant(index: int, extension: str) -> str:
    """The store variant of a generation's `index`-th reference image ("jpg" or "png")."""
    return f"ref{index}.{extension}"
KEY_RE = re.compile(r"^[0-9a-f]{32}$")


class ImageMissing(LookupError):
    """No such key or variant in the store."""


class ImageStore(Protocol):
    def save(self, key: str, files: Mapping[str, bytes]) -> None:
        """Store every variant of one image. When this returns, the files are durable."""
        ...

    def open(self, key: str, variant: str) -> bytes | Path:
        """The variant's content (or a local path to it). Raises ImageMissing."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove every variant; a missing key is not an error."""
        ...

    def list_keys(self) -> Iterator[tuple[str, datetime]]:
        """Every stored key, with when its newest file was written (for the orphan sweep)."""
        ...


def media_type(variant: str) -> str:
    return VARIANTS[variant][1]


def make_store(settings) -> ImageStore:
    """The store STORAGE_URL names: empty → local disk under DATA_DIR/images."""
    return store_for_url(settings.storage_url, settings)


def store_for_url(url: str | None, settings) -> ImageStore:
    """`s3://bucket/prefix` → S3ImageStore (S3_ENDPOINT_URL, AWS_*); `file:///path` or a path →
    LocalImageStore; None or empty → DATA_DIR/images."""
    if not url:
        return LocalImageStore(settings.data_dir / "images")
    if url.startswith("s3://"):
        from services.s3storage import S3ImageStore

        return S3ImageStore(url, endpoint_url=settings.s3_endpoint_url, region=settings.aws_region,
                            access_key_id=settings.aws_access_key_id,
                            secret_access_key=settings.aws_secret_access_key,
                            session_token=settings.aws_session_token)
    return LocalImageStore(url.removeprefix("file://"))


class LocalImageStore:
    """Files under `root/<key[:2]>/<key>/`, written atomically (temp file, fsync, rename)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _dir(self, key: str) -> Path:
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise ImageMissing(key)
        return self.root / key[:2] / key

    def save(self, key: str, files: Mapping[str, bytes]) -> None:
        unknown = set(files) - set(VARIANTS)
        if unknown:
            raise ValueError(f"unknown variants: {sorted(unknown)}")
        directory = self._dir(key)
        directory.mkdir(parents=True, exist_ok=True)
        for variant, data in files.items():
            target = directory / VARIANTS[variant][0]
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        _fsync_dir(directory)

    def path(self, key: str, variant: str) -> Path:
        if variant not in VARIANTS:
            raise ImageMissing(variant)
        path = self._dir(key) / VARIANTS[variant][0]
        if not path.is_file():
            raise ImageMissing(f"{key}/{variant}")
        return path

    def open(self, key: str, variant: str) -> Path:
        return self.path(key, variant)

    def put(self, key: str, variant: str, data: bytes) -> None:
        self.save(key, {variant: data})

    def checksum(self, key: str, variant: str) -> str | None:
        """The file's MD5 (hex, like an S3 ETag), or None when it is not there."""
        try:
            path = self.path(key, variant)
        except ImageMissing:
            return None
        digest = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def describe(self) -> str:
        return f"local disk ({self.root})"

    def read(self, key: str, variant: str) -> bytes:
        return self.path(key, variant).read_bytes()

    def exists(self, key: str) -> bool:
        try:
            return (self._dir(key) / VARIANTS["png"][0]).is_file()
        except ImageMissing:
            return False

    def delete(self, key: str) -> None:
        try:
            directory = self._dir(key)
        except ImageMissing:
            return
        shutil.rmtree(directory, ignore_errors=True)

    def list_keys(self) -> Iterator[tuple[str, datetime]]:
        """Every key directory (also one a crashed save left half written), with the newest
        modification time of the files in it (of the directory itself when it is empty)."""
        if not self.root.is_dir():
            return
        for prefix in sorted(self.root.iterdir()):
            if len(prefix.name) != 2 or not prefix.is_dir():
                continue
            for directory in sorted(prefix.iterdir()):
                if not KEY_RE.match(directory.name) or directory.name[:2] != prefix.name:
                    continue
                try:
                    times = [entry.stat().st_mtime for entry in directory.iterdir()]
                    newest = max(times) if times else directory.stat().st_mtime
                except FileNotFoundError:  # deleted while we looked
                    continue
                yield directory.name, datetime.fromtimestamp(newest, UTC)


def migrate(source, target) -> dict:
    """Copy every image from `source` to `target` (`python app.py storage migrate --to URL`).

    Resumable: an object the target already holds with the same MD5 is skipped. Each copied object
    is read back by checksum from the target; a mismatch counts as failed (and is named)."""
    summary = {"keys": 0, "objects": 0, "copied": 0, "skipped": 0, "failed": 0, "failures": []}
    for key, _ in source.list_keys():
        summary["keys"] += 1
        for variant in VARIANTS:
            have = source.checksum(key, variant)
            if have is None:
                continue
            summary["objects"] += 1
            if target.checksum(key, variant) == have:
                summary["skipped"] += 1
                continue
            data = source.read(key, variant)
            if hashlib.md5(data, usedforsecurity=False).hexdigest() != have:
                summary["failed"] += 1
                summary["failures"].append(f"{key}/{variant}: changed while being read")
                continue
            target.put(key, variant, data)
            if target.checksum(key, variant) != have:
                summary["failed"] += 1
                summary["failures"].append(f"{key}/{variant}: checksum differs after the copy")
                continue
            summary["copied"] += 1
    return summary


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
