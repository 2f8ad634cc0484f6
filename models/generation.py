"""The generation aggregate: one row per image job, the processes that run them, and moderation
rejections."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Column, Text, false
from sqlmodel import Field, SQLModel

from models.base import utcnow


class Generation(SQLModel, table=True):
    __tablename__ = "generations"

    id: str = Field(primary_key=True, max_length=64)  # the job id, also the hold's job_id
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    prompt: str = Field(sa_column=Column(Text, nullable=False))
    styled_prompt: str = Field(sa_column=Column(Text, nullable=False))
    style: str = Field(max_length=64)
    aspect_ratio: str = Field(max_length=16)
    resolution: str = Field(max_length=8)
    requested_width: int | None = None
    requested_height: int | None = None
    width: int | None = None  # delivered
    height: int | None = None
    engine: str = Field(max_length=32)  # "openai" | "offline"
    model: str = Field(max_length=64)
    cost: int
    status: str = Field(default="pending", max_length=16, index=True)  # pending | succeeded | failed
    error: str | None = Field(default=None, max_length=1000)
    image_key: str | None = Field(default=None, max_length=255)  # storage key of the originals
    timings: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    usage: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, index=True)
    finished_at: datetime | None = None
    deleted_at: datetime | None = Field(default=None, index=True)  # in the trash since (30 days, then purged)
    # The process start (Boot.id) that opened the job: if that process is gone while the job is
    # pending, another one settles the job's hold without waiting for the hold to expire.
    boot_id: str | None = Field(default=None, max_length=32, index=True)
    # Reference images the job was made from, in order (issue #11): [{"variant": "ref0.jpg", "name",
    # "width", "height", "source": "upload" | a generation id}], stored under `image_key`; None: none.
    reference_images: list | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    masked: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    # The images made together by one Compare or Variations request share it (shown as one batch).
    batch_id: str | None = Field(default=None, max_length=32, index=True)


class Boot(SQLModel, table=True):
    """One start of an app process. Its periodic sweep keeps `heartbeat_at` fresh; a clean
    shutdown sets `ended_at`. `host` names the pid namespace of a running kernel (hostname,
    kernel boot id, pid namespace): within one, `pid` tells whether the process still runs."""

    __tablename__ = "boots"

    id: str = Field(primary_key=True, max_length=32)
    host: str = Field(max_length=255, index=True)
    pid: int
    started_at: datetime = Field(default_factory=utcnow)
    heartbeat_at: datetime = Field(default_factory=utcnow, index=True)
    ended_at: datetime | None = None


class ModerationEvent(SQLModel, table=True):
    """A prompt refused by moderation (local blocklist, OpenAI moderation, or the provider)."""

    __tablename__ = "moderation_events"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    prompt: str = Field(sa_column=Column(Text, nullable=False))
    source: str = Field(max_length=32)  # blocklist | moderation | provider
    categories: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, index=True)
