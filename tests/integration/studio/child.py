"""The Studio that the crash tests' child processes run (and kill mid-generation): wired as
app.py wires it, on the given database, with the fake OpenAI server as its engine."""

from __future__ import annotations

from pathlib import Path

from services.billing import Billing
from services.catalog import Catalog
from services.db import ROOT, Database
from services.engines import OpenAIEngine
from services.entitlements import Entitlements
from services.ledger import Ledger
from services.moderation import LocalBlocklist
from services.pricing import Pricing
from services.settings import load_settings
from services.storage import LocalImageStore
from services.studio import Studio


def child_studio(db: Database, *, data_dir: str, base_url: str) -> Studio:
    settings = load_settings(env_file=None, DATA_DIR=data_dir, OPENAI_API_KEY=None)
    ledger, catalog = Ledger(db), Catalog.load(ROOT / "assets")
    billing = Billing(db=db, ledger=ledger, pricing=Pricing.load(ROOT / "assets"), gateway=None, settings=settings)
    return Studio(db=db, ledger=ledger, catalog=catalog,
                  engine=OpenAIEngine(api_key="sk-test", base_url=base_url, timeout=60),
                  moderator=LocalBlocklist(), store=LocalImageStore(Path(data_dir) / "images"),
                  settings=settings, entitlements=Entitlements(db=billing.db, pricing=billing.pricing, catalog=catalog))
