"""Carrier settings: one section per carrier, read from LOCKER_CARRIER_<CARRIER>_* variables."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "CarrierSettings",
    "DhlSettings",
    "FedexSettings",
    "RateLimit",
    "UpsSettings",
    "UspsSettings",
]


class RateLimit(BaseModel):
    """At most `calls` requests in any `period_s` seconds."""

    model_config = ConfigDict(frozen=True)

    calls: PositiveInt
    period_s: PositiveFloat


class BaseCarrierSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    PRODUCTION_URL: ClassVar[str]
    TEST_URL: ClassVar[str]

    environment: Literal["production", "test"] = "production"
    base_url: str | None = None
    """Overrides the host chosen by `environment` (a proxy, a recorder)."""
    timeout_s: PositiveFloat = 10.0
    max_attempts: int = Field(default=3, ge=1, le=10)
    max_retry_after_s: float = Field(default=30.0, ge=0)
    """A longer Retry-After ends the call with CarrierRateLimited instead of waiting."""
    max_budget_wait_s: float = Field(default=5.0, ge=0)
    """Longest wait for a free slot of the rate budget before CarrierRateLimited."""
    rate_limits: tuple[RateLimit, ...] = ()

    @property
    def url(self) -> str:
        chosen = self.base_url or (
            self.PRODUCTION_URL if self.environment == "production" else self.TEST_URL
        )
        return chosen.rstrip("/")

    @property
    def configured(self) -> bool:
        raise NotImplementedError


class OAuthCarrierSettings(BaseCarrierSettings):
    client_id: SecretStr | None = None
    client_secret: SecretStr | None = None
    token_refresh_margin_s: float = Field(default=60.0, ge=0)

    @property
    def configured(self) -> bool:
        return bool(
            self.client_id
            and self.client_secret
            and self.client_id.get_secret_value()
            and self.client_secret.get_secret_value()
        )

    def credentials(self) -> tuple[str, str]:
        """Client id and secret in clear, for the token request only."""
        if not (self.client_id and self.client_secret):
            raise ValueError("client id and secret are not configured")
        return self.client_id.get_secret_value(), self.client_secret.get_secret_value()


class UspsSettings(OAuthCarrierSettings):
    """USPS Tracking 3.x with OAuth2 client credentials (scope `tracking`)."""

    model_config = SettingsConfigDict(env_prefix="LOCKER_CARRIER_USPS_")

    PRODUCTION_URL: ClassVar[str] = "https://apis.usps.com"
    TEST_URL: ClassVar[str] = "https://apis-tem.usps.com"

    # USPS documents 60 calls per hour per API on the default product.
    rate_limits: tuple[RateLimit, ...] = (RateLimit(calls=60, period_s=3600),)


class FedexSettings(OAuthCarrierSettings):
    """FedEx Track API with OAuth2; `webhook_secret` is the security code of the webhook project."""

    model_config = SettingsConfigDict(env_prefix="LOCKER_CARRIER_FEDEX_")

    PRODUCTION_URL: ClassVar[str] = "https://apis.fedex.com"
    TEST_URL: ClassVar[str] = "https://apis-sandbox.fedex.com"

    # FedEx documents about 1,400 transactions per 10 seconds per project.
    rate_limits: tuple[RateLimit, ...] = (RateLimit(calls=1400, period_s=10),)
    locale: str = "en_US"
    webhook_secret: SecretStr | None = None


class UpsSettings(OAuthCarrierSettings):
    """UPS Track API v1 and Track Alert, OAuth2 client credentials over HTTP Basic."""

    model_config = SettingsConfigDict(env_prefix="LOCKER_CARRIER_UPS_")

    PRODUCTION_URL: ClassVar[str] = "https://onlinetools.ups.com"
    TEST_URL: ClassVar[str] = "https://wwwcie.ups.com"

    # UPS answers 429 without publishing numbers; 5 calls per second is a conservative default.
    rate_limits: tuple[RateLimit, ...] = (RateLimit(calls=5, period_s=1),)
    transaction_src: str = Field(default="locker-network", min_length=1, max_length=512)
    merchant_id: str | None = None
    """Six-digit UPS account number sent as x-merchant-id when requesting tokens."""
    locale: str = "en_US"
    subscription_country_code: str = "US"
    webhook_credential: SecretStr | None = None
    """The bearer credential registered for Track Alert callbacks."""


class DhlSettings(BaseCarrierSettings):
    """DHL Shipment Tracking - Unified with the DHL-API-Key header."""

    model_config = SettingsConfigDict(env_prefix="LOCKER_CARRIER_DHL_")

    PRODUCTION_URL: ClassVar[str] = "https://api-eu.dhl.com"
    TEST_URL: ClassVar[str] = "https://api-test.dhl.com"

    # Starter tier: 1 call per second and 250 calls per day.
    rate_limits: tuple[RateLimit, ...] = (
        RateLimit(calls=1, period_s=1),
        RateLimit(calls=250, period_s=86_400),
    )
    api_key: SecretStr | None = None
    service: str | None = None
    """Restricts lookups to one DHL service (express, parcel-de, ecommerce, ...)."""
    language: str | None = None
    webhook_token: SecretStr | None = None
    webhook_header: str = "DHL-Webhook-Token"
    """The header DHL's push sends `webhook_token` in; chosen when registering the push."""

    @property
    def configured(self) -> bool:
        return bool(self.api_key and self.api_key.get_secret_value())


class CarrierSettings(BaseModel):
    """All carriers; each section reads its own LOCKER_CARRIER_<CARRIER>_ variables."""

    model_config = ConfigDict(frozen=True)

    usps: UspsSettings = Field(default_factory=UspsSettings)
    fedex: FedexSettings = Field(default_factory=FedexSettings)
    ups: UpsSettings = Field(default_factory=UpsSettings)
    dhl: DhlSettings = Field(default_factory=DhlSettings)
