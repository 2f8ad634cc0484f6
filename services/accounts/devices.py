"""Signed-in devices: the user's active sessions with a short browser label, and signing them out.

Every call names the user it acts for (from the authenticated request): a session id of another
user is "not found", never revoked."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select

from models.user import UserSession
from services.accounts.credentials import token_hash
from services.db import Database
from services.errors import NotFound
from services.settings import Settings

# Order matters: Edge and Opera say "Chrome" too, Chrome says "Safari", Android says "Linux".
_BROWSERS = (("Edg/", "Edge"), ("EdgiOS", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"),
             ("FxiOS", "Firefox"), ("SamsungBrowser", "Samsung Internet"), ("CriOS", "Chrome"),
             ("Chromium/", "Chromium"), ("Chrome/", "Chrome"), ("Safari/", "Safari"),
             ("python-httpx", "API client"), ("python-requests", "API client"), ("curl/", "curl"))
_SYSTEMS = (("iPhone", "iPhone"), ("iPad", "iPad"), ("Android", "Android"), ("CrOS", "ChromeOS"),
            ("Windows", "Windows"), ("Mac OS X", "macOS"), ("Macintosh", "macOS"), ("Linux", "Linux"))


def device_label(user_agent: str | None) -> str:
    """A short, approximate label for a User-Agent: "Firefox on Linux", "Safari on iPhone"."""
    ua = user_agent or ""
    if not ua.strip():
        return "Unknown device"
    browser = next((name for needle, name in _BROWSERS if needle in ua), None)
    system = next((name for needle, name in _SYSTEMS if needle in ua), None)
    if browser and system:
        return f"{browser} on {system}"
    if browser or system:
        return browser or system
    first = re.split(r"[\s/;()]", ua.strip(), maxsplit=1)[0]
    return (first[:40] or "Unknown device")


@dataclass(frozen=True)
class DeviceSession:
    id: int
    device: str
    created_at: datetime
    last_seen_at: datetime
    current: bool


class AccountDevices:
    """Listing and revoking one's own sessions (a mixin of `Accounts`, which sets these attributes)."""

    db: Database
    settings: Settings
    clock: Callable[[], datetime]

    def _active(self, now: datetime):
        idle = timedelta(minutes=self.settings.session_idle_minutes)
        return (col(UserSession.revoked_at).is_(None), UserSession.expires_at > now,
                UserSession.last_seen_at > now - idle)

    def list_sessions(self, *, user_id: int, current_token: str | None = None) -> list[DeviceSession]:
        """The user's active sessions, most recently seen first; `current` marks the asking one."""
        now = self.clock()
        current = token_hash(current_token) if current_token else None
        with self.db.session() as s:
            rows = s.exec(select(UserSession).where(UserSession.user_id == user_id, *self._active(now))
                          .order_by(col(UserSession.last_seen_at).desc(), col(UserSession.id).desc())).all()
        return [DeviceSession(id=r.id, device=r.device or device_label(r.user_agent), created_at=r.created_at,
                              last_seen_at=r.last_seen_at, current=r.token_hash == current) for r in rows]

    def revoke_session(self, *, user_id: int, session_id: int) -> None:
        """Sign out one of the user's own sessions."""
        with self.db.transaction() as s:
            done = s.exec(update(UserSession).where(UserSession.id == session_id, UserSession.user_id == user_id,
                                                    col(UserSession.revoked_at).is_(None))
                          .values(revoked_at=self.clock()))
            if done.rowcount != 1:
                raise NotFound("No such signed-in device.")

    def revoke_other_sessions(self, *, user_id: int, current_token: str | None) -> int:
        """Sign out every session of the user but the asking one. Returns how many."""
        keep = token_hash(current_token) if current_token else ""
        with self.db.transaction() as s:
            done = s.exec(update(UserSession).where(UserSession.user_id == user_id, UserSession.token_hash != keep,
                                                    col(UserSession.revoked_at).is_(None))
                          .values(revoked_at=self.clock()))
            return done.rowcount
