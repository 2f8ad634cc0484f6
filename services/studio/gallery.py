"""The gallery and the images: a user's stored generations (searched and filtered), one of them,
the trash (delete keeps the files for TRASH_DAYS, restore brings the image back, the sweep purges
it after that), opening an image file, and every original for the "Download all" zip.

Only ever the owner's: anyone else's image is NotFound. A trashed image is NotFound everywhere
except in the trash: its thumbnail and display WebP (`open_trashed_image`) and `restore`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, or_, update
from sqlmodel import col, select

from models.generation import Generation
from services.db import Database
from services.errors import Conflict, NotFound, ValidationFailed
from services.storage import VARIANTS, ImageMissing, ImageStore, media_type
from services.studio.types import GalleryPage

log = logging.getLogger("studio.gallery")

ID_LENGTH = 32
TRASH_DAYS = 30
MAX_QUERY_CHARS = 200
TRASH_VARIANTS = ("thumb", "webp")  # what the trash view may show; the PNG only after a restore
_BATCH = 200


@dataclass(frozen=True)
class Original:
    """One PNG original for the "Download all" zip."""

    generation_id: str
    name: str  # the file name inside the zip
    created_at: datetime
    content: bytes | Path


class StudioGallery:
    """Studio's gallery methods (Studio inherits them)."""

    db: Database
    store: ImageStore
    clock: Callable[[], datetime]

    # Reading ---------------------------------------------------------------------------------

    def gallery(self, *, user_id: int, page: int = 1, per_page: int = 24, query: str | None = None,
                style: str | None = None, resolution: str | None = None) -> GalleryPage:
        """The user's stored images, newest first; `query` matches words of the prompt (case
        does not matter), `style` / `resolution` keep only that style / resolution."""
        per_page = min(max(int(per_page), 1), 100)
        page = max(int(page), 1)
        where = [*_stored(user_id), col(Generation.deleted_at).is_(None), *_filters(query, style, resolution)]
        return self._page(where, page, per_page, (col(Generation.created_at).desc(), col(Generation.id).desc()))

    def trash(self, *, user_id: int, page: int = 1, per_page: int = 24) -> GalleryPage:
        """The user's deleted images that can still be restored, most recently deleted first."""
        per_page = min(max(int(per_page), 1), 100)
        page = max(int(page), 1)
        where = [*_stored(user_id), col(Generation.deleted_at).is_not(None),
                 col(Generation.deleted_at) > self.clock() - timedelta(days=TRASH_DAYS)]
        return self._page(where, page, per_page, (col(Generation.deleted_at).desc(), col(Generation.id).desc()))

    def _page(self, where: list, page: int, per_page: int, order: tuple) -> GalleryPage:
        with self.db.session() as s:
            total = s.exec(select(func.count()).select_from(Generation).where(*where)).one()
            items = s.exec(select(Generation).where(*where).order_by(*order)
                           .offset((page - 1) * per_page).limit(per_page)).all()
        return GalleryPage(items=list(items), page=page, per_page=per_page, total=total)

    def get(self, *, user_id: int, generation_id: str) -> Generation:
        """One of the user's generations; NotFound for anyone else's (or a deleted one)."""
        generation = self._own(user_id, generation_id)
        if generation.deleted_at is not None:
            raise NotFound("Image not found.")
        return generation

    def png_size(self, generation: Generation) -> int | None:
        """The size in bytes of the image's PNG original (None when it is not stored)."""
        if generation.image_key is None:
            return None
        try:
            content = self.store.open(generation.image_key, "png")
        except ImageMissing:
            return None
        try:
            return content.stat().st_size if isinstance(content, Path) else len(content)
        except OSError:
            return None

    def trash_expires_at(self, generation: Generation) -> datetime | None:
        """When a trashed image is purged for good."""
        return generation.deleted_at + timedelta(days=TRASH_DAYS) if generation.deleted_at else None

    # The trash -------------------------------------------------------------------------------

    def delete(self, *, user_id: int, generation_id: str) -> None:
        """Move the image to the trash: hidden everywhere, its files kept for TRASH_DAYS. No
        credit moves (the image was paid for when it was made)."""
        generation = self.get(user_id=user_id, generation_id=generation_id)
        if generation.status == "pending" and generation.image_key is None:
            raise Conflict("This image is still being made. Try again when it is done.")
        with self.db.transaction() as s:
            moved = s.execute(update(Generation).where(
                Generation.id == generation_id, Generation.user_id == user_id,
                col(Generation.deleted_at).is_(None)).values(deleted_at=self.clock())).rowcount
        if not moved:  # deleted meanwhile (another tab)
            raise NotFound("Image not found.")

    def restore(self, *, user_id: int, generation_id: str) -> Generation:
        """Bring an image back from the trash (NotFound when it is not in the owner's trash or
        was deleted more than TRASH_DAYS ago)."""
        generation = self._own(user_id, generation_id)
        cutoff = self.clock() - timedelta(days=TRASH_DAYS)
        if generation.deleted_at is None or generation.image_key is None or generation.status == "failed":
            raise NotFound("This image is not in your trash.")
        if generation.deleted_at <= cutoff:
            raise NotFound(f"This image was deleted more than {TRASH_DAYS} days ago and cannot be restored.")
        with self.db.transaction() as s:
            # Conditional: the sweep's purge deletes only rows still deleted before the cutoff.
            restored = s.execute(update(Generation).where(
                Generation.id == generation_id, Generation.user_id == user_id,
                col(Generation.deleted_at) > cutoff).values(deleted_at=None)).rowcount
        if not restored:
            raise NotFound("This image is not in your trash.")
        return self._own(user_id, generation_id)

    def purge_trash(self, *, now: datetime | None = None) -> int:
        """For the sweep: remove the generations deleted more than TRASH_DAYS ago, rows first (so
        a racing restore either wins or finds nothing), then their files. Ledger rows are left
        as they are: no credit moves. Returns how many generations were purged."""
        cutoff = (now or self.clock()) - timedelta(days=TRASH_DAYS)
        purged = 0
        while True:
            with self.db.session() as s:
                due = s.exec(select(Generation.id, Generation.image_key).where(
                    col(Generation.deleted_at).is_not(None), col(Generation.deleted_at) <= cutoff,
                    Generation.status != "pending").order_by(Generation.id).limit(_BATCH)).all()
            if not due:
                return purged
            ids = [gen_id for gen_id, _ in due]
            with self.db.transaction() as s:
                gone = set(s.execute(sql_delete(Generation).where(
                    col(Generation.id).in_(ids), col(Generation.deleted_at) <= cutoff)
                    .returning(Generation.id)).scalars().all())
            for gen_id, key in due:
                if gen_id in gone:
                    self._delete_files(gen_id)
                    if key and key != gen_id:
                        self._delete_files(key)
            purged += len(gone)
            if len(due) < _BATCH:
                return purged

    # Files -----------------------------------------------------------------------------------

    def open_image(self, *, user_id: int, generation_id: str, variant: str) -> tuple[bytes | Path, str]:
        """(content or local path, media type) of the owner's image; NotFound otherwise (also
        when it is in the trash)."""
        if variant not in VARIANTS:
            raise NotFound("Image not found.")
        return self._open(self.get(user_id=user_id, generation_id=generation_id), variant)

    def open_trashed_image(self, *, user_id: int, generation_id: str, variant: str) -> tuple[bytes | Path, str]:
        """The thumbnail or display WebP of an image in the owner's trash (the trash view's preview)."""
        if variant not in TRASH_VARIANTS:
            raise NotFound("Image not found.")
        generation = self._own(user_id, generation_id)
        if generation.deleted_at is None:
            raise NotFound("Image not found.")
        return self._open(generation, variant)

    def originals(self, *, user_id: int) -> Iterator[Original]:
        """Every PNG original of the user's gallery (not the trash), oldest first, read in
        batches: for a zip written while it is sent."""
        after: tuple[datetime, str] | None = None
        while True:
            where = [*_stored(user_id), col(Generation.deleted_at).is_(None)]
            if after is not None:
                where.append(or_(col(Generation.created_at) > after[0],
                                 (col(Generation.created_at) == after[0]) & (col(Generation.id) > after[1])))
            with self.db.session() as s:
                rows = s.exec(select(Generation.id, Generation.image_key, Generation.created_at).where(*where)
                              .order_by(col(Generation.created_at), col(Generation.id)).limit(_BATCH)).all()
            for gen_id, key, created_at in rows:
                try:
                    content = self.store.open(key, "png")
                except ImageMissing:
                    log.warning("download all: the original of %s is missing", gen_id)
                    continue
                yield Original(generation_id=gen_id, created_at=created_at, content=content,
                               name=f"{created_at:%Y-%m-%d_%H%M%S}_{gen_id[:12]}.png")
            if len(rows) < _BATCH:
                return
            after = (rows[-1][2], rows[-1][0])

    def _own(self, user_id: int, generation_id: str) -> Generation:
        if not isinstance(generation_id, str) or len(generation_id) != ID_LENGTH:
            raise NotFound("Image not found.")
        with self.db.session() as s:
            generation = s.get(Generation, generation_id)
        if generation is None or generation.user_id != user_id:
            raise NotFound("Image not found.")
        return generation

    def _open(self, generation: Generation, variant: str) -> tuple[bytes | Path, str]:
        if generation.image_key is None or generation.status == "failed":
            raise NotFound("Image not found.")
        try:
            return self.store.open(generation.image_key, variant), media_type(variant)
        except ImageMissing:
            raise NotFound("Image not found.") from None

    def image_link(self, *, user_id: int, generation_id: str, variant: str, filename: str | None = None,
                   expires_seconds: int = 300) -> str | None:
        """A short-lived presigned URL to the owner's image when the store can sign one (S3), else
        None. The same ownership checks as open_image come first; NotFound otherwise."""
        if variant not in VARIANTS:
            raise NotFound("Image not found.")
        generation = self.get(user_id=user_id, generation_id=generation_id)
        if generation.image_key is None or generation.status == "failed":
            raise NotFound("Image not found.")
        sign = getattr(self.store, "presigned_url", None)
        if sign is None:
            return None
        return sign(generation.image_key, variant, expires_seconds=expires_seconds, filename=filename)

    def _delete_files(self, gen_id: str) -> None:
        try:
            self.store.delete(gen_id)
        except Exception:
            log.exception("could not delete the files of generation %s", gen_id)


def _stored(user_id: int) -> tuple:
    return (Generation.user_id == user_id, col(Generation.image_key).is_not(None), Generation.status != "failed")


def _filters(query: str | None, style: str | None, resolution: str | None) -> list:
    where = []
    if query is not None and not isinstance(query, str):
        raise ValidationFailed("Search for some words of a prompt.")
    words = (query or "").strip().lower().split()
    if len(" ".join(words)) > MAX_QUERY_CHARS:
        raise ValidationFailed(f"Search for at most {MAX_QUERY_CHARS} characters.")
    for word in words[:10]:
        where.append(func.lower(Generation.prompt).contains(word, autoescape=True))
    if style:
        where.append(Generation.style == str(style))
    if resolution:
        where.append(Generation.resolution == str(resolution))
    return where
