"""What a user presents: email and password checks, the bounded argon2 hasher, and the SHA-256
under which tokens (session cookies, reset links, API keys) are stored: only the hash is kept."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pwdlib import PasswordHash

from services.errors import ValidationFailed

PASSWORD_MIN, PASSWORD_MAX = 8, 1024
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    if len(email) > 320 or not _EMAIL.match(email):
        raise ValidationFailed("Enter a valid email address.", key="error.invalid_email")
    return email


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < PASSWORD_MIN:
        raise ValidationFailed(f"Use a password of at least {PASSWORD_MIN} characters.", key="error.password_too_short",
                               min=PASSWORD_MIN)
    if len(password) > PASSWORD_MAX:
        raise ValidationFailed(f"Use a password of at most {PASSWORD_MAX} characters.", key="error.password_too_long",
                               max=PASSWORD_MAX)
    return password


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class PasswordHasher:
    """argon2id (pwdlib's recommended parameters), with at most `slots` hashes or verifications
    running at once in this process: each takes ~64 MiB and a core for ~150 ms, so a burst
    waits here instead of growing memory. `runs` counts the hashes started."""

    def __init__(self, slots: int | None = None):
        self._hasher = PasswordHash.recommended()
        self.size = slots or min(_cores(), 8)
        self.slots = threading.BoundedSemaphore(self.size)
        self._runs_lock = threading.Lock()
        self.runs = 0

    @contextmanager
    def _slot(self) -> Iterator[None]:
        with self.slots:
            with self._runs_lock:
                self.runs += 1
            yield

    def hash(self, password: str) -> str:
        with self._slot():
            return self._hasher.hash(password)

    def verify(self, password: str, hashed: str) -> bool:
        with self._slot():
            return self._hasher.verify(password, hashed)

    def verify_and_update(self, password: str, hashed: str) -> tuple[bool, str | None]:
        with self._slot():
            return self._hasher.verify_and_update(password, hashed)
