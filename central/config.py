"""Settings of the central service, read from `LOCKER_*` environment variables."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class CentralSettings(BaseSettings):
    """Everything central needs to start; built once in `app.py` and passed down."""

    model_config = SettingsConfigDict(env_prefix="LOCKER_", extra="ignore")

    database_url: str = "sqlite:///./var/central.db"
    # A streaming standby for reads that may lag a little (the dashboard's overview and charts,
    # the reports, the public locker finder); unset, they read the primary.
    database_read_url: str | None = None
    data_dir: Path = Path("var")
    # Derives courier access codes and encrypts webhook secrets at rest. When unset, a random key is
    # made once and kept in `<data_dir>/secret.key` (mode 0600) so the embedded default just works.
    secret_key: SecretStr | None = None
    public_url: str = "http://127.0.0.1:8000"
    # Reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: addresses and
    # networks, comma-separated in the environment. Empty, no forwarded header is believed from
    # anyone, so a client cannot choose the address that the sign-in throttle counts against.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    # Carriers register HTTPS endpoints; plain HTTP is for local development and tests only.
    allow_insecure_webhooks: bool = False
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_retry_hours: float = Field(default=72.0, ge=24.0)
    scheduler_enabled: bool = True
    # The scheduler's lease: a host that stops renewing it (killed, stalled) hands the
    # leader-only jobs to another within this long.
    scheduler_lease_s: float = Field(default=30.0, ge=1.0, le=600.0)
    db_pool_size: int = Field(default=10, ge=1)
    # Operator dashboard (/ops): sessions end after this long without a request, and in any case
    # after ops_session_max_hours; sign-in is refused for a while after repeated failures.
    ops_session_idle_hours: float = Field(default=12.0, gt=0)
    ops_session_max_hours: float = Field(default=7 * 24.0, gt=0)
    ops_login_max_failures: int = Field(default=5, ge=1)
    ops_login_window_minutes: float = Field(default=15.0, gt=0)
    # argon2id cost (RFC 9106 second recommendation by default); tests lower it to stay fast.
    ops_argon2_time_cost: int = Field(default=3, ge=1)
    ops_argon2_memory_kib: int = Field(default=65536, ge=8)
    ops_argon2_parallelism: int = Field(default=4, ge=1)
    # Remote opens across the whole fleet: beyond this many in the window, every further open is
    # refused and an alert raised, so that a stolen admin session cannot empty the network's
    # compartments one bank after another (each node also limits its own, 3 per 10 minutes).
    remote_open_budget: int = Field(default=20, ge=1)
    remote_open_window_minutes: float = Field(default=60.0, gt=0)
    # Usage analytics (Mixpanel). Without a token events are kept in the local outbox only.
    mixpanel_token: SecretStr | None = None
    # `api-eu.mixpanel.com` for EU data residency.
    mixpanel_api_host: str = "api.mixpanel.com"
    # A full /track URL instead of `https://<api host>/track` (a relay, or a local test server).
    mixpanel_events_url: str | None = None
    analytics_retention_days: int = Field(default=30, ge=1)
    # Notices to recipients (central.notices). Email goes out over SMTP when `smtp_url` is set:
    # smtp://host:port, smtp+starttls://user:pass@host:587 or smtps://user:pass@host:465; SMS
    # through Twilio when the three twilio settings are. Unset, nothing is sent and nothing fails:
    # notices are kept as "not sent" for operators to see.
    smtp_url: SecretStr | None = None
    notify_from: str = "Locker network <notices@localhost>"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None  # a number in E.164, or a Messaging Service SID (MG...)
    # Prepended to recipients' numbers written without one ("+1"); without it such a number
    # cannot get an SMS.
    sms_default_country_code: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{0,3}$")
    # A notice that cannot be sent for this long is given up and shown as failed.
    notice_retry_hours: float = Field(default=48.0, gt=0)
    # The first retry of a notice that could not go waits this long, each next one twice as long
    # (at most an hour).
    notice_first_retry_s: float = Field(default=30.0, gt=0)
    # When set, GET /metrics requires `Authorization: Bearer <metrics_token>`.
    metrics_token: SecretStr | None = None
    # Request bodies larger than these are refused with 413 before or while they are read (see
    # central.limits): the carrier API's bodies are a few hundred bytes; a node's largest batch
    # (500 events) is about 260 kB, 1.7 MB with every field at its longest.
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    max_node_body_bytes: int = Field(default=4 << 20, ge=1024)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_trusted_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(entry.strip() for entry in value.split(",") if entry.strip())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            # As uvicorn reads them; it would keep a bad entry as a name matching no client.
            try:
                ipaddress.ip_network(entry)
            except ValueError as exc:
                raise ValueError(
                    f"{exc}; give IP addresses or networks, like 10.0.0.7 or 10.0.0.0/24"
                ) from exc
        return value
