"""The paging dispatcher as the settings configure it: email through the notices' SMTP
settings (`LOCKER_SMTP_URL`, `LOCKER_NOTIFY_FROM`), webhooks through the given client."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import httpx
from sqlalchemy.orm import Session, sessionmaker

from central.clock import Clock
from central.config import CentralSettings
from central.keys import ServiceKeys
from central.notices.smtp import SmtpConfig, SmtpMailer
from central.paging.senders import WebhookSender
from central.paging.tasks import PageDispatcher, PagingChannels

SMTP_TIMEOUT_S = 30.0


def build_paging_channels(settings: CentralSettings, http: httpx.Client) -> PagingChannels:
    """A bad SMTP URL is a ValueError naming the setting, at start-up."""
    mailer_factory = None
    if settings.smtp_url is not None:
        try:
            config = SmtpConfig.from_url(settings.smtp_url.get_secret_value())
        except ValueError as exc:
            raise ValueError(f"LOCKER_SMTP_URL: {exc}") from exc
        mailer_factory = partial(SmtpMailer, config, timeout_s=SMTP_TIMEOUT_S)
    return PagingChannels(
        sender=settings.notify_from,
        webhooks=WebhookSender(http, timeout_s=settings.webhook_timeout_s),
        mailer_factory=mailer_factory,
    )


def build_page_dispatcher(
    sessions: sessionmaker[Session],
    keys: ServiceKeys,
    clock: Clock,
    settings: CentralSettings,
    http: httpx.Client,
) -> PageDispatcher:
    return PageDispatcher(
        sessions,
        keys,
        clock,
        build_paging_channels(settings, http),
        public_url=settings.public_url,
        digest_threshold=settings.paging_digest_threshold,
        retry_for=timedelta(hours=settings.paging_retry_hours),
    )
