"""`Accounts`, the one accounts service: its constructor, and the concerns it is made of."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

from models.base import utcnow
from services.accounts.api_keys import AccountApiKeys
from services.accounts.attempts import AccountAttempts
from services.accounts.credentials import PasswordHasher
from services.accounts.last_seen import AccountLastSeen, RecentlyTouched
from services.accounts.reset import AccountReset
from services.accounts.sessions import AccountSessions
from services.accounts.users import AccountUsers
from services.db import Database
from services.mailer import Mailer, Outbox
from services.settings import Settings


class Accounts(AccountUsers, AccountSessions, AccountReset, AccountApiKeys, AccountAttempts, AccountLastSeen):
    """Accounts service. `ledger` grants the trial credits at sign-up, in the same transaction.
    Reset links are mailed by `outbox`, a background worker, never on the request path."""

    def __init__(self, *, db: Database, ledger, settings: Settings, mailer: Mailer,
                 clock: Callable[[], datetime] = utcnow, outbox: Outbox | None = None,
                 hasher: PasswordHasher | None = None):
        self.db = db
        self.ledger = ledger
        self.settings = settings
        self.mailer = mailer
        self.clock = clock
        self.outbox = outbox or Outbox()
        self.hasher = hasher or PasswordHasher()
        self._touched = RecentlyTouched()
        # Unknown emails are still checked against a hash, so timing does not reveal which exist.
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
