"""The set of services one process runs with. Built by app.py, handed to routes, UI and CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.accounts import Accounts
from services.db import Database
from services.settings import Settings


@dataclass
class Services:
    settings: Settings
    db: Database
    accounts: Accounts
    ledger: Any  # services.ledger.Ledger
    catalog: Any  # services.catalog.Catalog
    studio: Any  # services.studio.Studio
    pricing: Any  # services.pricing.Pricing
    billing: Any  # services.billing.Billing
    entitlements: Any = None  # services.entitlements.Entitlements
    admin: Any = None  # services.admin.Admin
    team: Any = None  # services.team.Team
    styles: Any = None  # services.studio.styles.MyStyles
    compare: Any = None  # services.studio.compare.Compare
