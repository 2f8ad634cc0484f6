"""Small factories for tests."""

from __future__ import annotations

import itertools
import uuid

from models.user import User
from services.db import Database

_counter = itertools.count(1)
# A valid argon2id hash of a random password nobody knows: factory users cannot sign in.
_UNUSABLE_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"


def random_email() -> str:
    return f"user{next(_counter)}-{uuid.uuid4().hex[:8]}@example.com"


def make_user(db: Database, email: str | None = None, role: str = "user") -> User:
    with db.transaction() as s:
        user = User(email=(email or random_email()).lower(), password_hash=_UNUSABLE_HASH, role=role)
        s.add(user)
        s.flush()
        s.refresh(user)
    return user
