"""Sending the notice outbox: claimed in short transactions, rendered and sent outside them.

Each round claims what is due (on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so that several
senders never take the same row), renders each notice with the bank's and carrier's current
details, sends it on its channel and records the outcome. A notice is sent once: its row is
claimed before it is sent and marked sent right after; a process that dies in between leaves a
claim that runs out after `CLAIM_TIMEOUT`, and the email goes again with the same Message-ID,
which mail clients recognise. A failure that may pass is tried again with backoff for
`retry_for`; one that will not (a refused address, an invalid number) is recorded as failed at
once. A channel that fails in a round is left alone for the rest of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from central.backoff import backoff
from central.clock import Clock
from central.keys import ServiceKeys
from central.models import Bank, Carrier, Notice
from central.notices.content import NoticeContent, render_email, render_sms
from central.notices.dropoff_content import (
    DROPOFF_CODE,
    DropoffNotice,
    dropoff_notice,
    render_dropoff_email,
    render_dropoff_sms,
)
from central.notices.errors import PermanentSendError, SendError, TransientSendError
from central.notices.sms import SmsSender

log = logging.getLogger(__name__)
_Row = TypeVar("_Row", Bank, Carrier)

CLAIM_TIMEOUT = timedelta(minutes=5)
NOT_CONFIGURED = {
    "email": "email is not configured (LOCKER_SMTP_URL)",
    "sms": "SMS is not configured (LOCKER_TWILIO_*)",
}


class Mailer(Protocol):
    """What sends email (`central.notices.smtp.SmtpMailer`); one per thread."""

    def send(self, message: Any) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Channels:
    """How each channel sends; a channel left None is not configured."""

    sender: str
    mailer_factory: Callable[[], Mailer] | None = None
    sms: SmsSender | None = None

    def configured(self, channel: str) -> bool:
        return (self.mailer_factory if channel == "email" else self.sms) is not None


@dataclass(frozen=True, slots=True)
class _Job:
    notice_id: int
    key: str
    channel: str
    to: str
    content: NoticeContent | DropoffNotice


@dataclass(frozen=True, slots=True)
class _Outcome:
    job: _Job
    error: SendError | None  # None: sent
    provider_ref: str | None = None
    skipped: bool = False  # not tried: its channel failed earlier in the round


class NoticeDispatcher:
    """Sends due notices; database work in short transactions, never around a send."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keys: ServiceKeys,
        clock: Clock,
        channels: Channels,
        *,
        public_url: str,
        retry_for: timedelta = timedelta(hours=48),
        first_retry: timedelta = timedelta(seconds=30),
        batch_size: int = 100,
        concurrency: int = 4,
    ) -> None:
        self._sessions = sessions
        self._keys = keys
        self._clock = clock
        self._channels = channels
        self._public_url = public_url.rstrip("/")
        self._retry_for = retry_for
        self._first_retry = first_retry
        self.batch_size = batch_size
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="notices")
        self._local = threading.local()
        self._mailers: list[Mailer] = []
        self._mailers_lock = threading.Lock()

    def run_once(self) -> int:
        """Send what is due now; returns how many notices were tried."""
        jobs = self._claim()
        if not jobs:
            return 0
        down: set[str] = set()
        # One notice per channel goes first, alone: when its server is down, that is the one
        # attempt this round makes of it, rather than one timeout per notice in flight.
        probes = {job.channel: job for job in reversed(jobs)}
        outcomes = list(self._pool.map(lambda job: self._send(job, down), probes.values()))
        rest = [job for job in jobs if probes[job.channel] is not job]
        outcomes += self._pool.map(lambda job: self._send(job, down), rest)
        self._record(outcomes)
        return sum(1 for outcome in outcomes if not outcome.skipped)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._mailers_lock:
            mailers, self._mailers = self._mailers, []
        for mailer in mailers:
            try:
                mailer.close()
            except Exception:  # closing is best effort; nothing waits on it
                log.debug("closing a mailer failed", exc_info=True)

    # Claiming ----------------------------------------------------------------------------------

    def _claim(self) -> list[_Job]:
        now = self._clock()
        with self._sessions() as session, session.begin():
            # A channel without settings sends nothing: its notices end as "not sent" in one
            # statement, whatever their number.
            for channel, reason in NOT_CONFIGURED.items():
                if not self._channels.configured(channel):
                    session.execute(
                        update(Notice)
                        .where(
                            Notice.status == "pending",
                            Notice.channel == channel,
                            Notice.next_attempt_at <= now,
                        )
                        .values(status="unsent", last_error=reason, payload_sealed=None)
                    )
            stmt = (
                select(Notice)
                .where(Notice.status == "pending", Notice.next_attempt_at <= now)
                .order_by(Notice.next_attempt_at, Notice.id)
                .limit(self.batch_size)
            )
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            due = session.scalars(stmt).all()
            if not due:
                return []
            banks = _by_id(session, Bank, {n.bank_id for n in due})
            carriers = _by_id(session, Carrier, {n.carrier_id for n in due})
            jobs: list[_Job] = []
            for notice in due:
                job = self._job(notice, banks.get(notice.bank_id), carriers.get(notice.carrier_id))
                if job is None:
                    _finish(notice, "failed", "the notice's sealed content does not open")
                    continue
                notice.next_attempt_at = now + CLAIM_TIMEOUT
                jobs.append(job)
            return jobs

    def _job(self, notice: Notice, bank: Bank | None, carrier: Carrier | None) -> _Job | None:
        if notice.payload_sealed is None or bank is None:
            return None
        try:
            facts: dict[str, Any] = json.loads(self._keys.decrypt(notice.payload_sealed))
        except ValueError:
            return None
        carrier_name = carrier.name if carrier is not None else notice.carrier_id.upper()
        if notice.kind == DROPOFF_CODE:
            dropoff = dropoff_notice(
                facts, language=notice.language, bank=bank, carrier_name=carrier_name
            )
            return _Job(notice.id, notice.key, notice.channel, facts["to"], dropoff)
        content = NoticeContent(
            kind=notice.kind,  # type: ignore[arg-type]  # written by outbox.enqueue from NoticeKind
            language="es" if notice.language == "es" else "en",
            recipient_name=facts.get("name"),
            carrier_name=carrier_name,
            tracking_number=facts["tracking_number"],
            bank_name=bank.name,
            bank_address=bank.address,
            bank_lat=bank.lat,
            bank_lon=bank.lon,
            bank_timezone=bank.timezone,
            opening_hours=bank.opening_hours,
            deadline=_when(facts.get("deadline")),
            pickup_code=facts.get("code"),
            qr_payload=facts.get("qr"),
            page_url=f"{self._public_url}/p/{facts['token']}",
            compartment=facts.get("compartment"),
            at=_when(facts.get("at")),
            shares_code=facts.get("shared") is True,
        )
        return _Job(notice.id, notice.key, notice.channel, facts["to"], content)

    # Sending -----------------------------------------------------------------------------------

    def _send(self, job: _Job, down: set[str]) -> _Outcome:
        if job.channel in down:
            return _Outcome(job, None, skipped=True)
        try:
            ref = self._send_email(job) if job.channel == "email" else self._send_sms(job)
        except SendError as exc:
            if isinstance(exc, TransientSendError):
                down.add(job.channel)
            return _Outcome(job, exc)
        except Exception as exc:  # a rendering bug must not stop the round
            log.exception("notice %s could not be rendered or sent", job.key)
            return _Outcome(job, PermanentSendError(f"{type(exc).__name__}: {exc}"))
        return _Outcome(job, None, provider_ref=ref)

    def _send_email(self, job: _Job) -> str:
        message_id = _message_id(job.key, self._channels.sender)
        sender = self._channels.sender
        message = (
            render_dropoff_email(job.content, sender=sender, to=job.to, message_id=message_id)
            if isinstance(job.content, DropoffNotice)
            else render_email(job.content, sender=sender, to=job.to, message_id=message_id)
        )
        self._mailer().send(message)
        return message_id

    def _send_sms(self, job: _Job) -> str:
        if self._channels.sms is None:  # claimed only when configured
            raise PermanentSendError(NOT_CONFIGURED["sms"])
        content = job.content
        text = (
            render_dropoff_sms(content)
            if isinstance(content, DropoffNotice)
            else render_sms(content)
        )
        return self._channels.sms.send(job.to, text)

    def _mailer(self) -> Mailer:
        mailer: Mailer | None = getattr(self._local, "mailer", None)
        if mailer is None:
            if self._channels.mailer_factory is None:  # claimed only when configured
                raise PermanentSendError(NOT_CONFIGURED["email"])
            mailer = self._local.mailer = self._channels.mailer_factory()
            with self._mailers_lock:
                self._mailers.append(mailer)
        return mailer

    # Recording ---------------------------------------------------------------------------------

    def _record(self, outcomes: Sequence[_Outcome]) -> None:
        now = self._clock()
        with self._sessions() as session, session.begin():
            for outcome in outcomes:
                notice = session.get(Notice, outcome.job.notice_id)
                if notice is None or notice.status != "pending":
                    continue
                if outcome.skipped:
                    notice.next_attempt_at = now + self._first_retry
                    continue
                notice.attempts += 1
                error = outcome.error
                if error is None:
                    notice.sent_at = now
                    notice.provider_ref = outcome.provider_ref
                    _finish(notice, "sent", None)
                elif isinstance(error, TransientSendError):
                    self._later(notice, error, now)
                else:
                    _finish(notice, "failed", error.detail)
                    log.warning("notice %s failed: %s", notice.key, error.detail)

    def _later(self, notice: Notice, error: TransientSendError, now: datetime) -> None:
        delay = backoff(notice.attempts, self._first_retry)
        if error.retry_after_s is not None:
            delay = max(delay, timedelta(seconds=error.retry_after_s))
        if now + delay - notice.created_at > self._retry_for:
            _finish(notice, "failed", error.detail)
            log.warning(
                "notice %s gave up after %d attempts: %s", notice.key, notice.attempts, error.detail
            )
            return
        notice.last_error = error.detail
        notice.next_attempt_at = now + delay


def run_dispatch(dispatcher: NoticeDispatcher) -> None:
    """Scheduler entry: keep sending while whole batches come back full."""
    while dispatcher.run_once() >= dispatcher.batch_size:
        pass


def _finish(notice: Notice, status: str, error: str | None) -> None:
    """The notice's end: whatever it was to say, and to whom, is wiped from the row."""
    notice.status = status
    notice.last_error = error
    notice.payload_sealed = None


def _message_id(key: str, sender: str) -> str:
    domain = sender.rpartition("@")[2].rstrip(">").strip() or "localhost"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _by_id(session: Session, model: type[_Row], ids: set[str]) -> dict[str, _Row]:
    rows = session.scalars(select(model).where(model.id.in_(ids)))
    return {row.id: row for row in rows}
