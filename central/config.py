"""Settings of the central service, read from `LOCKER_*` environment variables."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

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
    # Operator accounts in the dashboard (invitations, password resets): how long a one-time link
    # to set a password stays valid.
    ops_invite_link_hours: float = Field(default=72.0, gt=0, le=24 * 30)
    ops_reset_link_hours: float = Field(default=1.0, gt=0, le=24 * 7)
    # The overview's map (Leaflet): tiles from this URL template ({z}, {x}, {y}; {s} as the first
    # label of the host for subdomains, {r} for retina), with this attribution (HTML shown on the
    # map; OpenStreetMap's tile usage policy requires it). The overview page's
    # Content-Security-Policy lets images come from the template's origin. Empty: no tiles, the
    # banks on a plain background.
    map_tile_url: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    map_attribution: str = (
        '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
    )
    # Paging (central.paging): raised and resolved alerts to the operators subscribed to them, by
    # email (through smtp_url and notify_from above) and outgoing webhooks. When more than
    # `paging_digest_threshold` pages are due for one destination at once, they go as one digest;
    # a page that cannot go for `paging_retry_hours` is given up and shown as failed.
    paging_digest_threshold: int = Field(default=5, ge=1)
    paging_retry_hours: float = Field(default=24.0, gt=0)
    # Fleet health (central.nodes.health): alerts from what heartbeats report of each node's
    # computer. `overheating` when the CPU or the enclosure is hotter than its maximum, resolved
    # once it is `health_temp_hysteresis_c` below it (a sensor hovering at the limit raises it
    # once, not on every heartbeat); `disk_low` when free space of the node's data disk is under
    # either minimum. `power_lost` and `battery_low` come from the node's UPS inputs.
    health_cpu_temp_max_c: float = Field(default=80.0, gt=0, le=150)
    health_enclosure_temp_max_c: float = Field(default=55.0, gt=0, le=150)
    health_temp_hysteresis_c: float = Field(default=5.0, ge=0, le=30)
    health_disk_free_min_mb: int = Field(default=500, ge=0)
    health_disk_free_min_pct: float = Field(default=5.0, ge=0, le=100)

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

    @field_validator("map_tile_url")
    @classmethod
    def _check_map_tile_url(cls, value: str) -> str:
        map_tile_origin(value)  # raises ValueError on a template browsers could not use
        return value.strip()


# A tile server's host and port, with `{s}.` (Leaflet's subdomains) allowed in front only.
_TILE_NETLOC = re.compile(
    r"(\{s\}\.)?([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?"
)


def map_tile_origin(template: str) -> str | None:
    """The origin the map's tiles come from, as a CSP source (`https://tile.openstreetmap.org`,
    `https://*.tile.example.com` for a `{s}` subdomain); None when tiles are off (empty)."""
    template = template.strip()
    if not template:
        return None
    parts = urlsplit(template)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("the map tile URL must be an http:// or https:// URL template")
    if "@" in parts.netloc:
        raise ValueError("the map tile URL must not carry a user name or password")
    has_y = "{y}" in template or "{-y}" in template
    if "{z}" not in template or "{x}" not in template or not has_y:
        raise ValueError("the map tile URL must have {z}, {x} and {y} (or {-y}) placeholders")
    match = _TILE_NETLOC.fullmatch(parts.netloc)
    if match is None:
        raise ValueError("the map tile URL's host may hold a placeholder only as {s}. in front")
    subdomains, host, port = match.groups()
    return f"{parts.scheme}://{'*.' if subdomains else ''}{host.lower()}{port or ''}"
