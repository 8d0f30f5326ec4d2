"""Background jobs, run once per deployment: a database lease picks the one scheduler that acts."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import timedelta

import httpx
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.orm import Session, sessionmaker

from central import leases
from central.clock import Clock
from central.config import CentralSettings
from central.keys import ServiceKeys
from central.reservations.service import Ctx, expire_holds
from central.webhooks.tasks import WebhookDispatcher, run_dispatch

log = logging.getLogger(__name__)
LEASE_NAME = "scheduler"
LEASE_TTL = timedelta(seconds=30)


class Jobs:
    """The jobs themselves, callable directly (tests, `locker-central jobs run-once`)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keys: ServiceKeys,
        clock: Clock,
        http: httpx.Client,
        settings: CentralSettings,
    ) -> None:
        self.sessions = sessions
        self.keys = keys
        self.clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.dispatcher = WebhookDispatcher(
            sessions,
            keys,
            http,
            clock,
            retry_for=timedelta(hours=settings.webhook_retry_hours),
        )

    def is_leader(self) -> bool:
        with self.sessions() as session, session.begin():
            return leases.acquire(session, LEASE_NAME, self.holder, self.clock(), LEASE_TTL)

    def expire_reservations(self) -> int:
        with self.sessions() as session, session.begin():
            return expire_holds(Ctx(session=session, keys=self.keys, now=self.clock()))

    def deliver_webhooks(self) -> None:
        run_dispatch(self.dispatcher)

    def all(self) -> dict[str, Callable[[], object]]:
        return {
            "expire_reservations": self.expire_reservations,
            "deliver_webhooks": self.deliver_webhooks,
        }


def _guarded(jobs: Jobs, name: str, job: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            if not jobs.is_leader():
                return
            job()
        except Exception:
            # A failing job must not kill the scheduler; it runs again at its next interval.
            log.exception("scheduled job %s failed", name)

    return run


INTERVALS = {"expire_reservations": 30, "deliver_webhooks": 2}


def start_scheduler(jobs: Jobs) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    for name, job in jobs.all().items():
        scheduler.add_job(
            _guarded(jobs, name, job),
            "interval",
            seconds=INTERVALS[name],
            id=name,
            max_instances=1,
            coalesce=True,
        )
    scheduler.start()
    return scheduler
