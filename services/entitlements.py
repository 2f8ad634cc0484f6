"""Entitlements: what a user's plan or purchases open up. Both the Generate tab and the Studio's
flow ask here, so the gate and its message are the same wherever a resolution is picked."""

from __future__ import annotations

import logging

from sqlmodel import func, select

from models.payment import Fulfillment
from services.billing.plans import current_plan
from services.catalog import Catalog
from services.db import Database
from services.pricing import Pricing

log = logging.getLogger(__name__)


class Entitlements:
    """Plan gating of resolutions, read from the store (subscriptions and fulfilled purchases)."""

    def __init__(self, *, db: Database, pricing: Pricing, catalog: Catalog):
        self.db = db
        self.pricing = pricing
        self.catalog = catalog

    def resolution_block(self, *, user_id: int, is_admin: bool, resolution: str) -> str | None:
        """Why this user may not pick this resolution, or None when they may."""
        res = self.catalog.resolution(resolution)
        if not res.requires or is_admin or self.can_use_resolution(user_id, res.requires):
            return None
        if res.requires == "paid":
            return f"{res.key} images need a paid plan. See the Pricing tab."
        return f"{res.key} images need a plan or a credit pack. See the Pricing tab."

    def can_use_resolution(self, user_id: int, requirement: str | None) -> bool:
        """Plan gating: None → everyone; "paid" → a live plan; "purchase" → a plan or any purchase."""
        if not requirement:
            return True
        if requirement == "paid":
            return self._has_plan(user_id)
        if requirement == "purchase":
            if self._has_plan(user_id):
                return True
            with self.db.session() as s:
                bought = s.exec(
                    select(func.count()).select_from(Fulfillment)
                    .where(Fulfillment.user_id == user_id, Fulfillment.kind.in_(("pack", "subscription")))
                ).one()
            return bought > 0
        log.warning("unknown resolution requirement %r: refused", requirement)
        return False

    def _has_plan(self, user_id: int) -> bool:
        return current_plan(db=self.db, pricing=self.pricing, user_id=user_id) is not None
