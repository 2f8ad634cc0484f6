"""A Studio wired as app.py wires it (real store, Ledger, Billing and Entitlements, one settable clock), and
helpers to drive it. `catalog`, `clock`, `fake_openai` and `fake_stripe` come from tests/conftest.py."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from models.user import User
from services.billing import Billing, StripeGateway
from services.db import ROOT
from services.engines import OfflineEngine, OpenAIEngine
from services.entitlements import Entitlements
from services.ledger import Ledger
from services.moderation import LocalBlocklist, OpenAIModerator
from services.pricing import Pricing
from services.settings import load_settings
from services.storage import LocalImageStore
from services.studio import Studio
from tests.clock import Clock
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.stripe_server import FakeStripe


@dataclass
class Rig:
    """A Studio with its collaborators, and helpers to drive it."""

    studio: Studio
    ledger: Ledger
    billing: Billing
    entitlements: Entitlements
    store: LocalImageStore
    db: object
    make_user: object
    clock: Clock
    stripe: FakeStripe | None = None

    def user(self, credits: int = 100, role: str = "user") -> int:
        user = self.make_user(self.db, role=role)
        if credits:
            self.ledger.grant(user_id=user.id, amount=credits, kind="admin",
                              idempotency_key=f"test:{uuid.uuid4().hex}")
        return user.id

    def buy(self, user_id: int, product: str) -> None:
        """The user pays for `product` on (fake) Stripe and comes back: fulfilled as the app does."""
        assert self.stripe is not None, "make_rig(stripe=fake_stripe) to sell things"
        with self.db.session() as s:
            user = s.get(User, user_id)
        url = self.billing.create_checkout(user=user, product=product)
        session = self.stripe.complete_checkout(url.rsplit("/", 1)[1])
        assert self.billing.fulfil_checkout_session(session["id"], user_id=user_id).status == "granted"

    def balance(self, user_id: int) -> int:
        return self.ledger.balance(user_id).total

    def generate(self, user_id: int, *, prompt: str = "a lighthouse at dusk", style: str = "photographic",
                 aspect_ratio: str = "1:1", resolution: str = "1K", is_admin: bool = False, progress=None):
        return asyncio.run(self.studio.generate(
            user_id=user_id, is_admin=is_admin, prompt=prompt, style=style, aspect_ratio=aspect_ratio,
            resolution=resolution, progress=progress))


@pytest.fixture
def make_rig(database, make_user, catalog, clock, tmp_path):
    """make_rig(engine="offline"|"openai", fake=None, model=..., stripe=None, **settings) -> Rig."""

    def _make(engine: str = "offline", fake: FakeOpenAI | None = None, model: str = "gpt-image-2",
              moderation: bool | None = None, stripe: FakeStripe | None = None, **overrides) -> Rig:
        payments = ({"STRIPE_SECRET_KEY": "sk_test_rig", "STRIPE_API_BASE": stripe.url,
                     "PUBLIC_URL": "https://studio.example"} if stripe else {"STRIPE_SECRET_KEY": None})
        settings = load_settings(env_file=None, DATA_DIR=str(tmp_path / "data"), OPENAI_API_KEY=None,
                                 **payments, **overrides)
        ledger = Ledger(database, hold_ttl_seconds=settings.hold_ttl_seconds, clock=clock)
        billing = Billing(db=database, ledger=ledger, pricing=Pricing.load(ROOT / "assets"),
                          gateway=StripeGateway.from_settings(settings), settings=settings)
        if stripe is not None:
            billing.sync_catalog()
        entitlements = Entitlements(db=billing.db, pricing=billing.pricing, catalog=catalog)
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
                        store=store, settings=settings, entitlements=entitlements, clock=clock)
        return Rig(studio=studio, ledger=ledger, billing=billing, entitlements=entitlements, store=store,
                   db=database, make_user=make_user, clock=clock, stripe=stripe)

    return _make
