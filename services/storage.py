"""Where images live: behind a small interface, on local disk now (an S3-compatible store later).

Each generation keeps three files under its key: the lossless PNG original, a full-resolution
lossy WebP for display, and a small WebP thumbnail.
"""

from __future__ import annotations

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
