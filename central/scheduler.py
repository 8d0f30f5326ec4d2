"""Background jobs. A database lease picks the one scheduler that runs most of them, and fences
its writes with a token; the jobs that send (webhooks, notices) run on every host, sharing the
work row by row."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError
from datetime import timedelta

import httpx
from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from carrier_adapters.base import CarrierAdapter
from central import leases
from central.analytics.service import FillResult
from central.analytics.tasks import AnalyticsJobs, FlushResult, build_sender
from central.banks.settings import alert_overdue_maintenance
from central.clock import Clock
from central.config import CentralSettings
from central.context import Ctx
from central.keys import ServiceKeys
from central.nodes.auth import purge_nonces
from central.nodes.commands import expire_commands
from central.nodes.courier_codes import JOB_INTERVAL_S as COURIER_CODES_INTERVAL_S
from central.nodes.courier_codes import prepare_codes
from central.nodes.health import mark_silent_nodes_offline
from central.notices.channels import build_channels
from central.notices.tasks import NoticeDispatcher
from central.notices.tasks import run_dispatch as run_notices
from central.ops import alerts as ops_alerts
from central.ops.insight.tasks import sample_occupancy
from central.ops.open_requests import settle as settle_open_requests
from central.paging.channels import build_page_dispatcher
from central.paging.tasks import run_paging
from central.reservations import repository as reservations_repository
from central.reservations.transitions import expire_holds, expire_pickups, send_reminders
from central.tracking.tasks import CarrierPoll, EventLoopThread, TrackingPoller
from central.webhooks.tasks import WebhookDispatcher, run_dispatch

log = logging.getLogger(__name__)
LEASE_NAME = "scheduler"
PICKUP_BATCH = 500


class Jobs:
    """The jobs themselves, callable directly (tests, `locker-central jobs run-once`)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keys: ServiceKeys,
        clock: Clock,
        http: httpx.Client,
        settings: CentralSettings,
        *,
        carrier_adapters: Mapping[str, CarrierAdapter] | None = None,
    ) -> None:
        self.sessions = sessions
        self.keys = keys
        self.clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_ttl = timedelta(seconds=settings.scheduler_lease_s)
        # The fencing token of the lease while this process holds it. Once `fence()` is called
        # (the scheduler does), every transaction of a leader-only job checks it first.
        self.token: int | None = None
        self._fencing = False
        led = leases.guarded_sessions(sessions, self._guard)
        self.led_sessions = led
        self.dispatcher = WebhookDispatcher(
            sessions,
            keys,
            http,
            clock,
            retry_for=timedelta(hours=settings.webhook_retry_hours),
            on_round=ops_alerts.record_webhook_results,
        )
        # Without adapters (no carrier credentials configured) there is nothing to poll.
        self.tracking = (
            TrackingPoller(led, keys, clock, carrier_adapters) if carrier_adapters else None
        )
        self._carrier_io = EventLoopThread()
        self.notices = NoticeDispatcher(
            sessions,
            keys,
            clock,
            build_channels(settings, http),
            public_url=settings.public_url,
            retry_for=timedelta(hours=settings.notice_retry_hours),
            first_retry=timedelta(seconds=settings.notice_first_retry_s),
        )
        # Paging: every host scans and sends (see SHARED_JOBS); email as the notices' SMTP.
        self.paging = build_page_dispatcher(sessions, keys, clock, settings, http)
        self.analytics = AnalyticsJobs(
            led,
            keys,
            clock,
            build_sender(settings),
            retention=timedelta(days=settings.analytics_retention_days),
        )

    def is_leader(self) -> bool:
        """Take or renew the lease; remembers its fencing token (None when another holds it)."""
        with self.sessions() as session, session.begin():
            self.token = leases.acquire(
                session, LEASE_NAME, self.holder, self.clock(), self.lease_ttl
            )
        return self.token is not None

    def fence(self) -> None:
        """From now on, a leader-only job's transactions are refused unless this process holds
        the lease with the token it last got (`leases.LeaseLost`)."""
        self._fencing = True

    def _guard(self, connection: Connection) -> None:
        if not self._fencing:
            return  # called directly (tests, `jobs run`): no lease to answer to
        if self.token is None:
            raise leases.LeaseLost(f"{self.holder} does not hold the {LEASE_NAME} lease")
        leases.check_fence(
            connection,
            LEASE_NAME,
            self.holder,
            self.token,
            self.clock(),
            idle_limit=2 * self.lease_ttl,
        )

    def step_down(self) -> None:
        """Give the lease up at once, for another scheduler to take at its next tick."""
        with self.sessions() as session, session.begin():
            leases.release(session, LEASE_NAME, self.holder)

    def expire_reservations(self) -> int:
        with self.led_sessions() as session, session.begin():
            return expire_holds(Ctx(session=session, keys=self.keys, now=self.clock()))

    def detect_offline_nodes(self) -> int:
        with self.led_sessions() as session, session.begin():
            return mark_silent_nodes_offline(session, self.clock())

    def purge_node_nonces(self) -> int:
        with self.led_sessions() as session, session.begin():
            return purge_nonces(session, self.clock())

    def expire_node_commands(self) -> int:
        with self.led_sessions() as session, session.begin():
            return expire_commands(session, self.clock())

    def expire_pickups(self) -> int:
        with self.led_sessions() as session, session.begin():
            ctx = Ctx(session=session, keys=self.keys, now=self.clock())
            # The same batch expire_pickups takes; those it expires go on their bank's alert.
            due = reservations_repository.expired_pickups(session, ctx.now, PICKUP_BATCH)
            count = expire_pickups(ctx, limit=PICKUP_BATCH)
            ops_alerts.alert_parcels_past_deadline(session, due, ctx.now)
            return count

    def send_reminders(self) -> int:
        with self.led_sessions() as session, session.begin():
            return send_reminders(Ctx(session=session, keys=self.keys, now=self.clock()))

    def prepare_courier_codes(self) -> int:
        """Courier code hashes for today and tomorrow, made ahead of the nodes' pulls."""
        return prepare_codes(
            self.led_sessions, self.keys, self.clock(), interval_s=COURIER_CODES_INTERVAL_S
        )

    def sample_occupancy(self) -> int:
        with self.led_sessions() as session, session.begin():
            return sample_occupancy(session, self.clock())

    def settle_open_requests(self) -> int:
        """Guarded opens: expire requests no second admin approved in time."""
        with self.led_sessions() as session, session.begin():
            return settle_open_requests(session, self.clock())

    def alert_overdue_maintenance(self) -> int:
        """Bank settings: banks and compartments in maintenance past their expected end."""
        with self.led_sessions() as session, session.begin():
            return alert_overdue_maintenance(session, self.clock())

    def deliver_webhooks(self) -> None:
        run_dispatch(self.dispatcher)

    def deliver_notices(self) -> None:
        run_notices(self.notices)

    def page_alerts(self) -> int:
        """Paging: alerts raised and resolved go to the operators subscribed to them."""
        return run_paging(self.paging)

    def poll_tracking(self) -> dict[str, CarrierPoll]:
        if self.tracking is None:
            return {}
        try:
            return self._carrier_io.run(self.tracking.poll)
        except CancelledError:
            # close() on shutdown; what was recorded stays, the rest is asked again next time.
            log.info("tracking poll interrupted by shutdown")
            return {}

    def fill_analytics(self) -> FillResult:
        return self.analytics.fill()

    def flush_analytics(self) -> FlushResult:
        return self.analytics.flush()

    def close(self) -> None:
        """Stop the carrier I/O loop (a poll still running is cancelled) and the notice senders."""
        self._carrier_io.close()
        self.notices.close()
        self.paging.close()

    def all(self) -> dict[str, Callable[[], object]]:
        return {
            "expire_reservations": self.expire_reservations,
            "expire_pickups": self.expire_pickups,
            "send_reminders": self.send_reminders,
            "deliver_webhooks": self.deliver_webhooks,
            "deliver_notices": self.deliver_notices,
            "page_alerts": self.page_alerts,
            "poll_tracking": self.poll_tracking,
            "detect_offline_nodes": self.detect_offline_nodes,
            "purge_node_nonces": self.purge_node_nonces,
            "expire_node_commands": self.expire_node_commands,
            "prepare_courier_codes": self.prepare_courier_codes,
            "sample_occupancy": self.sample_occupancy,
            "fill_analytics": self.fill_analytics,
            "flush_analytics": self.flush_analytics,
            "alert_overdue_maintenance": self.alert_overdue_maintenance,
            "settle_open_requests": self.settle_open_requests,
        }


# Jobs every host runs: their work is claimed row by row (FOR UPDATE SKIP LOCKED), so hosts
# share it out and throughput grows with them. Every other job runs on the lease holder alone.
SHARED_JOBS = frozenset({"deliver_webhooks", "deliver_notices", "page_alerts"})


def _guarded(jobs: Jobs, name: str, job: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            if name not in SHARED_JOBS and not jobs.is_leader():
                return
            job()
        except leases.LeaseLost as exc:
            # Another scheduler took over while this one was stalled: it runs the job now.
            log.warning("scheduled job %s stopped: %s", name, exc)
        except Exception:
            # A failing job must not kill the scheduler; it runs again at its next interval.
            log.exception("scheduled job %s failed", name)

    return run


def _renew(jobs: Jobs) -> Callable[[], None]:
    """Keep the lease (or take it when it lapsed) three times per lease time, whatever the
    intervals of the jobs, so that leadership neither flaps nor waits for a slow job."""

    def run() -> None:
        try:
            jobs.is_leader()
        except Exception:
            log.exception("renewing the scheduler lease failed")

    return run


INTERVALS = {
    "expire_reservations": 30,
    "expire_pickups": 60,
    "send_reminders": 60,
    "deliver_webhooks": 2,
    "deliver_notices": 2,
    "page_alerts": 5,
    "poll_tracking": 300,
    "detect_offline_nodes": 30,
    "purge_node_nonces": 60,
    "expire_node_commands": 60,
    "prepare_courier_codes": COURIER_CODES_INTERVAL_S,
    "sample_occupancy": 300,
    "fill_analytics": 60,
    "flush_analytics": 60,
    "alert_overdue_maintenance": 60,
    "settle_open_requests": 30,
}


def start_scheduler(jobs: Jobs) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    jobs.fence()
    scheduler.add_job(
        _renew(jobs),
        "interval",
        seconds=max(1.0, jobs.lease_ttl.total_seconds() / 3),
        id="renew_lease",
        max_instances=1,
        coalesce=True,
    )
    for name, job in jobs.all().items():
        scheduler.add_job(
            _guarded(jobs, name, job),
            "interval",
            seconds=INTERVALS[name],
            id=name,
            max_instances=1,
            coalesce=True,
        )
    scheduler.add_listener(lambda _event: jobs.close(), EVENT_SCHEDULER_SHUTDOWN)
    scheduler.start()
    return scheduler
