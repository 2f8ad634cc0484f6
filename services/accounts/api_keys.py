"""API keys: created (the plaintext shown once), listed, revoked, and resolved to their owner."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select

from models.user import ApiKey, User
from services.accounts.credentials import token_hash
from services.accounts.last_seen import LAST_SEEN_EVERY, RecentlyTouched
from services.db import Database
from services.errors import NotFound

API_KEY_PREFIX = "sk_studio_"


class AccountApiKeys:
    """API keys (a mixin of `Accounts`, which sets these attributes)."""

    db: Database
    clock: Callable[[], datetime]
    _touched: RecentlyTouched

    def create_api_key(self, *, user_id: int, name: str = "") -> tuple[ApiKey, str]:
        """Returns the stored key row and the plaintext key, which is shown once."""
        name = (name or "").strip()[:100]
        plaintext = API_KEY_PREFIX + secrets.token_urlsafe(32)
        with self.db.transaction() as s:
            if s.get(User, user_id) is None:
                raise NotFound("No such user.")
            key = ApiKey(user_id=user_id, name=name, prefix=plaintext[:16], key_hash=token_hash(plaintext),
                         created_at=self.clock())
            s.add(key)
            s.flush()
            s.refresh(key)
        return key, plaintext

    def list_api_keys(self, *, user_id: int) -> list[ApiKey]:
        with self.db.session() as s:
            return list(s.exec(select(ApiKey).where(ApiKey.user_id == user_id)
                               .order_by(col(ApiKey.created_at).desc())).all())

    def revoke_api_key(self, *, user_id: int, key_id: int) -> None:
        with self.db.transaction() as s:
            key = s.get(ApiKey, key_id)
            if key is None or key.user_id != user_id:
                raise NotFound("No such API key.")
            if key.revoked_at is None:
                key.revoked_at = self.clock()
                s.add(key)

    def user_for_api_key(self, key: str | None) -> User | None:
        """The owner of an API key, or None. Reads; writes "last used" at most once a minute per key."""
        if not key or not key.startswith(API_KEY_PREFIX) or len(key) > 200:
            return None
        now = self.clock()
        with self.db.session() as s:
            row = s.exec(select(ApiKey, User).join(User, User.id == ApiKey.user_id)
                         .where(ApiKey.key_hash == token_hash(key))).first()
        if row is None:
            return None
        api_key, user = row
        if api_key.revoked_at is not None or user.disabled_at is not None:
            return None
        stale = api_key.last_used_at is None or now - api_key.last_used_at > LAST_SEEN_EVERY
        if stale and self._touched.claim(("api_key", api_key.id), now):
            self._touch(update(ApiKey).where(ApiKey.id == api_key.id).values(last_used_at=now))
        return user
