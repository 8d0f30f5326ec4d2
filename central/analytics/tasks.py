"""The analytics jobs: fill the outbox from history, flush it to Mixpanel in batches.

Events go through the official `mixpanel` library: `Mixpanel.track` builds each message (token,
`distinct_id`, `time`, `$insert_id`), and its `Consumer` posts them to `/track` in batches of up
to 50, Mixpanel's limit for one request. A batch that fails stays in the outbox with a growing
delay; it is sent again with the same `$insert_id`s, which Mixpanel deduplicates.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import mixpanel
from sqlalchemy.orm import Session, sessionmaker

from central.analytics import repository as repo
from central.analytics import service
from central.backoff import backoff
from central.clock import Clock
from central.config import CentralSettings
from central.keys import ServiceKeys
from central.models import AnalyticsEvent

log = logging.getLogger(__name__)

BATCH_SIZE = 50  # Mixpanel's /track takes at most 50 events per request
MAX_BATCHES_PER_FLUSH = 40
FIRST_RETRY = timedelta(seconds=60)
# /track silently drops events older than five days; an hour of margin for clocks and queues.
TRACK_WINDOW = timedelta(days=5) - timedelta(hours=1)


class AnalyticsError(Exception):
    """The analytics endpoint did not take a batch."""


class EventSender(Protocol):
    def send(self, rows: Sequence[AnalyticsEvent]) -> None:
        """Deliver one batch (at most 50) or raise AnalyticsError."""


class _Collector:
    """A consumer for `Mixpanel.track` that keeps the messages it is given instead of sending."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def send(self, endpoint: str, json_message: str, api_key: object = None) -> None:
        self.messages.append(json_message)


class MixpanelSender:
    """Formats with `Mixpanel.track` and posts a batch with one `Consumer.send` call."""

    def __init__(
        self,
        token: str,
        *,
        api_host: str = "api.mixpanel.com",
        events_url: str | None = None,
        timeout_s: float = 10.0,
        retry_limit: int = 2,
    ) -> None:
        self._token = token
        self._consumer = mixpanel.Consumer(
            events_url=events_url,
            api_host=api_host,
            request_timeout=timeout_s,
            retry_limit=retry_limit,
        )

    def send(self, rows: Sequence[AnalyticsEvent]) -> None:
        collector = _Collector()
        client = mixpanel.Mixpanel(self._token, consumer=collector)
        for row in rows:
            client.track(row.distinct_id, row.event, message_properties(row))
        batch = "[" + ",".join(collector.messages) + "]"
        try:
            self._consumer.send("events", batch)
        except mixpanel.MixpanelException as exc:
            raise AnalyticsError(str(exc)[:500]) from exc


def message_properties(row: AnalyticsEvent) -> dict[str, Any]:
    """The row's properties plus its own event time and insert id (the library's would be new)."""
    return {
        **row.properties,
        "time": int(row.occurred_at.timestamp()),
        "$insert_id": row.insert_id,
    }


def retry_delay(attempts: int, jitter: Callable[[], float] = random.random) -> timedelta:
    return backoff(attempts, FIRST_RETRY, jitter=jitter)


@dataclass(frozen=True, slots=True)
class FlushResult:
    sent: int
    failed: int
    stale: int


def build_sender(settings: CentralSettings) -> EventSender | None:
    """The Mixpanel sender, or None without a project token (events are then kept locally)."""
    if settings.mixpanel_token is None:
        return None
    return MixpanelSender(
        settings.mixpanel_token.get_secret_value(),
        api_host=settings.mixpanel_api_host,
        events_url=settings.mixpanel_events_url,
    )


class AnalyticsJobs:
    """Fill and flush, each in short transactions; nothing is held open around HTTP."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keys: ServiceKeys,
        clock: Clock,
        sender: EventSender | None,
        *,
        retention: timedelta = timedelta(days=30),
    ) -> None:
        self._sessions = sessions
        self._keys = keys
        self._clock = clock
        self.sender = sender
        self.retention = retention

    def fill(self) -> service.FillResult:
        """New rows from history; also drops rows done with for longer than the retention."""
        with self._sessions() as session, session.begin():
            now = self._clock()
            result = service.fill(session, self._keys, now, send=self.sender is not None)
            purged = service.purge(session, now, self.retention)
        if purged:
            log.info("analytics: purged %d old outbox rows", purged)
        return result

    def flush(self) -> FlushResult:
        """Send due rows, 50 at a time, until none are due or the endpoint fails."""
        if self.sender is None:
            return FlushResult(sent=0, failed=0, stale=0)
        sent = stale = 0
        for _ in range(MAX_BATCHES_PER_FLUSH):
            now = self._clock()
            with self._sessions() as session, session.begin():
                rows = list(repo.due(session, now, BATCH_SIZE))
                too_old = [row.id for row in rows if row.occurred_at < now - TRACK_WINDOW]
                if too_old:
                    stale += repo.mark_stale(session, too_old)
            batch = [row for row in rows if row.id not in set(too_old)]
            if not rows:
                break
            if not batch:
                continue
            try:
                self.sender.send(batch)
            except AnalyticsError as exc:
                with self._sessions() as session, session.begin():
                    attempts = max(row.attempts for row in batch) + 1
                    repo.mark_failed(
                        session, [row.id for row in batch], now + retry_delay(attempts), str(exc)
                    )
                log.warning("analytics: batch of %d not sent: %s", len(batch), exc)
                return FlushResult(sent=sent, failed=len(batch), stale=stale)
            with self._sessions() as session, session.begin():
                sent += repo.mark_sent(session, [row.id for row in batch], self._clock())
            if len(rows) < BATCH_SIZE:
                break
        return FlushResult(sent=sent, failed=0, stale=stale)
