"""The gallery and the images: a user's stored generations, one of them, deleting one, and
opening one of its image files. Only ever the owner's: anyone else's is NotFound."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import func
from sqlmodel import col, select

from models.generation import Generation
from services.db import Database
from services.errors import Conflict, NotFound
from services.storage import VARIANTS, ImageMissing, ImageStore, media_type
from services.studio.types import GalleryPage

log = logging.getLogger("studio.generate")

ID_LENGTH = 32


class StudioGallery:
    """Studio's gallery methods (Studio inherits them)."""

    db: Database
    store: ImageStore
    clock: Callable[[], datetime]

    def gallery(self, *, user_id: int, page: int = 1, per_page: int = 24) -> GalleryPage:
        """The user's stored images, newest first."""
        per_page = min(max(int(per_page), 1), 100)
        page = max(int(page), 1)
        visible = (Generation.user_id == user_id, col(Generation.image_key).is_not(None),
                   col(Generation.deleted_at).is_(None), Generation.status != "failed")
        with self.db.session() as s:
            total = s.exec(select(func.count()).select_from(Generation).where(*visible)).one()
            items = s.exec(
                select(Generation).where(*visible)
                .order_by(col(Generation.created_at).desc(), col(Generation.id).desc())
                .offset((page - 1) * per_page).limit(per_page)
            ).all()
        return GalleryPage(items=list(items), page=page, per_page=per_page, total=total)

    def get(self, *, user_id: int, generation_id: str) -> Generation:
        """One of the user's generations; NotFound for anyone else's (or a deleted one)."""
        if not isinstance(generation_id, str) or len(generation_id) != ID_LENGTH:
            raise NotFound("Image not found.")
        with self.db.session() as s:
            generation = s.get(Generation, generation_id)
        if generation is None or generation.user_id != user_id or generation.deleted_at is not None:
            raise NotFound("Image not found.")
        return generation

    def delete(self, *, user_id: int, generation_id: str) -> None:
        generation = self.get(user_id=user_id, generation_id=generation_id)
        if generation.status == "pending" and generation.image_key is None:
            raise Conflict("This image is still being made. Try again when it is done.")
        with self.db.transaction() as s:
            row = s.get(Generation, generation_id)
            row.deleted_at = self.clock()
            s.add(row)
        self._delete_files(generation_id)

    def open_image(self, *, user_id: int, generation_id: str, variant: str) -> tuple[bytes | Path, str]:
        """(content or local path, media type) of the owner's image; NotFound otherwise."""
        if variant not in VARIANTS:
            raise NotFound("Image not found.")
        generation = self.get(user_id=user_id, generation_id=generation_id)
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
