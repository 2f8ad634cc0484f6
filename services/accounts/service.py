"""`Accounts`, the one accounts service: its constructor, and the concerns it is made of."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from models.base import utcnow
from services.accounts.api_keys import AccountApiKeys
from services.accounts.attempts import AccountAttempts
from services.accounts.credentials import PasswordHasher
from services.accounts.devices import AccountDevices
from services.accounts.last_seen import AccountLastSeen, RecentlyTouched
from services.accounts.oidc import AccountOidc
from services.accounts.reset import AccountReset
from services.accounts.sessions import AccountSessions
from services.accounts.trials import load_blocked_domains
from services.accounts.users import AccountUsers
from services.accounts.verification import AccountVerification
from services.db import Database
from services.mailer import Mailer, Outbox
from services.settings import Settings

BLOCKED_DOMAINS_FILE = Path(__file__).resolve().parents[2] / "assets" / "blocked_email_domains.txt"


class Accounts(AccountUsers, AccountSessions, AccountReset, AccountApiKeys, AccountAttempts, AccountLastSeen,
               AccountOidc, AccountVerification, AccountDevices):
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
        self.blocked_domains = load_blocked_domains(BLOCKED_DOMAINS_FILE)
        self._init_oidc()
