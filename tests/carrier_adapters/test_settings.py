"""Carrier settings: environment variables, hosts, secrets."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from carrier_adapters.settings import (
    CarrierSettings,
    DhlSettings,
    FedexSettings,
    RateLimit,
    UpsSettings,
    UspsSettings,
)


def test_sections_read_their_own_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKER_CARRIER_USPS_CLIENT_ID", "usps-id")
    monkeypatch.setenv("LOCKER_CARRIER_USPS_CLIENT_SECRET", "usps-secret")
    monkeypatch.setenv("LOCKER_CARRIER_USPS_ENVIRONMENT", "test")
    monkeypatch.setenv("LOCKER_CARRIER_DHL_API_KEY", "dhl-key")
    monkeypatch.setenv("LOCKER_CARRIER_DHL_RATE_LIMITS", '[{"calls": 3, "period_s": 1}]')
    monkeypatch.setenv("LOCKER_CARRIER_UPS_TRANSACTION_SRC", "lockers-prod")
    settings = CarrierSettings()
    assert settings.usps.configured
    assert settings.usps.url == "https://apis-tem.usps.com"
    assert settings.dhl.configured
    assert settings.dhl.rate_limits == (RateLimit(calls=3, period_s=1),)
    assert not settings.fedex.configured
    assert not settings.ups.configured
    assert settings.ups.transaction_src == "lockers-prod"


def test_production_and_test_hosts() -> None:
    pairs = [
        (UspsSettings, "https://apis.usps.com", "https://apis-tem.usps.com"),
        (FedexSettings, "https://apis.fedex.com", "https://apis-sandbox.fedex.com"),
        (UpsSettings, "https://onlinetools.ups.com", "https://wwwcie.ups.com"),
        (DhlSettings, "https://api-eu.dhl.com", "https://api-test.dhl.com"),
    ]
    for cls, production, test in pairs:
        assert cls().url == production
        assert cls(environment="test").url == test
        assert cls(base_url="https://proxy.internal/").url == "https://proxy.internal"


def test_documented_rate_limits_are_the_defaults() -> None:
    assert UspsSettings().rate_limits == (RateLimit(calls=60, period_s=3600),)
    assert FedexSettings().rate_limits == (RateLimit(calls=1400, period_s=10),)
    assert DhlSettings().rate_limits == (
        RateLimit(calls=1, period_s=1),
        RateLimit(calls=250, period_s=86_400),
    )
    assert UpsSettings().rate_limits == (RateLimit(calls=5, period_s=1),)


def test_secrets_never_show_in_repr_or_str() -> None:
    settings = CarrierSettings(
        usps=UspsSettings(client_id=SecretStr("usps-id-1"), client_secret=SecretStr("sec-1")),
        fedex=FedexSettings(
            client_id=SecretStr("fdx-id-2"),
            client_secret=SecretStr("sec-2"),
            webhook_secret=SecretStr("hook-2"),
        ),
        ups=UpsSettings(
            client_id=SecretStr("ups-id-3"),
            client_secret=SecretStr("sec-3"),
            webhook_credential=SecretStr("hook-3"),
        ),
        dhl=DhlSettings(api_key=SecretStr("key-4"), webhook_token=SecretStr("hook-4")),
    )
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        for secret in ("usps-id-1", "sec-1", "sec-2", "hook-2", "sec-3", "hook-3", "key-4"):
            assert secret not in text


def test_blank_credentials_are_not_configured() -> None:
    assert not UspsSettings(client_id=SecretStr(""), client_secret=SecretStr("x")).configured
    assert not DhlSettings(api_key=SecretStr("")).configured
    with pytest.raises(ValueError, match="not configured"):
        UspsSettings().credentials()
