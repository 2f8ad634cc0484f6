"""The one typed configuration object, read from the environment and `.env`.

The real environment wins over `.env`. No other module reads `os.environ`.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """A setting has an invalid value; the message names the variable."""


@dataclass(frozen=True)
class OidcProviderConfig:
    """One OpenID Connect provider people can sign in with (OIDC_<NAME>_* or a Space's OAuth)."""

    name: str  # in the routes: /auth/oidc/<name>/login
    label: str  # "Sign in with <label>"
    issuer: str
    client_id: str
    client_secret: str | None
    scope: str = "openid email profile"
    redirect_uri: str | None = None  # None: PUBLIC_URL (or the server address) + the callback path


_PROVIDER_NAME = re.compile(r"^[a-z0-9_]{1,32}$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(default=Path("./data"), alias="DATA_DIR")
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    secret_key: str | None = Field(default=None, alias="SECRET_KEY")
    public_url: str | None = Field(default=None, alias="PUBLIC_URL")
    admin_emails: str = Field(default="", alias="ADMIN_EMAILS")
    trial_credits: int = Field(default=40, ge=0, le=1_000_000, alias="TRIAL_CREDITS")
    # Unset: on when mail is configured (SMTP_HOST), off otherwise.
    trial_requires_verified_email_setting: bool | None = Field(default=None, alias="TRIAL_REQUIRES_VERIFIED_EMAIL")
    support_contact: str = Field(default="support@example.com", alias="SUPPORT_CONTACT")
    # A picture people scan to reach support (e.g. a WeCom QR code), served at /support/qr; and when.
    support_qr_image: Path | None = Field(default=None, alias="SUPPORT_QR_IMAGE")
    support_hours: str = Field(default="", alias="SUPPORT_HOURS")
    # The language of a visitor whose browser asks for none we have (services/i18n.py: LANGUAGES).
    default_language: str = Field(default="en", alias="DEFAULT_LANGUAGE")

    server_name: str = Field(default="127.0.0.1", alias="GRADIO_SERVER_NAME")
    server_port: int = Field(default=7860, ge=1, le=65535, alias="GRADIO_SERVER_PORT")
    queue_concurrency: int = Field(default=64, ge=1, le=10_000, alias="QUEUE_CONCURRENCY")
    queue_max_size: int = Field(default=500, ge=1, le=100_000, alias="QUEUE_MAX_SIZE")
    max_upload_size: str = Field(default="5mb", alias="MAX_UPLOAD_SIZE")

    session_idle_minutes: int = Field(default=60 * 24 * 7, ge=1, alias="SESSION_IDLE_MINUTES")
    session_max_days: int = Field(default=30, ge=1, alias="SESSION_MAX_DAYS")
    signin_rate_per_ip_per_minute: int = Field(default=30, ge=1, alias="SIGNIN_RATE_PER_IP_PER_MINUTE")
    signup_rate_per_ip_per_hour: int = Field(default=20, ge=1, alias="SIGNUP_RATE_PER_IP_PER_HOUR")

    smtp_host: str | None = Field(default=None, alias="SMTP_HOST")
    smtp_port: int = Field(default=587, ge=1, le=65535, alias="SMTP_PORT")
    smtp_user: str | None = Field(default=None, alias="SMTP_USER")
    smtp_password: str | None = Field(default=None, alias="SMTP_PASSWORD")
    smtp_from: str | None = Field(default=None, alias="SMTP_FROM")
    smtp_starttls: bool = Field(default=True, alias="SMTP_STARTTLS")

    # Sign-in with OpenID Connect: OIDC_PROVIDERS=google,company and OIDC_<NAME>_ISSUER, _CLIENT_ID,
    # _CLIENT_SECRET, _LABEL (read by load_settings into `oidc_environment`).
    oidc_providers: str = Field(default="", alias="OIDC_PROVIDERS")
    oidc_environment: dict[str, str] = Field(default_factory=dict, exclude=True)
    # A Hugging Face Space with `hf_oauth: true` sets these four (and OAUTH_SCOPES).
    oauth_client_id: str | None = Field(default=None, alias="OAUTH_CLIENT_ID")
    oauth_client_secret: str | None = Field(default=None, alias="OAUTH_CLIENT_SECRET")
    oauth_scopes: str | None = Field(default=None, alias="OAUTH_SCOPES")
    openid_provider_url: str | None = Field(default=None, alias="OPENID_PROVIDER_URL")
    space_host: str | None = Field(default=None, alias="SPACE_HOST")

    openai_api_key: str | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")
    openai_timeout: float = Field(default=120.0, gt=0, le=3600, alias="OPENAI_TIMEOUT")
    image_model: str = Field(default="gpt-image-2", alias="IMAGE_MODEL")
    image_quality: Literal["auto", "low", "medium", "high", "xhigh", "max"] = Field(
        default="auto", alias="IMAGE_QUALITY"
    )
    image_provider: Literal["auto", "openai", "offline"] = Field(default="auto", alias="IMAGE_PROVIDER")
    # Preview frames the engine streams before the final image (0: only the final one).
    partial_images: int = Field(default=2, ge=0, le=3, alias="PARTIAL_IMAGES")
    generation_rate_per_minute: int = Field(default=20, ge=1, alias="GENERATION_RATE_PER_MINUTE")
    generation_max_concurrent: int = Field(default=4, ge=1, alias="GENERATION_MAX_CONCURRENT")
    hold_ttl_seconds: int = Field(default=900, ge=30, alias="HOLD_TTL_SECONDS")

    stripe_secret_key: str | None = Field(default=None, alias="STRIPE_SECRET_KEY")
    stripe_webhook_secret: str | None = Field(default=None, alias="STRIPE_WEBHOOK_SECRET")
    stripe_api_base: str | None = Field(default=None, alias="STRIPE_API_BASE")
    # "pack_100=price_123,pro_monthly=price_456": Stripe price ids by product key (else pricing.json, else lookup_key).
    stripe_price_ids: str = Field(default="", alias="STRIPE_PRICE_IDS")
    # Checkout's payment methods for credit packs, e.g. "card,alipay,wechat_pay" (plans: card only).
    stripe_payment_methods: str = Field(default="", alias="STRIPE_PAYMENT_METHODS")

    # Images: local disk under DATA_DIR (default) or `s3://bucket/prefix` (services/s3storage.py).
    storage_url: str | None = Field(default=None, alias="STORAGE_URL")
    storage_presign: bool = Field(default=False, alias="STORAGE_PRESIGN")
    storage_presign_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600, alias="STORAGE_PRESIGN_SECONDS")
    s3_endpoint_url: str | None = Field(default=None, alias="S3_ENDPOINT_URL")
    aws_access_key_id: str | None = Field(default=None, alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: str | None = Field(default=None, alias="AWS_SECRET_ACCESS_KEY")
    aws_session_token: str | None = Field(default=None, alias="AWS_SESSION_TOKEN")
    aws_region: str | None = Field(default=None, alias="AWS_DEFAULT_REGION")

    # Operations: /metrics (Bearer METRICS_TOKEN; unset → 404), log format, retention.
    metrics_token: str | None = Field(default=None, alias="METRICS_TOKEN")
    log_format: Literal["text", "json"] = Field(default="text", alias="LOG_FORMAT")
    retention_days: int = Field(default=90, ge=30, le=36500, alias="RETENTION_DAYS")

    @field_validator(
        "storage_url", "s3_endpoint_url", "aws_access_key_id", "aws_secret_access_key",
        "aws_session_token", "aws_region", "metrics_token",
        "database_url", "secret_key", "public_url", "smtp_host", "smtp_user", "smtp_password",
        "smtp_from", "openai_api_key", "openai_base_url", "stripe_secret_key",
        "stripe_webhook_secret", "stripe_api_base", "trial_requires_verified_email_setting",
        "oauth_client_id", "oauth_client_secret", "oauth_scopes", "openid_provider_url", "space_host",
        "support_qr_image", mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("s3://"):
            from services.s3storage import parse_storage_url

            parse_storage_url(value)
        return value

    @field_validator("public_url", "openai_base_url", "stripe_api_base", "s3_endpoint_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        return value

    @field_validator("stripe_price_ids")
    @classmethod
    def _price_ids(cls, value: str) -> str:
        for pair in filter(None, (p.strip() for p in value.split(","))):
            key, _, price = pair.partition("=")
            if not key.strip() or not price.strip().startswith("price_"):
                raise ValueError("must look like pack_100=price_...,pro_monthly=price_...")
        return value

    @field_validator("default_language")
    @classmethod
    def _default_language(cls, value: str) -> str:
        from services.i18n import LANGUAGES, supported

        if supported(value) is None:
            raise ValueError(f"must be one of {', '.join(LANGUAGES)}")
        return supported(value)

    @field_validator("stripe_payment_methods")
    @classmethod
    def _payment_methods(cls, value: str) -> str:
        methods = [m.strip() for m in value.split(",") if m.strip()]
        if any(not m.replace("_", "").isalnum() for m in methods):
            raise ValueError("must look like card,alipay,wechat_pay")
        return ",".join(methods)

    # Derived values -------------------------------------------------------------------------

    @property
    def payment_method_list(self) -> list[str]:
        return [m for m in self.stripe_payment_methods.split(",") if m]

    @property
    def stripe_price_id_map(self) -> dict[str, str]:
        pairs = (p.strip().partition("=") for p in self.stripe_price_ids.split(",") if p.strip())
        return {key.strip(): price.strip() for key, _, price in pairs}

    @property
    def admin_email_set(self) -> frozenset[str]:
        return frozenset(e.strip().lower() for e in self.admin_emails.split(",") if e.strip())

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'studio.db').resolve()}"

    @property
    def secure_cookies(self) -> bool:
        return bool(self.public_url and self.public_url.startswith("https://"))

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url
        # 0.0.0.0 / :: mean "every interface": links must name a reachable host.
        host = "127.0.0.1" if self.server_name in ("0.0.0.0", "::", "") else self.server_name
        return f"http://{host}:{self.server_port}"

    @property
    def mail_configured(self) -> bool:
        return bool(self.smtp_host)

    @property
    def trial_requires_verified_email(self) -> bool:
        """Trial credits wait for a verified email: TRIAL_REQUIRES_VERIFIED_EMAIL, else on with mail."""
        if self.trial_requires_verified_email_setting is None:
            return self.mail_configured
        return self.trial_requires_verified_email_setting

    def oidc_provider_configs(self) -> list[OidcProviderConfig]:
        """The sign-in providers, in OIDC_PROVIDERS order, then Hugging Face on a Space with OAuth.
        Raises ValueError naming the variable that is missing or wrong."""
        env = self.oidc_environment
        providers: list[OidcProviderConfig] = []
        for name in filter(None, (n.strip().lower() for n in self.oidc_providers.split(","))):
            if not _PROVIDER_NAME.match(name):
                raise ValueError(f"OIDC_PROVIDERS: {name!r} is not a name (letters, digits, _)")
            prefix = f"OIDC_{name.upper()}_"

            def value(key: str, name=name, prefix=prefix) -> str | None:
                found = (env.get(prefix + key) or "").strip()
                return found or None

            issuer, client_id = value("ISSUER"), value("CLIENT_ID")
            for key, found in (("ISSUER", issuer), ("CLIENT_ID", client_id)):
                if not found:
                    raise ValueError(f"{prefix}{key}: required because OIDC_PROVIDERS names {name!r}")
            _check_issuer(prefix + "ISSUER", issuer)
            providers.append(OidcProviderConfig(
                name=name, label=value("LABEL") or name.replace("_", " ").title(), issuer=issuer.rstrip("/"),
                client_id=client_id, client_secret=value("CLIENT_SECRET"),
                scope=value("SCOPES") or "openid email profile"))
        if self.oauth_client_id and self.openid_provider_url and self.space_host and not any(
                p.name == "huggingface" for p in providers):
            _check_issuer("OPENID_PROVIDER_URL", self.openid_provider_url)
            scopes = (self.oauth_scopes or "openid profile").split()
            scopes += [s for s in ("openid", "email") if s not in scopes]
            providers.append(OidcProviderConfig(
                name="huggingface", label="Hugging Face", issuer=self.openid_provider_url.rstrip("/"),
                client_id=self.oauth_client_id, client_secret=self.oauth_client_secret, scope=" ".join(scopes),
                redirect_uri=f"https://{self.space_host}/auth/oidc/huggingface/callback"))
        return providers

    @property
    def use_openai(self) -> bool:
        if self.image_provider == "offline":
            return False
        return bool(self.openai_api_key)

    @property
    def secret_key_path(self) -> Path:
        return self.data_dir / "secret_key"

    def ensure_secret_key(self) -> str:
        """SECRET_KEY, or one generated once and kept under DATA_DIR (mode 0600)."""
        if self.secret_key:
            return self.secret_key
        path = self.secret_key_path
        if path.exists():
            self.secret_key = path.read_text().strip()
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            key = secrets.token_urlsafe(48)
            path.touch(mode=0o600)
            path.write_text(key)
            self.secret_key = key
        return self.secret_key


def _check_issuer(variable: str, issuer: str) -> None:
    parts = urlsplit(issuer)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ValueError(f"{variable}: must be an https:// URL")


def _oidc_environment(env_file: str | Path | None, overrides: dict) -> dict[str, str]:
    """The OIDC_<NAME>_* variables (their names are not known in advance): `.env`, then the real
    environment, then explicit overrides."""
    from dotenv import dotenv_values

    found: dict[str, str] = {}
    if env_file and Path(env_file).exists():
        found.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    found.update(os.environ)
    found.update({k: str(v) for k, v in overrides.items() if v is not None})
    return {k: v for k, v in found.items() if k.startswith("OIDC_")}


def load_settings(env_file: str | Path | None = ".env", **overrides) -> Settings:
    """Build Settings; an invalid value raises ConfigError naming the variable."""
    try:
        settings = Settings(_env_file=env_file, **overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first.get("loc") else "?"
        alias = Settings.model_fields[field].alias if field in Settings.model_fields else field
        raise ConfigError(f"Invalid configuration: {alias or field}: {first['msg']}") from None
    settings.oidc_environment = _oidc_environment(env_file, overrides)
    try:
        settings.oidc_provider_configs()
    except ValueError as err:
        raise ConfigError(f"Invalid configuration: {err}") from None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings
