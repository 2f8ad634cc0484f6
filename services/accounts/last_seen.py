"""The throttled "last seen" writes of sessions and API keys: at most one a minute each."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import datetime, timedelta

from sqlalchemy.exc import OperationalError

from services.db import Database

log = logging.getLogger("studio.accounts")

LAST_SEEN_EVERY = timedelta(minutes=1)


class RecentlyTouched:
    """Which sessions and API keys had their "last seen" written in the last minute, so a burst
    of requests writes it once. Bounded: the least recently written are forgotten first (which
    costs at most one more write for them)."""

    def __init__(self, *, size: int = 10_000, every: timedelta = LAST_SEEN_EVERY):
        self.size, self.every = size, every
        self._at: OrderedDict[tuple[str, int], datetime] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, key: tuple[str, int], now: datetime) -> bool:
        """True when the caller should write now (and nobody else should for a minute)."""
        with self._lock:
            last = self._at.get(key)
            if last is not None and now - last < self.every:
                return False
            self._at[key] = now
            self._at.move_to_end(key)
            while len(self._at) > self.size:
                self._at.popitem(last=False)
            return True


class AccountLastSeen:
    """Writing "last seen" (a mixin of `Accounts`, which sets these attributes)."""

    db: Database
    _touched: RecentlyTouched

    def _touch(self, statement) -> None:
        """Write "last seen" bookkeeping. Authentication does not fail because of it."""
        try:
            with self.db.transaction() as s:
                s.exec(statement)
        except OperationalError:
            log.warning("could not record last-seen time", exc_info=True)
