"""The `page_alerts` job: scan alert transitions into the page outbox, then send what is due.

Each round scans (`central.paging.scan`), claims the due pages in a short transaction (on
PostgreSQL with `FOR UPDATE SKIP LOCKED`, so hosts running the job at once never take the same
page), writes each message from the alert as it is now, sends outside any transaction and
records the outcome. Pages due for one destination beyond the digest threshold go as one
digest. A page is claimed before it is sent and marked sent right after: a process that dies in
between leaves a claim that runs out after `CLAIM_TIMEOUT`, and the page goes again (the email
with the same Message-ID). Failures are tried again with backoff until `retry_for` has passed
since the page was written; then it is kept as failed.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from central.backoff import backoff
from central.clock import Clock
from central.keys import ServiceKeys
from central.models import Alert, PageOutbox, PageTarget
from central.notices.errors import PermanentSendError, SendError, TransientSendError
from central.notices.tasks import Mailer
from central.paging import repository as repo
from central.paging.messages import Message, PageFacts, render_digest, render_page
from central.paging.scan import forget_old, scan_alerts
from central.paging.senders import WebhookSender, email_message, scrub

log = logging.getLogger(__name__)

CLAIM_TIMEOUT = timedelta(minutes=5)
CLEANUP_EVERY = timedelta(hours=1)
NO_EMAIL = "email is not configured (LOCKER_SMTP_URL)"


@dataclass(frozen=True, slots=True)
class PagingChannels:
    """How pages go: email through `mailer_factory` (None: SMTP not configured) from `sender`,
    webhooks through `webhooks`."""

    sender: str
    webhooks: WebhookSender
    mailer_factory: Callable[[], Mailer] | None = None


@dataclass(frozen=True, slots=True)
class _Delivery:
    """One message to one destination: a single page, or a digest of several."""

    destination: str
    channel: str
    page_ids: tuple[int, ...]
    to: str  # the operator's address, or the target's URL (never logged)
    hint: str
    message: Message

    @property
    def digest(self) -> bool:
        return len(self.page_ids) > 1


@dataclass(frozen=True, slots=True)
class _Outcome:
    delivery: _Delivery
    error: SendError | None = None  # None: sent
    skipped: bool = False  # not tried: its destination or channel failed earlier this round


class PageDispatcher:
    """Runs the paging rounds; database work in short transactions, never around a send."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keys: ServiceKeys,
        clock: Clock,
        channels: PagingChannels,
        *,
        public_url: str,
        digest_threshold: int = 5,
        retry_for: timedelta = timedelta(hours=24),
        first_retry: timedelta = timedelta(seconds=30),
        batch_size: int = 200,
        concurrency: int = 4,
    ) -> None:
        self._sessions = sessions
        self._keys = keys
        self._clock = clock
        self._channels = channels
        self._public_url = public_url
        self._digest_threshold = digest_threshold
        self._retry_for = retry_for
        self._first_retry = first_retry
        self.batch_size = batch_size
        self._concurrency = concurrency
        self._mailer: Mailer | None = None
        self._mailer_lock = threading.Lock()
        self._next_cleanup: datetime | None = None

    def run_once(self) -> int:
        """Scan, then send what is due; returns how many pages were tried."""
        self.scan()
        deliveries = self._claim()
        if not deliveries:
            return 0
        outcomes = self._send_all(deliveries)
        self._record(outcomes)
        return sum(len(o.delivery.page_ids) for o in outcomes if not o.skipped)

    def scan(self) -> int:
        now = self._clock()
        with self._sessions() as session, session.begin():
            written = scan_alerts(session, now)
            if self._next_cleanup is None or now >= self._next_cleanup:
                forget_old(session, now)
                self._next_cleanup = now + CLEANUP_EVERY
            return written

    def close(self) -> None:
        with self._mailer_lock:
            mailer, self._mailer = self._mailer, None
        if mailer is not None:
            try:
                mailer.close()
            except Exception:  # closing is best effort; nothing waits on it
                log.debug("closing the paging mailer failed", exc_info=True)

    # Claiming ----------------------------------------------------------------------------------

    def _claim(self) -> list[_Delivery]:
        now = self._clock()
        with self._sessions() as session, session.begin():
            if self._channels.mailer_factory is None:
                repo.end_pending(session, "unsent", NO_EMAIL, channel="email")
            due = repo.due_pages(session, now, self.batch_size)
            if not due:
                return []
            alerts = repo.alerts_by_id(session, (p.alert_id for p in due))
            banks = repo.bank_names(session, (a.bank_id for a in alerts.values()))
            ids = _ids(due, "email:")
            emails = repo.enabled_operator_emails(session, ids)
            targets = repo.targets_by_id(session, _ids(due, "webhook:"))
            claimed: dict[str, list[tuple[PageOutbox, PageFacts]]] = defaultdict(list)
            to: dict[str, str] = {}
            for page in due:
                address = self._address(page, emails, targets)
                if address is None:
                    continue
                alert = alerts[page.alert_id]
                facts = _facts(page, alert, banks.get(alert.bank_id or ""))
                page.next_attempt_at = now + CLAIM_TIMEOUT
                claimed[page.destination].append((page, facts))
                to[page.destination] = address
            return [
                delivery
                for destination, pages in claimed.items()
                for delivery in self._deliveries(destination, to[destination], pages)
            ]

    def _address(
        self, page: PageOutbox, emails: dict[int, str], targets: dict[int, PageTarget]
    ) -> str | None:
        """Where the page goes now, or None after ending it (its operator or target is gone)."""
        kind, _, raw_id = page.destination.partition(":")
        if kind == "email":
            address = emails.get(int(raw_id))
            if address is None:
                _end(page, "cancelled", "the operator is disabled or gone")
            return address
        target = targets.get(int(raw_id))
        if target is None or not target.enabled:
            _end(page, "cancelled", "the webhook target is disabled or deleted")
            return None
        try:
            return self._keys.decrypt(target.url_sealed)
        except ValueError:
            _end(page, "failed", "the target's URL does not open with this service key")
            return None

    def _deliveries(
        self, destination: str, to: str, pages: list[tuple[PageOutbox, PageFacts]]
    ) -> list[_Delivery]:
        first = pages[0][0]
        hint = first.destination_hint
        if len(pages) > self._digest_threshold:
            message = render_digest([facts for _, facts in pages], self._public_url)
            ids = tuple(page.id for page, _ in pages)
            return [_Delivery(destination, first.channel, ids, to, hint, message)]
        return [
            _Delivery(
                destination,
                page.channel,
                (page.id,),
                to,
                hint,
                render_page(facts, self._public_url),
            )
            for page, facts in pages
        ]

    # Sending -----------------------------------------------------------------------------------

    def _send_all(self, deliveries: list[_Delivery]) -> list[_Outcome]:
        # Email goes down one lane (one SMTP conversation); each webhook target has its own, so
        # a slow receiver holds up only its own pages.
        lanes: dict[str, list[_Delivery]] = defaultdict(list)
        for delivery in deliveries:
            lanes["email" if delivery.channel == "email" else delivery.destination].append(delivery)
        with ThreadPoolExecutor(max_workers=self._concurrency) as pool:
            results = pool.map(self._send_lane, lanes.values())
            return [outcome for lane in results for outcome in lane]

    def _send_lane(self, deliveries: list[_Delivery]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        down = False
        for delivery in deliveries:
            if down:
                outcomes.append(_Outcome(delivery, skipped=True))
                continue
            error = self._send(delivery)
            outcomes.append(_Outcome(delivery, error))
            # The server or receiver is down: its other pages wait for the next round rather
            # than each waiting out its own timeout.
            down = isinstance(error, TransientSendError)
        return outcomes

    def _send(self, delivery: _Delivery) -> SendError | None:
        try:
            if delivery.channel == "email":
                self._send_email(delivery)
            else:
                self._channels.webhooks.send(delivery.to, delivery.message)
        except SendError as exc:
            return exc
        except Exception as exc:  # a bug must not stop the round, nor leak the URL
            error = scrub(f"{type(exc).__name__}: {exc}", delivery.to)
            # No traceback: an exception's text may quote the URL, and this one is scrubbed.
            log.error("page to %s could not be sent: %s", delivery.hint, error)
            return PermanentSendError(error)
        return None

    def _send_email(self, delivery: _Delivery) -> None:
        sender = self._channels.sender
        key = f"page/{delivery.destination}/{','.join(map(str, delivery.page_ids))}"
        message = email_message(
            delivery.message, sender=sender, to=delivery.to, key=key, date=self._clock()
        )
        with self._mailer_lock:
            mailer = self._mailer
            if mailer is None:
                if self._channels.mailer_factory is None:  # claimed only when configured
                    raise PermanentSendError(NO_EMAIL)
                mailer = self._mailer = self._channels.mailer_factory()
        mailer.send(message)

    # Recording ---------------------------------------------------------------------------------

    def _record(self, outcomes: Sequence[_Outcome]) -> None:
        now = self._clock()
        with self._sessions() as session, session.begin():
            for outcome in outcomes:
                delivery = outcome.delivery
                pages = [session.get(PageOutbox, page_id) for page_id in delivery.page_ids]
                live = [p for p in pages if p is not None and p.status == "pending"]
                if outcome.skipped:
                    for page in live:
                        page.next_attempt_at = now + self._first_retry
                    continue
                for page in live:
                    page.attempts += 1
                if outcome.error is None:
                    for page in live:
                        page.sent_at = now
                        page.digest_size = len(delivery.page_ids) if delivery.digest else None
                        _end(page, "sent", None)
                    continue
                self._failed(delivery, live, outcome.error, now)

    def _failed(
        self, delivery: _Delivery, pages: list[PageOutbox], error: SendError, now: datetime
    ) -> None:
        if not pages:
            return
        # One delay for the whole delivery: a digest's pages stay together for the next one.
        delay = backoff(max(p.attempts for p in pages), self._first_retry)
        if isinstance(error, TransientSendError) and error.retry_after_s is not None:
            delay = max(delay, timedelta(seconds=error.retry_after_s))
        for page in pages:
            if isinstance(error, TransientSendError) and (
                now + delay - page.created_at <= self._retry_for
            ):
                page.next_attempt_at = now + delay
                page.last_error = error.detail
                continue
            _end(page, "failed", error.detail)
        if pages[0].status == "failed":
            log.warning(
                "page to %s gave up after %d attempts: %s",
                delivery.hint,
                pages[0].attempts,
                error.detail,
            )


def run_paging(dispatcher: PageDispatcher) -> int:
    """Scheduler entry: keep going while whole batches come back full."""
    total = 0
    while True:
        tried = dispatcher.run_once()
        total += tried
        if tried < dispatcher.batch_size:
            return total


def _end(page: PageOutbox, status: str, error: str | None) -> None:
    page.status = status
    page.last_error = error


def _ids(pages: Sequence[PageOutbox], prefix: str) -> list[int]:
    keys = [page.destination for page in pages]
    return [int(key.removeprefix(prefix)) for key in keys if key.startswith(prefix)]


def _facts(page: PageOutbox, alert: Alert, bank_name: str | None) -> PageFacts:
    return PageFacts(
        alert_id=alert.id,
        transition="resolved" if page.transition == "resolved" else "raised",
        alert_type=alert.type,
        subject=alert.subject,
        detail=alert.detail,
        bank_id=alert.bank_id,
        bank_name=bank_name,
        raised_at=alert.created_at,
        resolved_at=alert.resolved_at,
    )
