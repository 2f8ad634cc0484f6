"""A user's own saved styles ("My styles")."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.base import utcnow


class SavedStyle(SQLModel, table=True):
    """A style one user saved: a prompt template with `{prompt}` once, optional default ratio and
    resolution. `name_key` (the name in lower case) is unique per user. `share_code` is set once the
    owner exports it: a random code that finds this style and nothing else of its owner."""

    __tablename__ = "saved_styles"
    __table_args__ = (UniqueConstraint("user_id", "name_key", name="uq_saved_styles_user_name"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=60)
    name_key: str = Field(max_length=60)
    template: str = Field(sa_column=Column(Text, nullable=False))
    base_style: str | None = Field(default=None, max_length=64)  # the built-in it started from (its look offline)
    aspect_ratio: str | None = Field(default=None, max_length=16)
    resolution: str | None = Field(default=None, max_length=8)
    share_code: str | None = Field(default=None, max_length=32, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
