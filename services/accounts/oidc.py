"""Signing in with OpenID Connect providers (Google, the company's SSO, Hugging Face).

The authorization code flow with PKCE (S256): `start_oidc` keeps the state, the nonce and the
code verifier on the server (table `oidc_logins`), bound to the browser that started the sign-in
(the SHA-256 of a random cookie), for ten minutes; `finish_oidc` consumes that row once, exchanges
the code, and accepts the ID token only with a valid signature (the provider's JWKS) and the right
`iss`, `aud`, `exp` and `nonce`. Nothing the browser sends is trusted beyond picking the row.

Accounts: a known (issuer, subject) signs its user in; otherwise an account with the same email is
linked only when the provider says `email_verified`; otherwise a new account is created. A user
may have a password, providers, or both; unlinking never removes the last way in.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.errors import BadSignatureError, ExpiredTokenError, JoseError
from joserfc.jwk import KeySet
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select

from models.user import AuthEvent, OidcLogin, User, UserIdentity
from services.accounts.attempts import SIGNIN_IP_WINDOW, SIGNUP_IP_WINDOW, SIGNUP_KINDS, SIGNUP_OK
from services.accounts.credentials import normalize_email, token_hash
from services.accounts.sessions import SignIn
from services.accounts.trials import claim_trial, email_claim_key, subject_claim_key
from services.db import Database
from services.errors import AuthError, Conflict, NotFound, ValidationFailed
from services.settings import OidcProviderConfig, Settings
from services.team import SignupRefused, check_new_account, consume_invite, grant_allowance

log = logging.getLogger("studio.accounts")

LOGIN_TTL = timedelta(minutes=10)
OIDC_START = "oidc_start"  # AuthEvent kind: a provider sign-in started (throttled per IP)
METADATA_TTL_SECONDS = 3600
# Asymmetric signatures only: never "none", never an HMAC keyed with the client secret.
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
CLOCK_SKEW_SECONDS = 60


class OidcRefused(AuthError):
    """A provider sign-in that is refused; the message says why, in the user's words."""


@dataclass(frozen=True)
class ProviderIdentity:
    issuer: str
    subject: str
    email: str | None
    email_verified: bool


@dataclass(frozen=True)
class OidcStart:
    authorize_url: str
    browser_token: str  # the cookie binding this sign-in to the browser


@dataclass(frozen=True)
class OidcOutcome:
    next_url: str
    sign_in: SignIn | None = None  # a sign-in; None when a provider was linked to the signed-in user
    linked: str | None = None  # the provider's label, when linked
    trial_granted: int = 0


class OidcProvider:
    """One provider behind a small interface: discovery (cached), the authorization URL, the code
    exchange and the ID token check. Uses authlib's OAuth2 client and joserfc."""

    def __init__(self, config: OidcProviderConfig, *, timeout: float = 10.0,
                 now: Callable[[], float] = time.time):
        self.config = config
        self.timeout = timeout
        self.now = now
        self._lock = threading.Lock()
        self._metadata: tuple[float, dict] | None = None
        self._keys: KeySet | None = None

    def _client(self, redirect_uri: str, meta: dict | None = None) -> OAuth2Client:
        return OAuth2Client(client_id=self.config.client_id, client_secret=self.config.client_secret,
                            scope=self.config.scope, redirect_uri=redirect_uri, code_challenge_method="S256",
                            token_endpoint_auth_method=self._auth_method(meta or {}), timeout=self.timeout)

    def _auth_method(self, meta: dict) -> str:
        """How the client authenticates at the token endpoint: none without a secret (PKCE alone),
        else HTTP Basic (the default of the spec) unless the provider only accepts the form field."""
        if not self.config.client_secret:
            return "none"
        methods = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        return "client_secret_post" if "client_secret_basic" not in methods and "client_secret_post" in methods \
            else "client_secret_basic"

    def metadata(self) -> dict:
        """The issuer's /.well-known/openid-configuration, fetched at most once an hour."""
        with self._lock:
            if self._metadata and self.now() - self._metadata[0] < METADATA_TTL_SECONDS:
                return self._metadata[1]
        url = self.config.issuer + "/.well-known/openid-configuration"
        try:
            with self._client("") as client:
                response = client.request("GET", url, withhold_token=True)
            response.raise_for_status()
            data = response.json()
        except Exception as err:  # noqa: BLE001 - any failure to reach the provider
            log.warning("OIDC discovery failed for %s: %s", self.config.name, err)
            raise OidcRefused(f"{self.config.label} cannot be reached right now. Try again later.",
                              key="error.oidc.unreachable", provider=self.config.label) from None
        if not isinstance(data, dict) or data.get("issuer", "").rstrip("/") != self.config.issuer:
            log.warning("OIDC discovery for %s names another issuer: %r", self.config.name, data.get("issuer"))
            raise OidcRefused(f"{self.config.label} is not set up correctly on this instance.",
                              key="error.oidc.misconfigured", provider=self.config.label)
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(data.get(key), str):
                raise OidcRefused(f"{self.config.label} is not set up correctly on this instance.",
                                  key="error.oidc.misconfigured", provider=self.config.label)
        with self._lock:
            self._metadata = (self.now(), data)
        return data

    def authorize_url(self, *, redirect_uri: str, state: str, nonce: str, code_verifier: str) -> str:
        meta = self.metadata()
        with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(meta["authorization_endpoint"], state=state,
                                                     code_verifier=code_verifier, nonce=nonce)
        return url

    def identity(self, *, code: str, redirect_uri: str, code_verifier: str, nonce: str) -> ProviderIdentity:
        """Exchange the code (with the PKCE verifier) and check the ID token."""
        meta = self.metadata()
        try:
            with self._client(redirect_uri, meta) as client:
                token = client.fetch_token(meta["token_endpoint"], grant_type="authorization_code", code=code,
                                           code_verifier=code_verifier, redirect_uri=redirect_uri)
        except AuthlibBaseError as err:
            log.info("OIDC token exchange refused by %s: %s", self.config.name, err)
            raise OidcRefused(f"{self.config.label} did not accept this sign-in (the code was used or has "
                              "expired). Please start again.", key="error.oidc.code_refused",
                              provider=self.config.label) from None
        except Exception as err:  # noqa: BLE001 - network or protocol failure
            log.warning("OIDC token exchange failed for %s: %s", self.config.name, err)
            raise OidcRefused(f"{self.config.label} cannot be reached right now. Try again later.",
                              key="error.oidc.unreachable", provider=self.config.label) from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise OidcRefused(f"{self.config.label} did not send an ID token.", key="error.oidc.no_id_token",
                              provider=self.config.label)
        claims = self._verified_claims(id_token, meta, nonce)
        email, verified = claims.get("email"), claims.get("email_verified")
        if not email and meta.get("userinfo_endpoint") and token.get("access_token"):
            info = self._userinfo(meta["userinfo_endpoint"], token)
            if info.get("sub") == claims["sub"]:
                email, verified = info.get("email"), info.get("email_verified")
        return ProviderIdentity(issuer=claims["iss"], subject=claims["sub"],
                                email=email if isinstance(email, str) and email else None,
                                email_verified=verified is True or verified == "true")

    def _verified_claims(self, id_token: str, meta: dict, nonce: str) -> dict[str, Any]:
        algorithms = [a for a in meta.get("id_token_signing_alg_values_supported") or ["RS256"]
                      if a in SIGNING_ALGORITHMS] or ["RS256"]
        try:
            try:
                decoded = jwt.decode(id_token, self._key_set(meta), algorithms=algorithms)
            except (BadSignatureError, ValueError):
                # The provider may have rotated its keys since we fetched them: fetch once more.
                decoded = jwt.decode(id_token, self._key_set(meta, refresh=True), algorithms=algorithms)
            claims = decoded.claims
            jwt.JWTClaimsRegistry(
                now=int(self.now()), leeway=CLOCK_SKEW_SECONDS,
                iss={"essential": True, "value": meta["issuer"]},
                aud={"essential": True, "value": self.config.client_id},
                sub={"essential": True}, exp={"essential": True}, iat={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(claims)
        except ExpiredTokenError:
            raise OidcRefused(f"The sign-in from {self.config.label} has expired. Please start again.",
                              key="error.oidc.expired", provider=self.config.label) from None
        except (JoseError, ValueError, KeyError) as err:
            log.warning("ID token from %s refused: %s", self.config.name, err)
            raise OidcRefused(f"The sign-in from {self.config.label} could not be verified "
                              f"({_reason(err)}). Please start again.", key="error.oidc.unverified",
                              provider=self.config.label, reason=_reason(err)) from None
        audience = claims.get("aud")
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != self.config.client_id:
            raise OidcRefused(f"The sign-in from {self.config.label} could not be verified (audience).",
                              key="error.oidc.unverified", provider=self.config.label, reason="audience")
        return claims

    def _key_set(self, meta: dict, *, refresh: bool = False) -> KeySet:
        with self._lock:
            if self._keys is not None and not refresh:
                return self._keys
        try:
            with self._client("") as client:
                response = client.request("GET", meta["jwks_uri"], withhold_token=True)
            response.raise_for_status()
            keys = KeySet.import_key_set(response.json())
        except Exception as err:  # noqa: BLE001
            log.warning("JWKS of %s unavailable: %s", self.config.name, err)
            raise OidcRefused(f"{self.config.label} cannot be reached right now. Try again later.",
                              key="error.oidc.unreachable", provider=self.config.label) from None
        with self._lock:
            self._keys = keys
        return keys

    def _userinfo(self, url: str, token: dict) -> dict:
        try:
            with self._client("") as client:
                client.token = token
                response = client.request("GET", url)
            response.raise_for_status()
            data = response.json()
            return data if isinstance(data, dict) else {}
        except Exception as err:  # noqa: BLE001 - the email is then missing, which is refused later
            log.warning("userinfo of %s unavailable: %s", self.config.name, err)
            return {}


def _reason(err: Exception) -> str:
    text = str(err).lower()
    for word, reason in (("signature", "bad signature"), ("iss", "wrong issuer"), ("aud", "wrong audience"),
                         ("nonce", "wrong nonce"), ("exp", "expired")):
        if word in text or word in type(err).__name__.lower():
            return reason
    return "invalid token"


class AccountOidc:
    """Provider sign-in and linking (a mixin of `Accounts`, which sets these attributes)."""

    db: Database
    settings: Settings
    ledger: Any
    clock: Callable[[], datetime]
    oidc: dict[str, OidcProvider]

    def _init_oidc(self) -> None:
        self.oidc = {c.name: OidcProvider(c, now=lambda: self.clock().timestamp())
                     for c in self.settings.oidc_provider_configs()}

    def oidc_providers(self) -> list[OidcProviderConfig]:
        return [p.config for p in self.oidc.values()]

    def _provider(self, name: str) -> OidcProvider:
        provider = self.oidc.get(name)
        if provider is None:
            raise NotFound("There is no such sign-in provider on this instance.", key="error.oidc.unknown_provider")
        return provider

    def oidc_redirect_uri(self, name: str) -> str:
        config = self._provider(name).config
        return config.redirect_uri or f"{self.settings.base_url}/auth/oidc/{config.name}/callback"

    def link_proof(self, session_token: str | None) -> str:
        """What the Account tab's "Link" form carries: an HMAC of the session token (another site
        cannot read it, so it cannot start a link in the user's name)."""
        if not session_token:
            return ""
        key = self.settings.ensure_secret_key().encode()
        return hmac.new(key, b"link-provider:" + session_token.encode(), hashlib.sha256).hexdigest()

    def start_oidc(self, *, provider: str, next_url: str = "/", browser_token: str | None = None,
                   link_user_id: int | None = None, ip: str | None = None) -> OidcStart:
        """Record a sign-in in progress and return the provider's authorization URL. The state,
        nonce and PKCE verifier are random and stay here; the browser gets a binding cookie.
        Throttled per IP like password sign-ins."""
        p = self._provider(provider)
        self._admit(kind=OIDC_START, email=None, ip=ip, counted=(OIDC_START,), window=SIGNIN_IP_WINDOW,
                    limit=self.settings.signin_rate_per_ip_per_minute,
                    refusal="Too many sign-in attempts from your network. Wait a minute and try again.")
        if not browser_token or len(browser_token) < 32 or len(browser_token) > 100:
            browser_token = secrets.token_urlsafe(32)
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
        url = p.authorize_url(redirect_uri=self.oidc_redirect_uri(provider), state=state, nonce=nonce,
                              code_verifier=verifier)
        now = self.clock()
        with self.db.transaction() as s:
            s.exec(delete(OidcLogin).where(col(OidcLogin.expires_at) < now - timedelta(days=1)))
            s.add(OidcLogin(state_hash=token_hash(state), browser_hash=token_hash(browser_token), provider=provider,
                            nonce=nonce, code_verifier=verifier, next_url=next_url[:2000], link_user_id=link_user_id,
                            created_at=now, expires_at=now + LOGIN_TTL))
        return OidcStart(authorize_url=url, browser_token=browser_token)

    def finish_oidc(self, *, provider: str, state: str | None, code: str | None, error: str | None = None,
                    browser_token: str | None, current_user_id: int | None = None, ip: str | None = None,
                    user_agent: str | None = None) -> OidcOutcome:
        """The provider's redirect back. Refused (OidcRefused, nothing changed, no session) unless
        the state belongs to this browser and is unused and fresh, and the ID token checks out."""
        p = self._provider(provider)
        label = p.config.label
        expired = OidcRefused(f"This sign-in with {label} has expired or was not started in this browser. "
                              "Please start again.")
        if not state or not browser_token or len(state) > 200 or len(browser_token) > 200:
            raise expired
        now = self.clock()
        with self.db.transaction() as s:
            used = s.exec(update(OidcLogin).where(
                OidcLogin.state_hash == token_hash(state), OidcLogin.browser_hash == token_hash(browser_token),
                OidcLogin.provider == provider, col(OidcLogin.used_at).is_(None), OidcLogin.expires_at > now,
            ).values(used_at=now))
            if used.rowcount != 1:
                raise expired
            login = s.exec(select(OidcLogin).where(OidcLogin.state_hash == token_hash(state))).one()
        if error:
            raise OidcRefused(f"The sign-in with {label} was cancelled.", key="error.oidc.cancelled", provider=label)
        if not code or len(code) > 2000:
            raise expired
        identity = p.identity(code=code, redirect_uri=self.oidc_redirect_uri(provider),
                              code_verifier=login.code_verifier, nonce=login.nonce)
        if login.link_user_id is not None:
            if current_user_id != login.link_user_id:
                raise OidcRefused("Sign in to the account you are linking first.", key="error.oidc.link_sign_in")
            granted = self._link_identity(login.link_user_id, provider, identity)
            return OidcOutcome(next_url=login.next_url, linked=label, trial_granted=granted)
        user, granted = self._user_for_identity(provider, label, identity, ip=ip)
        return OidcOutcome(next_url=login.next_url, trial_granted=granted,
                           sign_in=self._open_session(user, ip=ip, user_agent=user_agent))

    # Accounts behind identities ---------------------------------------------------------------

    def _trial_keys(self, identity: ProviderIdentity, email: str | None) -> list[str]:
        keys = [subject_claim_key(identity.issuer, identity.subject)]
        if email and identity.email_verified:
            keys.append(email_claim_key(email))
        return keys

    def _user_for_identity(self, provider: str, label: str, identity: ProviderIdentity, *,
                           ip: str | None) -> tuple[User, int]:
        now = self.clock()
        with self.db.session() as s:
            known = s.exec(select(User).join(UserIdentity, UserIdentity.user_id == User.id).where(
                UserIdentity.issuer == identity.issuer, UserIdentity.subject == identity.subject)).first()
        if known is not None:
            if known.disabled_at is not None:
                raise OidcRefused("This account is disabled.", key="error.oidc.disabled")
            with self.db.transaction() as s:
                s.exec(update(UserIdentity).where(UserIdentity.issuer == identity.issuer,
                                                  UserIdentity.subject == identity.subject)
                       .values(last_used_at=now))
            return known, 0
        if not identity.email:
            raise OidcRefused(f"{label} did not share your email address, which an account needs. "
                              "Allow it at the provider and try again.", key="error.oidc.no_email", provider=label)
        try:
            email = normalize_email(identity.email)
        except ValidationFailed:
            raise OidcRefused(f"{label} shared an email address this studio cannot use.", key="error.oidc.bad_email",
                              provider=label) from None
        with self.db.session() as s:
            existing = s.exec(select(User).where(User.email == email)).first()
        if existing is not None:
            if not identity.email_verified:
                raise OidcRefused(
                    f"An account with {email} already exists, and {label} does not confirm that this address "
                    f"is yours. Sign in with your password, then link {label} from the Account tab.",
                    key="error.oidc.unconfirmed_existing", email=email, provider=label)
            if existing.disabled_at is not None:
                raise OidcRefused("This account is disabled.", key="error.oidc.disabled")
            return existing, self._link_identity(existing.id, provider, identity)
        return self._create_oidc_user(provider, identity, email, ip=ip)

    def _create_oidc_user(self, provider: str, identity: ProviderIdentity, email: str, *,
                          ip: str | None) -> tuple[User, int]:
        rules = {"settings": self.settings, "email": email, "invite": None,
                 "email_verified": identity.email_verified, "by_email": True}
        try:
            with self.db.session() as s:
                check_new_account(s, now=self.clock(), **rules)
        except SignupRefused as err:
            raise OidcRefused(err.message, key=err.key, **err.params) from None
        attempt = self._admit(kind=SIGNUP_OK, email=email, ip=ip, counted=SIGNUP_KINDS, window=SIGNUP_IP_WINDOW,
                              limit=self.settings.signup_rate_per_ip_per_hour,
                              refusal="Too many sign-ups from your network. Try again later.")
        now = self.clock()
        role = "admin" if identity.email_verified and email in self.settings.admin_email_set else "user"
        try:
            with self.db.transaction() as s:
                try:
                    used = check_new_account(s, now=now, **rules)
                except SignupRefused as err:
                    raise OidcRefused(err.message, key=err.key, **err.params) from None
                user = User(email=email, password_hash="", role=role, created_at=now,
                            email_verified_at=now if identity.email_verified else None)
                s.add(user)
                s.flush()
                if used is not None:
                    consume_invite(s, used, user_id=user.id, now=now)
                grant_allowance(self.ledger, self.settings, user_id=user.id, now=now, session=s)
                s.add(UserIdentity(user_id=user.id, provider=provider, issuer=identity.issuer,
                                   subject=identity.subject, email=identity.email, created_at=now, last_used_at=now))
                granted = 0
                # Without required verification, an unverified provider email counts as today's
                # password sign-ups do: claimed for the trial as it is.
                keys = self._trial_keys(identity, email) + ([] if identity.email_verified else [email_claim_key(email)])
                due = identity.email_verified or not self.settings.trial_requires_verified_email
                if due and claim_trial(s, ledger=self.ledger, user_id=user.id, amount=self.settings.trial_credits,
                                       keys=keys, now=now):
                    granted = self.settings.trial_credits
        except IntegrityError:
            self._settle(attempt, "signup_failed")
            raise Conflict("This account was just created by another sign-in. Please try again.",
                           key="error.oidc.race") from None
        log.info("user created id=%s role=%s via %s", user.id, role, provider)
        return user, granted

    def _link_identity(self, user_id: int, provider: str, identity: ProviderIdentity) -> int:
        """Link the identity to `user_id` (refused when it belongs to someone else). When the
        provider vouches for the account's own email, the email counts as verified; the trial
        follows the one-per-person rule. Returns the trial credits granted (0 usually)."""
        now = self.clock()
        with self.db.transaction() as s:
            owner = s.exec(select(UserIdentity).where(UserIdentity.issuer == identity.issuer,
                                                      UserIdentity.subject == identity.subject)).first()
            if owner is not None and owner.user_id != user_id:
                raise OidcRefused("This provider account is already linked to another account of this studio.",
                                  key="error.oidc.linked_elsewhere")
            user = s.get(User, user_id)
            if user is None:
                raise NotFound("No such user.")
            if owner is None:
                s.add(UserIdentity(user_id=user_id, provider=provider, issuer=identity.issuer,
                                   subject=identity.subject, email=identity.email, created_at=now, last_used_at=now))
            same_email = bool(identity.email) and identity.email.strip().lower() == user.email
            if same_email and identity.email_verified and user.email_verified_at is None:
                user.email_verified_at = now
                s.add(user)
            s.add(AuthEvent(kind="provider_linked", email=user.email, created_at=now))
            keys = self._trial_keys(identity, identity.email)
            if user.email_verified_at is not None:
                keys.append(email_claim_key(user.email))
            if claim_trial(s, ledger=self.ledger, user_id=user_id, amount=self.settings.trial_credits,
                           keys=keys, now=now):
                return self.settings.trial_credits
        return 0

    def list_identities(self, *, user_id: int) -> list[UserIdentity]:
        with self.db.session() as s:
            return list(s.exec(select(UserIdentity).where(UserIdentity.user_id == user_id)
                               .order_by(col(UserIdentity.created_at))).all())

    def unlink_identity(self, *, user_id: int, identity_id: int) -> None:
        """Remove a linked provider, unless it is the last way in (no password, no other provider)."""
        with self.db.transaction() as s:
            identity = s.get(UserIdentity, identity_id)
            if identity is None or identity.user_id != user_id:
                raise NotFound("No such linked provider.")
            user = s.get(User, user_id)
            others = s.exec(select(UserIdentity.id).where(UserIdentity.user_id == user_id,
                                                          UserIdentity.id != identity_id)).all()
            if not user.password_hash and not others:
                raise ValidationFailed("This is your only way to sign in. Set a password (Forgot password on the "
                                       "sign-in page) or link another provider first.", key="error.oidc.only_way")
            s.delete(identity)
