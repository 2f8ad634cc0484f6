"""Entitlements: what a user may use beyond credits. Today, the resolutions a catalog gates behind
a live plan ("paid") or any purchase ("purchase"); admins pass every gate.

(Minimal version for the studio split: it asks Billing whether a requirement is met.)
"""

from __future__ import annotations

from services.catalog import Catalog


class Entitlements:
    def __init__(self, *, billing, catalog: Catalog):
        self.billing = billing
        self.catalog = catalog

    def resolution_block(self, *, user_id: int, is_admin: bool, resolution: str) -> str | None:
        """Why this user may not pick this resolution, or None when they may."""
        res = self.catalog.resolution(resolution)
        if not res.requires or is_admin or self.billing.can_use_resolution(user_id, res.requires):
            return None
        if res.requires == "paid":
            return f"{res.key} images need a paid plan. See the Pricing tab."
        return f"{res.key} images need a plan or a credit pack. See the Pricing tab."
