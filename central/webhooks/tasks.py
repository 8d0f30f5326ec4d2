"""Delivering the webhook outbox: signed POSTs, exponential backoff, every attempt recorded."""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import httpx
from sqlalchemy.orm import Session, sessionmaker

from central.backoff import backoff
from central.clock import Clock
from central.keys import ServiceKeys
from central.models import WebhookAttempt, WebhookDelivery
from central.webhooks import repository, signing

log = logging.getLogger(__name__)

FIRST_RETRY = timedelta(seconds=30)
# A claimed delivery whose worker died becomes due again after this long: at least once.
CLAIM_TIMEOUT = timedelta(minutes=5)
USER_AGENT = "locker-central-webhooks/1"


def retry_delay(attempts: int, jitter: Callable[[], float] = random.random) -> timedelta:
    """30 s, 1 min, 2 min, ... capped at an hour, with up to 10 % jitter against herds."""
    return backoff(attempts, FIRST_RETRY, jitter=jitter)


@dataclass(frozen=True, slots=True)
class _Job:
    delivery_id: int
    endpoint_id: str
    url: str
    secret: str
    body: bytes
    event_id: str


@dataclass(frozen=True, slots=True)
class _Result:
    job: _Job
    status_code: int | None
    error: str | None
    duration_ms: int
    attempted_at: datetime

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class RoundObserver(Protocol):
    """Hears which endpoints took a delivery and which failed after each round, in the round's
    transaction (the scheduler passes `ops.alerts.record_webhook_results`, so that operators
    hear of an endpoint that keeps failing and of its recovery)."""

    def __call__(
        self,
        session: Session,
        *,
        succeeded: Collection[str],
        failed: Collection[str],
        now: datetime,
    ) -> None: ...


class WebhookDispatcher:
    """Sends due deliveries. Database work happens in short transactions, never around HTTP."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keys: ServiceKeys,
        client: httpx.Client,
        clock: Clock,
        *,
        retry_for: timedelta = timedelta(hours=72),
        batch_size: int = 200,
        concurrency: int = 4,
        on_round: RoundObserver | None = None,
    ) -> None:
        self._sessions = sessions
        self._on_round = on_round
        self._keys = keys
        self._client = client
        self._clock = clock
        self._retry_for = retry_for
        self.batch_size = batch_size
        self._concurrency = concurrency

    def run_once(self) -> int:
        """Deliver what is due now; returns the number of attempts made."""
        jobs = self._claim()
        if not jobs:
            return 0
        by_endpoint: dict[str, list[_Job]] = defaultdict(list)
        for job in jobs:
            by_endpoint[job.endpoint_id].append(job)
        results: list[_Result] = []
        skipped: list[_Job] = []
        with ThreadPoolExecutor(max_workers=self._concurrency) as pool:
            for endpoint_results, endpoint_skipped in pool.map(
                self._send_endpoint, by_endpoint.values()
            ):
                results.extend(endpoint_results)
                skipped.extend(endpoint_skipped)
        self._record(results, skipped)
        return len(results)

    def _claim(self) -> list[_Job]:
        now = self._clock()
        with self._sessions() as session, session.begin():
            due = repository.due_deliveries(session, now, self.batch_size)
            endpoints = repository.endpoints_by_id(session, {d.endpoint_id for d in due})
            jobs = []
            for delivery in due:
                endpoint = endpoints[delivery.endpoint_id]
                delivery.next_attempt_at = now + CLAIM_TIMEOUT
                jobs.append(
                    _Job(
                        delivery_id=delivery.id,
                        endpoint_id=endpoint.id,
                        url=endpoint.url,
                        secret=self._keys.decrypt(endpoint.secret_encrypted),
                        body=self._keys.decrypt(delivery.body_sealed).encode(),
                        event_id=delivery.event_id,
                    )
                )
            return jobs

    def _send_endpoint(self, jobs: list[_Job]) -> tuple[list[_Result], list[_Job]]:
        # One failure marks the endpoint down for this round: the rest wait for the next one
        # instead of each waiting out its own timeout against the same dead host.
        results: list[_Result] = []
        for index, job in enumerate(jobs):
            result = self._send(job)
            results.append(result)
            if not result.ok:
                return results, jobs[index + 1 :]
        return results, []

    def _send(self, job: _Job) -> _Result:
        attempted_at = self._clock()
        timestamp = int(attempted_at.timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Locker-Event-Id": job.event_id,
            signing.HEADER: signing.sign(job.secret, job.body, timestamp),
        }
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            response = self._client.post(job.url, content=job.body, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        duration_ms = int((time.perf_counter() - started) * 1000)
        return _Result(job, status, error, duration_ms, attempted_at)

    def _record(self, results: list[_Result], skipped: list[_Job]) -> None:
        with self._sessions() as session, session.begin():
            for result in results:
                delivery = session.get(WebhookDelivery, result.job.delivery_id)
                if delivery is None or delivery.status != "pending":
                    continue
                repository.add(
                    session,
                    WebhookAttempt(
                        delivery_id=delivery.id,
                        attempted_at=result.attempted_at,
                        duration_ms=result.duration_ms,
                        status_code=result.status_code,
                        error=result.error,
                    ),
                )
                delivery.attempts += 1
                if result.ok:
                    delivery.status = "delivered"
                    delivery.delivered_at = result.attempted_at
                    delivery.last_error = None
                    continue
                delivery.last_error = result.error
                next_at = result.attempted_at + retry_delay(delivery.attempts)
                if next_at - delivery.created_at > self._retry_for:
                    delivery.status = "failed"
                    log.warning(
                        "webhook delivery %s to %s gave up after %d attempts: %s",
                        delivery.event_id,
                        delivery.endpoint_id,
                        delivery.attempts,
                        result.error,
                    )
                else:
                    delivery.next_attempt_at = next_at
            for job in skipped:
                delivery = session.get(WebhookDelivery, job.delivery_id)
                if delivery is not None and delivery.status == "pending":
                    # Not attempted, so not counted: it simply waits for the endpoint's next round.
                    delivery.next_attempt_at = self._clock() + FIRST_RETRY
            if self._on_round is not None:
                self._on_round(
                    session,
                    succeeded={r.job.endpoint_id for r in results if r.ok},
                    failed={r.job.endpoint_id for r in results if not r.ok},
                    now=self._clock(),
                )


def run_dispatch(dispatcher: WebhookDispatcher) -> None:
    """Scheduler entry: keep delivering while whole batches come back full."""
    while dispatcher.run_once() >= dispatcher.batch_size:
        pass
