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
    # 60: six 1K images, so a new user can compare a prompt in six styles once (the style lab).
    trial_credits: int = Field(default=60, ge=0, le=1_000_000, alias="TRIAL_CREDITS")
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
    compare_max_styles: int = Field(default=6, ge=1, le=12, alias="COMPARE_MAX_STYLES")
    hold_ttl_seconds: int = Field(default=900, ge=30, alias="HOLD_TTL_SECONDS")
    # Reference images per job (the model takes 16) and bytes per uploaded image (issue #11).
    reference_max_images: int = Field(default=8, ge=1, le=16, alias="REFERENCE_MAX_IMAGES")
    reference_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024,
                                     alias="REFERENCE_MAX_BYTES")
    # The housekeeping sweep (services/maintenance.py): how often each replica runs it; a replica
    # whose heartbeat is five intervals old is taken for gone by the others.
    sweep_interval_seconds: float = Field(default=60, ge=0.5, le=3600, alias="SWEEP_INTERVAL_SECONDS")

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

    # Team mode: who may create an account, and the monthly team allowance (0: none).
    signup_mode: Literal["open", "invite", "closed"] = Field(default="open", alias="SIGNUP_MODE")
    allowed_email_domains: str = Field(default="", alias="ALLOWED_EMAIL_DOMAINS")  # "example.com,example.org"
    monthly_allowance_credits: int = Field(default=0, ge=0, le=100_000_000, alias="MONTHLY_ALLOWANCE_CREDITS")
    invite_days: int = Field(default=7, ge=1, le=365, alias="INVITE_DAYS")
    # The admin console's cost estimate: USD per 1M tokens, per model, per token kind (JSON).
    provider_prices: str = Field(default="", alias="PROVIDER_PRICES")

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

    @field_validator("allowed_email_domains")
    @classmethod
    def _domains(cls, value: str) -> str:
        for domain in filter(None, (d.strip().lower() for d in value.split(","))):
            if not _DOMAIN.match(domain):
                raise ValueError(f"{domain!r} is not a domain name (example.com)")
        return value

    @field_validator("provider_prices")
    @classmethod
    def _provider_prices(cls, value: str) -> str:
        if value.strip():
            _parse_prices(value)
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
    def allowed_email_domain_set(self) -> frozenset[str]:
        """ALLOWED_EMAIL_DOMAINS lower-cased; empty: every domain."""
        return frozenset(d.strip().lower().lstrip("@") for d in self.allowed_email_domains.split(",") if d.strip())

    @property
    def provider_price_table(self) -> dict[str, dict[str, float]]:
        """PROVIDER_PRICES (USD per 1M tokens by model and token kind) over the defaults."""
        table = {model: dict(prices) for model, prices in DEFAULT_PROVIDER_PRICES.items()}
        if self.provider_prices.strip():
            table.update(_parse_prices(self.provider_prices))
        return table

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


_DOMAIN = re.compile(r"^@?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
TOKEN_KINDS = ("text_input", "image_input", "text_output", "image_output")
# USD per 1M tokens. gpt-image-2's list prices were not published when this was written: these are
# gpt-image-1.5's; set PROVIDER_PRICES to what your OpenAI invoice says.
DEFAULT_PROVIDER_PRICES: dict[str, dict[str, float]] = {
    "gpt-image-2": {"text_input": 5.0, "image_input": 8.0, "text_output": 10.0, "image_output": 32.0},
}


def _parse_prices(value: str) -> dict[str, dict[str, float]]:
    import json

    try:
        parsed = json.loads(value)
    except ValueError:
        raise ValueError('must be JSON like {"gpt-image-2": {"text_input": 5, "image_output": 32}}') from None
    if not isinstance(parsed, dict):
        raise ValueError("must be a JSON object of models")
    table: dict[str, dict[str, float]] = {}
    for model, prices in parsed.items():
        if not isinstance(prices, dict):
            raise ValueError(f"{model}: must map token kinds to USD per 1M tokens")
        for kind, price in prices.items():
            if kind not in TOKEN_KINDS:
                raise ValueError(f"{model}: unknown token kind {kind!r} (one of {', '.join(TOKEN_KINDS)})")
            if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
                raise ValueError(f"{model}.{kind}: must be a number of USD per 1M tokens, 0 or more")
        table[str(model)] = {k: float(v) for k, v in prices.items()}
    return table


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
