"""Owner-checked downloads beside /images (ui/web.py): every PNG original of the signed-in user's
gallery as one zip, written while it is sent; and the previews of images in the user's trash.

`GET /images/download-all.zip`  the gallery's PNG originals at full size (not the trash)
`GET /trash/{id}/{thumb|webp}/{name}`  a trashed image's preview (the /images route refuses it)
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from services.container import Services
from ui.common import image_name
from ui.web import authenticate, owner_checked

DOWNLOAD_ALL = "/images/download-all.zip"
CHUNK = 256 * 1024


def trash_url(generation_id: str, variant: str) -> str:
    """The owner-checked URL of a trashed image's preview (thumb or webp)."""
    return f"/trash/{generation_id}/{variant}/{image_name(generation_id, variant)}"


def build_router(services: Services) -> APIRouter:
    router = APIRouter()

    @router.get(DOWNLOAD_ALL, include_in_schema=False)
    def download_all(request: Request):
        user = authenticate(services, request)
        if user is None:
            return JSONResponse({"detail": "Not authenticated"}, status_code=401)
        originals = services.studio.originals(user_id=user.id)
        name = f"image-studio-{datetime.now(UTC):%Y-%m-%d}.zip"
        return StreamingResponse(zip_stream(originals), media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff"})

    @router.get("/trash/{generation_id}/{variant}/{name}", include_in_schema=False)
    def trashed_preview(generation_id: str, variant: str, name: str, request: Request):
        return owner_checked(
            services, request, lambda user: services.studio.open_trashed_image(
                user_id=user.id, generation_id=generation_id, variant=variant),
            name=name, expected_name=image_name(generation_id, variant),
            headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"})

    return router


class _Pipe:
    """A write-only file for zipfile: it keeps only what was written since the last `take()`.
    Without tell/seek, zipfile writes each entry's sizes after its data (a data descriptor), so
    the archive never needs to be in memory or on disk at once."""

    def __init__(self):
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def zip_stream(originals) -> Iterator[bytes]:
    """The zip of `originals` (services.studio.gallery.Original), piece by piece: PNGs are stored
    as they are (already compressed). Runs in a worker thread (StreamingResponse iterates a plain
    generator off the event loop)."""
    for piece in _zip_pieces(originals):
        if piece:
            yield piece


def _zip_pieces(originals) -> Iterator[bytes]:
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for original in originals:
            info = zipfile.ZipInfo(original.name, date_time=original.created_at.timetuple()[:6])
            info.compress_type = zipfile.ZIP_STORED
            with archive.open(info, mode="w", force_zip64=True) as entry:
                if isinstance(original.content, Path):
                    with original.content.open("rb") as source:
                        while chunk := source.read(CHUNK):
                            entry.write(chunk)
                            yield pipe.take()
                else:
                    entry.write(original.content)
            yield pipe.take()
    yield pipe.take()
