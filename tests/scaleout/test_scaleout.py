"""Central on three hosts behind HAProxy (TLS ended there), on one PostgreSQL database:
allocation stays exact, a host killed under load loses and doubles nothing, one scheduler leads
at a time and a stale one writes nothing, every host delivers a share of the webhooks, and a
node syncs through the proxy over verified TLS. Each test prints its figures (`pytest -s`)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, Row, create_engine, text
from sqlalchemy.engine import make_url

from central.banks.service import NewBank, add_bank, parse_compartment_spec
from central.carriers.service import add_carrier, create_api_key
from central.db import make_engine, make_sessionmaker, upgrade_database
from central.keys import ServiceKeys
from central.nodes.enrollment import issue_enrollment_token
from locker_node.config import NodeConfig
from tests.central.conftest import PG_URL, TEST_SECRET
from tests.e2e.harness import BANK, Carrier, World, deposit
from tests.locker_node.e2e.nodes import LOCKER_NODE, free_port, spawn
from tests.scaleout.harness import (
    CARRIER,
    HAPROXY,
    Cluster,
    Host,
    Lease,
    Receiver,
    app_name,
    holder_pid,
    install_audit,
    wait_for,
)

pytestmark = [pytest.mark.scaleout, pytest.mark.slow, pytest.mark.postgres]

LEASE_S = 3.0
BANKS = {"EXACT": "M:50", "LOAD": "M:4000", "STALE": "S:10", "HOOKS": "M:600", BANK: "S:2,M:2"}
RETRYABLE = (502, 503)  # the proxy's answers when no host could take a request
CLIENTS = 12  # threads reserving through the proxy while a host is killed
EXPIRE_EVERY_S = 30  # central.scheduler.INTERVALS["expire_reservations"]


@contextmanager
def throwaway_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A database of its own on `admin_url`'s server, migrated with Alembic, dropped at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
            upgrade_database(url)
            yield url
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def create_world(url: str, banks: Mapping[str, str]) -> str:
    """Carrier CARRIER with one API key, and the banks (id: compartments, "M:50") side by side
    in New York (the e2e harness's courier codes are for its time zone); returns the key."""
    now = datetime.now(UTC)
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine).begin() as session:
            add_carrier(session, CARRIER, None, now)
            key = create_api_key(session, CARRIER, now).key
            for n, (bank, spec) in enumerate(banks.items()):
                place = (40.75 + n * 0.001, -73.99)
                compartments = parse_compartment_spec(spec)
                new = NewBank(bank, bank, f"{n} Test St", *place, compartments, "America/New_York")
                add_bank(session, new, now)
    finally:
        engine.dispose()
    return key


@dataclass
class Scaleout:
    cluster: Cluster
    url: str
    db: Engine
    api_key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def rows(self, sql: str, **params: Any) -> Sequence[Row[Any]]:
        with self.db.begin() as conn:
            return conn.execute(text(sql), params).all()

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.db.begin() as conn:
            return conn.execute(text(sql), params).scalar_one()

    def active(self, bank: str) -> int:
        count: int = self.scalar(
            "SELECT count(*) FROM reservations WHERE bank_id = :bank "
            "AND status IN ('reserved', 'deposited')",
            bank=bank,
        )
        return count


@pytest.fixture(scope="module")
def scaleout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scaleout]:
    """Three hosts, HAProxy and a fresh database for this module; all of it gone afterwards."""
    if not PG_URL:
        pytest.skip("LOCKER_TEST_DATABASE_URL is not set")
    if not Path(HAPROXY).exists():
        pytest.skip(f"{HAPROXY} is missing (apt-get install haproxy)")
    directory = tmp_path_factory.mktemp("scaleout")
    with throwaway_database(PG_URL, "locker_scaleout") as url:
        install_audit(url)
        key = create_world(url, BANKS)
        db = create_engine(url)
        try:
            with Cluster(directory, url, TEST_SECRET, lease_s=LEASE_S) as cluster:
                print(
                    f"\nnetwork: {cluster.network.kind} ({cluster.network.why}); logs {directory}"
                )
                cluster.start_all()
                yield Scaleout(cluster, url, db, key)
        finally:
            db.dispose()


def reservation(tracking: str, bank: str, size: str = "M") -> dict[str, str]:
    return {"tracking_number": tracking, "bank_id": bank, "size": size}


async def post_all(
    scaleout: Scaleout, bodies: Sequence[dict[str, str]], concurrency: int
) -> list[tuple[int, dict[str, Any]]]:
    """POST every body to /v1/reservations through the proxy, `concurrency` at a time."""
    gate = asyncio.Semaphore(concurrency)
    async with scaleout.cluster.async_client(concurrency) as client:

        async def post(body: dict[str, str]) -> tuple[int, dict[str, Any]]:
            async with gate:
                answer = await client.post("/v1/reservations", json=body, headers=scaleout.auth)
                return answer.status_code, answer.json()

        return list(await asyncio.gather(*(post(body) for body in bodies)))


def reserve(client: httpx.Client, scaleout: Scaleout, tracking: str, bank: str, size: str) -> str:
    answer = client.post(
        "/v1/reservations", json=reservation(tracking, bank, size), headers=scaleout.auth
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def new_leader(cluster: Cluster, old: Lease) -> Lease | None:
    lease = cluster.lease()
    return lease if lease is not None and lease.holder != old.holder else None


def test_allocation_stays_exact_through_the_proxy(scaleout: Scaleout) -> None:
    before = scaleout.cluster.proxy.answered()
    bodies = [reservation(f"EXACT-{n:03d}", "EXACT") for n in range(200)]
    started = time.perf_counter()
    answers = asyncio.run(post_all(scaleout, bodies, concurrency=len(bodies)))
    elapsed = time.perf_counter() - started
    after = scaleout.cluster.proxy.answered()
    spread = {name: after[name] - before[name] for name in after}
    statuses = Counter(status for status, _ in answers)
    active = scaleout.active("EXACT")
    available = scaleout.scalar(
        "SELECT available FROM bank_capacity WHERE bank_id = 'EXACT' AND size = 'M'"
    )
    print(
        f"\nexactness: 200 at once for 50 units in {elapsed:.2f} s: {dict(statuses)}; "
        f"answered per host {spread}; database: {active} active, {available} available"
    )
    assert statuses == {201: 50, 409: 150}
    assert {body["error"] for status, body in answers if status == 409} == {"no_capacity"}
    assert (active, available) == (50, 0)
    assert all(count > 0 for count in spread.values()), spread  # every host took a share


def test_one_scheduler_leads_at_a_time(scaleout: Scaleout) -> None:
    cluster = scaleout.cluster
    cluster.wait_in_rotation(cluster.hosts)
    samples = []
    for _ in range(30):  # three seconds: a lease time, three renewals
        samples.append(wait_for(cluster.lease, "a scheduler leader"))
        time.sleep(0.1)
    holders = {(lease.holder, lease.token) for lease in samples}
    leader = cluster.host_of(samples[-1].pid)
    print(
        f"\nleader: {samples[-1].holder} ({leader.name if leader else '?'}), token "
        f"{samples[-1].token}, renewed {len({s.expires_at for s in samples})} times in 3 s"
    )
    assert len(holders) == 1, holders
    assert leader is not None and leader.alive() and leader.pid == samples[-1].pid
    assert samples[-1].expires_at > samples[0].expires_at  # renewed, not lapsing


@dataclass
class LoadLog:
    """Every attempt of every tracking number: (status or transport error, reservation id)."""

    attempts: dict[str, list[tuple[int | str, str | None]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, tracking: str, attempts: list[tuple[int | str, str | None]]) -> None:
        with self.lock:
            self.attempts[tracking] = attempts

    def size(self) -> int:
        with self.lock:
            return len(self.attempts)


def reserve_until_answered(
    client: httpx.Client, scaleout: Scaleout, tracking: str, bank: str
) -> list[tuple[int | str, str | None]]:
    """POST until central answers, sending the same tracking number again whenever the proxy
    or the connection lost the request (a retry is safe: one reservation per tracking number)."""
    attempts: list[tuple[int | str, str | None]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            answer = client.post(
                "/v1/reservations", json=reservation(tracking, bank), headers=scaleout.auth
            )
        except httpx.TransportError as exc:
            attempts.append((type(exc).__name__, None))
        else:
            if answer.status_code not in RETRYABLE:
                ok = answer.status_code in (200, 201)
                attempts.append((answer.status_code, answer.json()["id"] if ok else None))
                return attempts
            attempts.append((answer.status_code, None))
        time.sleep(0.05)
    raise AssertionError(f"{tracking}: no answer in 60 s: {attempts}")


def drive(scaleout: Scaleout, client_no: int, stop: threading.Event, log: LoadLog) -> None:
    with scaleout.cluster.client() as client:
        n = 0
        while not stop.is_set():
            tracking = f"LOAD-{client_no:02d}-{n:05d}"
            log.record(tracking, reserve_until_answered(client, scaleout, tracking, "LOAD"))
            n += 1


def kill_under_load(scaleout: Scaleout, log: LoadLog, lease: Lease) -> tuple[Lease, float]:
    """Reservation load through the proxy; SIGKILL the leader's host in the middle of it.
    Returns the next leader and how long it took to take over."""
    cluster = scaleout.cluster
    victim = cluster.host_of(lease.pid)
    assert victim is not None
    stop = threading.Event()
    with ThreadPoolExecutor(CLIENTS) as pool:
        clients = [pool.submit(drive, scaleout, n, stop, log) for n in range(CLIENTS)]
        try:
            wait_for(lambda: log.size() >= 300 or None, "the load to build up")
            killed_at = time.monotonic()
            cluster.kill(victim)
            successor = wait_for(lambda: new_leader(cluster, lease), "a new leader", 30)
            takeover_s = time.monotonic() - killed_at
            at_kill = log.size()
            wait_for(lambda: log.size() >= at_kill + 300 or None, "the load after the kill")
        finally:
            stop.set()
        for future in clients:
            future.result()
    return successor, takeover_s


def test_a_host_killed_under_load_loses_and_doubles_nothing(scaleout: Scaleout) -> None:
    cluster = scaleout.cluster
    cluster.wait_in_rotation(cluster.hosts)
    lease = wait_for(cluster.lease, "a scheduler leader")
    victim = cluster.host_of(lease.pid)
    assert victim is not None
    log = LoadLog()
    retried_before = cluster.proxy.retried()
    started = time.perf_counter()
    successor, takeover_s = kill_under_load(scaleout, log, lease)
    elapsed = time.perf_counter() - started
    retried = [n - m for n, m in zip(cluster.proxy.retried(), retried_before, strict=True)]

    tries = log.attempts
    answered = {t: attempts[-1] for t, attempts in tries.items()}
    lost = Counter(status for attempts in tries.values() for status, _ in attempts[:-1])
    in_db: dict[str, list[str]] = defaultdict(list)
    for row in scaleout.rows("SELECT tracking_number, id FROM reservations WHERE bank_id = 'LOAD'"):
        in_db[row.tracking_number].append(row.id)
    capacity = scaleout.rows(
        "SELECT total, available FROM bank_capacity WHERE bank_id = 'LOAD' AND size = 'M'"
    )[0]
    active = scaleout.active("LOAD")
    successor_host = cluster.host_of(successor.pid)
    print(
        f"\nkill under load: {victim.name} (the leader) killed; {len(tries)} reservations in "
        f"{elapsed:.1f} s ({len(tries) / elapsed:.0f}/s), {CLIENTS} clients; answers "
        f"{dict(Counter(a[0] for a in answered.values()))}; lost, then sent again by the "
        f"client: {dict(lost)}; proxy's retries {retried[0]}, redispatches {retried[1]}; "
        f"{successor_host.name if successor_host else '?'} took the lease (token "
        f"{lease.token} -> {successor.token}) {takeover_s:.2f} s after the kill"
    )

    assert {status for status, _ in answered.values()} <= {200, 201}
    assert all(isinstance(s, str) or s in RETRYABLE for s in lost), lost  # no other 5xx
    doubles = {t: ids for t, ids in in_db.items() if len(ids) > 1}
    assert not doubles
    assert {t: ids[0] for t, ids in in_db.items()} == {t: a[1] for t, a in answered.items()}
    assert capacity.available == capacity.total - active
    assert successor.token > lease.token
    assert successor_host is not None and successor_host.alive()
    assert takeover_s <= 2 * LEASE_S + 2

    # Asked again, every reservation is the one its client was given, whichever host answers.
    with cluster.client() as client:
        again = [t for t, attempts in tries.items() if len(attempts) > 1] + list(tries)[:50]
        for tracking in again:
            answer = client.post(
                "/v1/reservations", json=reservation(tracking, "LOAD"), headers=scaleout.auth
            )
            assert (answer.status_code, answer.json()["id"]) == (200, answered[tracking][1])
    cluster.restart(victim)


def stop_at_rest(scaleout: Scaleout, host: Host) -> None:
    """SIGSTOP `host` at a moment when none of its transactions is open. Stopped inside one on
    the lease row (a renewal, or a fenced job holding it FOR SHARE), it would keep every other
    host from taking over until it woke: the fence makes a takeover wait for that transaction."""
    open_transactions = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :app "
        "AND xact_start IS NOT NULL"
    )
    for _ in range(50):
        os.kill(host.pid, signal.SIGSTOP)
        if scaleout.scalar(open_transactions, app=app_name(host)) == 0:
            time.sleep(0.1)  # a statement sent just before the stop shows up by now
            if scaleout.scalar(open_transactions, app=app_name(host)) == 0:
                return
        os.kill(host.pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError(f"{host.name} always had a transaction open")


def test_a_leader_stopped_past_its_lease_writes_nothing_when_it_wakes(scaleout: Scaleout) -> None:
    """The observable is the audit: who wrote each expiry, under which lease and token. (A
    leader caught between its lease check and its job's first statement would log the fence's
    refusal on waking; no signal can be timed into that window, so tests/central/test_leases.py
    covers it, and this test prints whatever the woken leader logged.)"""
    cluster = scaleout.cluster
    cluster.wait_in_rotation(cluster.hosts)
    lease = wait_for(cluster.lease, "a scheduler leader")
    stale = cluster.host_of(lease.pid)
    assert stale is not None
    with cluster.client() as client:
        due = [reserve(client, scaleout, f"STALE-{n}", "STALE", "S") for n in range(4)]
    stop_at_rest(scaleout, stale)
    try:
        with scaleout.db.begin() as conn:  # due now, so that whoever leads expires them
            conn.execute(
                text(
                    "UPDATE reservations SET reserved_until = now() - interval '1 second' "
                    "WHERE id = ANY(:ids)"
                ),
                {"ids": due},
            )
        stopped_at = time.monotonic()
        successor = wait_for(lambda: new_leader(cluster, lease), "a takeover", 30)
        takeover_s = time.monotonic() - stopped_at
    finally:
        os.kill(stale.pid, signal.SIGCONT)
    log_at_resume = len(stale.log_text())

    def expired() -> bool | None:
        count = scaleout.scalar(
            "SELECT count(*) FROM reservations WHERE id = ANY(:ids) AND status = 'expired'", ids=due
        )
        return count == len(due) or None

    wait_for(expired, "the due holds to be expired", EXPIRE_EVERY_S + 20)
    later = []
    for _ in range(3):  # a lease time after it woke, the lease is still the successor's
        time.sleep(1)
        later.append(wait_for(cluster.lease, "the lease"))
    audit = scaleout.rows(
        "SELECT app, lease_holder, lease_token, row_data->>'reservation_id' AS reservation_id "
        "FROM scaleout_audit WHERE what = 'expiry'"
    )
    lost_at = scaleout.scalar(
        "SELECT min(at) FROM scaleout_audit WHERE what = 'lease' "
        "AND (row_data->>'token')::bigint > :token",
        token=lease.token,
    )
    late = scaleout.rows(
        "SELECT what, at FROM scaleout_audit WHERE app = :app AND at >= :lost "
        "AND what <> 'webhook_attempt'",
        app=app_name(stale),
        lost=lost_at,
    )
    woke = stale.log_text()[log_at_resume:]
    refusals = [line for line in woke.splitlines() if "stopped" in line or "LeaseLost" in line]
    successor_host = cluster.host_of(successor.pid)
    assert successor_host is not None
    print(
        f"\nstale leader: {stale.name} stopped; {successor_host.name} took over "
        f"{takeover_s:.2f} s later (token {lease.token} -> {successor.token}); after waking "
        f"{stale.name} wrote {len(late)} rows, logged {refusals or 'no fenced job'}"
    )

    mine = [row for row in audit if row.reservation_id in due]
    assert sorted(row.reservation_id for row in mine) == sorted(due)  # each expired once
    assert {(r.app, r.lease_holder, r.lease_token) for r in mine} == {
        (app_name(successor_host), successor.holder, successor.token)
    }
    for row in audit:  # over the whole run: every expiry written by the leader of its moment
        writer = cluster.host_of(holder_pid(row.lease_holder))
        assert writer is not None and app_name(writer) == row.app, row
    assert late == []  # the woken leader neither wrote nor took the lease back
    assert {lease.holder for lease in later} == {successor.holder}
    cluster.wait_in_rotation([stale])


def test_every_host_delivers_a_share_of_the_webhooks_each_once(scaleout: Scaleout) -> None:
    """The receiver takes 25 ms a delivery, so a host's round of up to 200 lasts 5 s: longer
    than the 2 s between two rounds of each other host, which find the rest due. 500 events are
    more than two rounds can claim, so all three hosts must take part."""
    cluster = scaleout.cluster
    cluster.wait_in_rotation(cluster.hosts)
    receiver = Receiver(cluster.network.gateway, delay_s=0.025)
    try:
        with cluster.client() as client:
            answer = client.post(
                "/v1/webhooks",
                json={"url": receiver.url, "events": ["reservation.created"]},
                headers=scaleout.auth,
            )
            assert answer.status_code == 201, answer.text
            endpoint = answer.json()["id"]
            bodies = [reservation(f"HOOKS-{n:03d}", "HOOKS") for n in range(500)]
            assert {s for s, _ in asyncio.run(post_all(scaleout, bodies, 32))} == {201}

            def pending() -> int:
                count: int = scaleout.scalar(
                    "SELECT count(*) FROM webhook_deliveries "
                    "WHERE endpoint_id = :e AND status = 'pending'",
                    e=endpoint,
                )
                return count

            wait_for(lambda: pending() == 0 or None, "every webhook delivered", 120)
            client.delete(f"/v1/webhooks/{endpoint}", headers=scaleout.auth)
    finally:
        receiver.close()
    received = receiver.received()
    outcome = scaleout.rows(
        "SELECT status, attempts, count(*) AS n FROM webhook_deliveries "
        "WHERE endpoint_id = :e GROUP BY status, attempts",
        e=endpoint,
    )
    senders = Counter(
        row.app
        for row in scaleout.rows(
            "SELECT a.app FROM scaleout_audit AS a JOIN webhook_deliveries AS d "
            "ON d.id = (a.row_data->>'delivery_id')::bigint "
            "WHERE a.what = 'webhook_attempt' AND d.endpoint_id = :e",
            e=endpoint,
        )
    )
    span = scaleout.scalar(
        "SELECT extract(epoch FROM max(d.delivered_at) - min(a.attempted_at)) FROM "
        "webhook_deliveries AS d JOIN webhook_attempts AS a ON a.delivery_id = d.id "
        "WHERE d.endpoint_id = :e",
        e=endpoint,
    )
    sources = Counter(address for _, address in received)
    print(
        f"\nwebhooks: {len(received)} delivered in {span:.1f} s ({len(received) / float(span):.0f}"
        f"/s, 25 ms each at the receiver); attempts per host {dict(senders)}; "
        f"connections from {dict(sources)}"
    )
    event_ids = [event_id for event_id, _ in received]
    assert len(event_ids) == len(set(event_ids)) == 500  # each event once
    assert [tuple(row) for row in outcome] == [("delivered", 1, 500)]
    assert set(senders) == {app_name(host) for host in cluster.hosts}
    if cluster.network.kind == "netns":  # each host sends from its own address
        assert set(sources) == {host.address for host in cluster.hosts}


def provision(scaleout: Scaleout, directory: Path) -> tuple[Path, int]:
    """`locker-node provision --ca-bundle` against the proxy, then the test's quick doors."""
    cluster = scaleout.cluster
    with make_sessionmaker(scaleout.db).begin() as session:
        token = issue_enrollment_token(session, BANK, datetime.now(UTC))
    config = directory / "node.toml"
    done = subprocess.run(
        [
            LOCKER_NODE,
            "provision",
            "--central",
            cluster.proxy.url,
            "--bank",
            BANK,
            "--token",
            token,
            "--config",
            str(config),
            "--ca-bundle",
            str(cluster.tls.ca_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    port = free_port()
    text_ = config.read_text().replace(
        'protocol = "simulated"\n',
        'protocol = "simulated"\ndoor_delay_ms = 0\nauto_close_ms = 200\n',
    )
    text_ += (
        f"\n[kiosk]\nport = {port}\n"
        "\n[doors]\nconfirm_window_ms = 300\nconfirm_poll_ms = 10\nmonitor_interval_ms = 50\n"
        "\n[sync]\ninterval_s = 0.2\n"
    )
    config.write_text(text_)
    return config, port


def test_a_node_syncs_through_the_proxy_over_verified_tls(
    scaleout: Scaleout, tmp_path: Path
) -> None:
    if "ca_bundle" not in NodeConfig.model_fields:
        pytest.skip("locker-node has no `ca_bundle` setting (`provision --ca-bundle`) yet")
    cluster = scaleout.cluster
    cluster.wait_in_rotation(cluster.hosts)
    config, port = provision(scaleout, tmp_path)
    assert f'ca_bundle = "{cluster.tls.ca_path}"' in config.read_text()
    world = World(
        url=scaleout.url,
        port=cluster.proxy.port,
        tmp=tmp_path,
        sessions=make_sessionmaker(scaleout.db),
        keys=ServiceKeys(TEST_SECRET.encode()),
        carrier=Carrier(scaleout.api_key),
    )
    before = cluster.proxy.answered()
    node = spawn(config, port=port)
    try:
        with httpx.Client(timeout=5) as kiosk, cluster.client() as client:
            node.wait_ready(kiosk)
            rid = reserve(client, scaleout, "NODE-1", BANK, "S")
            deposit(node, kiosk, world, "NODE-1")  # the reservation came down through the proxy

            def deposited() -> bool | None:
                answer = client.get(f"/v1/reservations/{rid}", headers=scaleout.auth)
                return answer.json()["status"] == "deposited" or None

            wait_for(deposited, "the node's deposit at central", 30)  # and its event went up
    finally:
        node.stop()
    after = cluster.proxy.answered()
    print(
        f"\nnode: reservation down, deposit up, through the proxy over TLS; requests per host "
        f"{ {name: after[name] - before[name] for name in after} }"
    )
    assert "CERTIFICATE_VERIFY_FAILED" not in node.log_text()
