"""The user aggregate: accounts, browser sessions, API keys, reset tokens, auth events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from models.base import utcnow


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)  # stored lower-cased
    # "" when the account has no password (it signs in with a provider). Not NULL: relaxing the column
    # would rebuild the users table on SQLite.
    password_hash: str = Field(max_length=512)
    role: str = Field(default="user", max_length=16)  # "user" | "admin"
    stripe_customer_id: str | None = Field(default=None, max_length=255, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    disabled_at: datetime | None = None
    email_verified_at: datetime | None = None  # a mailed link was opened, or a provider vouched for it
    language: str | None = Field(default=None, max_length=16)  # "en", "zh-CN" (services/i18n.py); None: not chosen

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class UserSession(SQLModel, table=True):
    """A browser sign-in. Only the SHA-256 of the cookie token is stored."""

    __tablename__ = "user_sessions"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime  # absolute expiry
    revoked_at: datetime | None = None
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=512)
    device: str | None = Field(default=None, max_length=100)  # "Firefox on Linux", parsed at sign-in


class ApiKey(SQLModel, table=True):
    """A bearer key. Shown once at creation; only its SHA-256 is stored."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    name: str = Field(default="", max_length=100)
    prefix: str = Field(max_length=16)  # the first characters, to recognise a key in the list
    key_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class PasswordReset(SQLModel, table=True):
    __tablename__ = "password_resets"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None


class AuthEvent(SQLModel, table=True):
    """Sign-in and sign-up attempts, for lockout and per-IP throttling across replicas."""

    __tablename__ = "auth_events"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32, index=True)  # signin_failed | signin_ok | signup | reset_request
    email: str | None = Field(default=None, max_length=320, index=True)
    ip: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)


class UserIdentity(SQLModel, table=True):
    """A provider account (OpenID Connect issuer + subject) linked to a user: a way to sign in."""

    __tablename__ = "user_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject", name="uq_user_identities_issuer_subject"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    provider: str = Field(max_length=64)  # the configured name ("google", "company", "huggingface")
    issuer: str = Field(max_length=255)
    subject: str = Field(max_length=255)
    email: str | None = Field(default=None, max_length=320)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None


class OidcLogin(SQLModel, table=True):
    """A sign-in started at a provider: the state, nonce and PKCE verifier stay on the server,
    bound to the browser that started it (the SHA-256 of a cookie). Used once, within minutes."""

    __tablename__ = "oidc_logins"

    id: int | None = Field(default=None, primary_key=True)
    state_hash: str = Field(max_length=64, unique=True, index=True)
    browser_hash: str = Field(max_length=64)
    provider: str = Field(max_length=64)
    nonce: str = Field(max_length=128)
    code_verifier: str = Field(max_length=128)
    next_url: str = Field(default="/", max_length=2000)
    link_user_id: int | None = Field(default=None, foreign_key="users.id", ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow, index=True)
    expires_at: datetime
    used_at: datetime | None = None


class EmailVerification(SQLModel, table=True):
    """A mailed verification link. Only the SHA-256 of its token is stored; used once."""

    __tablename__ = "email_verifications"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    email: str = Field(max_length=320)  # the address the link was sent to
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None


class TrialClaim(SQLModel, table=True):
    """Who has had the free trial: one row per normalised email and per provider subject, kept
    when the account is deleted (no foreign key), so a key is granted a trial once, ever."""

    __tablename__ = "trial_claims"

    id: int | None = Field(default=None, primary_key=True)
    claim_key: str = Field(max_length=600, unique=True, index=True)  # "email:…" or "oidc:<issuer> <subject>"
    user_id: int | None = None  # the account it went with (informative: may be deleted since)
    created_at: datetime = Field(default_factory=utcnow)


class Invite(SQLModel, table=True):
    """An invitation to sign up (SIGNUP_MODE=invite): single-use, expiring, optionally bound to an
    email. Only the SHA-256 of the link's token is stored."""

    __tablename__ = "invites"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    email: str | None = Field(default=None, max_length=320)  # bound to this address (lower-cased), or anyone
    created_by: int | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")  # None: the CLI
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None
    used_by: int | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
