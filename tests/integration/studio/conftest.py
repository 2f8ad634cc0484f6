"""Fixtures for the studio: the fake OpenAI server, and a Studio wired to a real store and Ledger."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.catalog import Catalog
from services.credits import Ledger
from services.db import ROOT
from services.engines import OfflineEngine, OpenAIEngine
from services.moderation import LocalBlocklist, OpenAIModerator
from services.settings import load_settings
from services.storage import LocalImageStore
from services.studio import Studio
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog.load(ROOT / "assets")


@pytest.fixture
def fake_openai():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@dataclass
class Rig:
    """A Studio with its collaborators, and helpers to drive it."""

    studio: Studio
    ledger: Ledger
    store: LocalImageStore
    db: object
    make_user: object

    def user(self, credits: int = 100, role: str = "user") -> int:
        user = self.make_user(self.db, role=role)
        if credits:
            self.ledger.grant(user_id=user.id, amount=credits, kind="admin",
                              idempotency_key=f"test:{uuid.uuid4().hex}")
        return user.id

    def balance(self, user_id: int) -> int:
        return self.ledger.balance(user_id).total

    def generate(self, user_id: int, *, prompt: str = "a lighthouse at dusk", style: str = "photographic",
                 aspect_ratio: str = "1:1", resolution: str = "1K", is_admin: bool = False, progress=None):
        return asyncio.run(self.studio.generate(
            user_id=user_id, is_admin=is_admin, prompt=prompt, style=style, aspect_ratio=aspect_ratio,
            resolution=resolution, progress=progress))


@pytest.fixture
def make_rig(database, make_user, catalog, tmp_path):
    """make_rig(engine="offline"|"openai", fake=None, model=..., **settings) -> Rig."""

    def _make(engine: str = "offline", fake: FakeOpenAI | None = None, model: str = "gpt-image-2",
              moderation: bool | None = None, **overrides) -> Rig:
        settings = load_settings(env_file=None, DATA_DIR=str(tmp_path / "data"), OPENAI_API_KEY=None,
                                 **overrides)
        ledger = Ledger(database, hold_ttl_seconds=settings.hold_ttl_seconds)
        store = LocalImageStore(Path(settings.data_dir) / "images")
        if engine == "openai":
            image_engine = OpenAIEngine(api_key="sk-test", base_url=fake.url, timeout=settings.openai_timeout,
                                        model=model, quality="low")
        else:
            image_engine = OfflineEngine()
        use_moderation = fake is not None if moderation is None else moderation
        moderator = (OpenAIModerator(api_key="sk-test", base_url=fake.url, timeout=settings.openai_timeout)
                     if use_moderation else LocalBlocklist())
        studio = Studio(db=database, ledger=ledger, catalog=catalog, engine=image_engine, moderator=moderator,
                        store=store, settings=settings)
        return Rig(studio=studio, ledger=ledger, store=store, db=database, make_user=make_user)

    return _make
