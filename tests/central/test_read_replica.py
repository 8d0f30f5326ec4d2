"""The read standby: lagging reads come from it, writes never reach it, and reads fall back to
the primary while it is down. The cluster tests run a primary and a streaming standby of their
own (PostgreSQL 15 binaries, `pg_basebackup -R`), as the machine's server allows no replication.
"""

from __future__ import annotations

import itertools
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from central.app import create_app
from central.config import CentralSettings
from central.db import (
    LaggingReads,
    ReadReplicaConfigError,
    make_engine,
    make_read_engine,
    make_sessionmaker,
    upgrade_database,
)
from central.ops.insight.tasks import sample_occupancy
from tests.central.conftest import TEST_SECRET, make_bank, make_carrier
from tests.central.ops.support import fast, make_operator, sign_in
from tests.clock import DEFAULT_START, FakeClock

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DEADLINE_S = 30.0
HOURS = itertools.count()


# Clusters -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def as_postgres() -> list[str]:
    """The prefix that runs a command as the `postgres` OS user (initdb refuses root)."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL 15 binaries: {PG_BIN / 'initdb'} is missing")
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root without runuser: cannot run initdb as the postgres user")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no postgres OS user to run the clusters")
    return [runuser, "-u", "postgres", "--"]


@dataclass
class Cluster:
    data: Path
    port: int
    prefix: list[str]
    log: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, tool: str, *args: str) -> None:
        command = [*self.prefix, str(PG_BIN / tool), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE_S)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed: {done.stderr}{done.stdout}\n{log}")

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "start")

    def stop(self) -> None:
        command = [*self.prefix, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "stop"]
        subprocess.run([*command, "-m", "immediate"], capture_output=True, timeout=DEADLINE_S)

    def configure(self, lines: str) -> None:
        with (self.data / "postgresql.conf").open("a") as conf:  # keeps the owner: postgres
            conf.write(f"\n{lines}\n")


@dataclass
class Replication:
    primary: Cluster
    standby: Cluster


def wait_for(check: Callable[[], bool], what: str) -> None:
    """Poll `check` until it holds (not a timing assertion: it fails only past a generous
    deadline)."""
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def scalar(url: str, sql: str, **params: Any) -> Any:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def in_recovery(url: str) -> bool:
    try:
        return scalar(url, "SELECT pg_is_in_recovery()") is True
    except OperationalError:
        return False


def wait_replayed(replication: Replication) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    lsn = scalar(replication.primary.url, "SELECT pg_current_wal_lsn()::text")
    standby = replication.standby.url
    sql = "SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)"
    wait_for(lambda: scalar(standby, sql, lsn=lsn) is True, "the standby to catch up")


def start_replication(root: Path, prefix: list[str], started: list[Cluster]) -> Replication:
    primary = Cluster(root / "primary", free_port(), prefix, root / "primary.log")
    primary.run("initdb", "-D", str(primary.data), "-U", "postgres", "--auth=trust", "--no-sync")
    primary.configure(
        f"listen_addresses = '127.0.0.1'\nport = {primary.port}\n"
        f"unix_socket_directories = '{root}'\nwal_level = replica\nmax_wal_senders = 5\n"
        "hot_standby = on\nfsync = off"
    )
    with (primary.data / "pg_hba.conf").open("a") as hba:
        hba.write("\nhost replication postgres 127.0.0.1/32 trust\n")
    primary.start()
    started.append(primary)
    standby = Cluster(root / "standby", free_port(), prefix, root / "standby.log")
    primary.run(
        "pg_basebackup", "-R", "-D", str(standby.data), "-h", "127.0.0.1",
        "-p", str(primary.port), "-U", "postgres", "-X", "stream", "--no-sync",
    )  # fmt: skip
    standby.configure(f"port = {standby.port}")  # the last setting of a name wins
    standby.start()
    started.append(standby)
    wait_for(lambda: in_recovery(standby.url), "the standby to answer in recovery")
    return Replication(primary, standby)


@pytest.fixture(scope="module")
def replication() -> Iterator[Replication]:
    """A migrated primary and its streaming standby, stopped and removed at the end."""
    prefix = as_postgres()
    root = Path(tempfile.mkdtemp(prefix="locker-replica-"))
    owner = pwd.getpwnam("postgres") if prefix else None
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    started: list[Cluster] = []
    try:
        replication = start_replication(root, prefix, started)
        upgrade_database(replication.primary.url)
        wait_replayed(replication)
        yield replication
    finally:
        for cluster in reversed(started):
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


# The app on the pair ------------------------------------------------------------------------------


@dataclass
class Setup:
    app: FastAPI
    client: TestClient
    clock: FakeClock
    carrier_key: str
    bank_id: str
    # Statements each engine ran: which database answered.
    statements: dict[str, int]

    def sessions(self) -> sessionmaker[Session]:
        factory: sessionmaker[Session] = self.app.state.sessions
        return factory

    def carrier_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.carrier_key}"}

    def reset_counts(self) -> None:
        self.statements.update(primary=0, standby=0)


def count_statements(engine: Engine, counts: dict[str, int], name: str) -> None:
    @event.listens_for(engine, "before_cursor_execute")
    def _count(*_args: Any) -> None:
        counts[name] += 1


@pytest.fixture
def setup(replication: Replication, tmp_path: Path) -> Iterator[Setup]:
    """Central on the primary with reads on the standby, a signed-in viewer, a carrier and a
    bank of this test's own (the databases are shared by the module's tests)."""
    # Each test an hour of its own: occupancy samples are taken of every bank, and the
    # databases are shared by the module's tests.
    clock = FakeClock(DEFAULT_START + timedelta(hours=next(HOURS)))
    settings = CentralSettings(
        database_url=replication.primary.url,
        database_read_url=replication.standby.url,
        data_dir=tmp_path / "var",
        secret_key=TEST_SECRET,  # type: ignore[arg-type]
        scheduler_enabled=False,
    )
    app = create_app(fast(settings), clock=clock)
    # Time as the test tells it, for the standby's retry after a failed connect.
    app.state.lagging_reads = LaggingReads(
        app.state.read_sessions, app.state.sessions, monotonic=clock.monotonic
    )
    counts = {"primary": 0, "standby": 0}
    count_statements(app.state.engine, counts, "primary")
    count_statements(app.state.read_engine, counts, "standby")
    tag = uuid.uuid4().hex[:6].upper()
    email = f"viewer-{tag.lower()}@ops.test"
    make_operator(app, clock, email, "viewer")
    with app.state.sessions.begin() as session:
        key = make_carrier(session, carrier_id=f"c{tag.lower()}", now=clock())
        make_bank(session, bank_id=f"OLD-{tag}", now=clock(), compartments="S:1")
    wait_replayed(replication)
    try:
        with TestClient(app) as client:
            sign_in(client, email)
            yield Setup(app, client, clock, key, f"OLD-{tag}", counts)
    finally:
        app.state.engine.dispose()
        app.state.read_engine.dispose()


def get_json(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def overview_ids(client: TestClient) -> set[str]:
    body = get_json(client, "/ops/api/overview")
    return {bank["id"] for region in body["regions"] for bank in region["banks"]}


def report_ids(setup: Setup) -> set[str]:
    body = get_json(setup.client, "/ops/api/reports/daily", date=setup.clock().date().isoformat())
    return {bank["bank_id"] for bank in body["banks"]}


def chart_points(setup: Setup) -> int:
    body = get_json(setup.client, "/ops/api/charts/occupancy", bank_id=setup.bank_id)
    return len(body["series"])


def finder_ids(client: TestClient, limit: int) -> set[str]:
    # Each `limit` is a key of its own in the finder's cache: every call reads the database.
    body = get_json(client, "/v1/public/banks", near="40.7506,-73.9935", radius_m=500, limit=limit)
    return {bank["id"] for bank in body["items"]}


def standby_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "read standby cannot be connected" in r.getMessage()]


def record_sample(setup: Setup) -> None:
    with setup.sessions().begin() as session:
        sample_occupancy(session, setup.clock())


# Cluster tests ------------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.slow
def test_lagging_reads_show_the_standby_and_exact_ones_the_primary(
    setup: Setup, replication: Replication
) -> None:
    standby_url = replication.standby.url
    client, new_bank = setup.client, f"NEW-{setup.bank_id[4:]}"
    with setup.app.state.read_sessions() as session:
        assert session.execute(text("SELECT pg_is_in_recovery()")).scalar() is True
    record_sample(setup)
    wait_replayed(replication)
    assert setup.bank_id in overview_ids(client) and chart_points(setup) == 1

    scalar(standby_url, "SELECT pg_wal_replay_pause()")
    try:
        setup.clock.advance(minutes=5)
        with setup.sessions().begin() as session:
            make_bank(session, bank_id=new_bank, now=setup.clock(), lat=40.7507, lon=-73.9936)
        record_sample(setup)
        # The primary has it: the carrier API and the bank page (exact reads) show the bank.
        response = client.get(f"/v1/banks/{new_bank}", headers=setup.carrier_auth())
        assert response.status_code == 200, response.text
        assert get_json(client, f"/ops/api/banks/{new_bank}")["bank"]["id"] == new_bank
        # The standby, replay paused, does not: overview, chart, report and finder read it.
        setup.reset_counts()
        assert new_bank not in overview_ids(client)
        assert chart_points(setup) == 1
        assert new_bank not in report_ids(setup)
        assert new_bank not in finder_ids(client, limit=20)
        assert setup.statements["standby"] > 0
    finally:
        scalar(standby_url, "SELECT pg_wal_replay_resume()")

    wait_replayed(replication)
    assert new_bank in overview_ids(client)
    assert chart_points(setup) == 2
    assert new_bank in report_ids(setup)
    assert new_bank in finder_ids(client, limit=19)


@pytest.mark.postgres
@pytest.mark.slow
def test_each_endpoint_reads_where_it_should(setup: Setup) -> None:
    setup.reset_counts()
    get_json(setup.client, "/v1/public/banks", near="40.7506,-73.9935", limit=7)
    assert setup.statements["primary"] == 0 and setup.statements["standby"] > 0
    lagging = [
        "/ops/api/overview",
        "/ops/api/overview/notices",
        "/ops/api/charts/occupancy",
        "/ops/api/charts/dwell",
        "/ops/api/charts/throughput",
        "/ops/api/charts/faults",
        "/ops/api/reports/daily",
        "/ops/api/reports/daily.csv",
    ]
    # The operator's session is looked up (and touched) on the primary: all that GET
    # /ops/api/session does, and all that the lagging reads do there.
    setup.reset_counts()
    get_json(setup.client, "/ops/api/session")
    session_check = setup.statements["primary"]
    assert session_check > 0
    for path in lagging:
        setup.reset_counts()
        assert setup.client.get(path).status_code == 200, path
        assert setup.statements == {
            "primary": session_check,
            "standby": setup.statements["standby"],
        }
        assert setup.statements["standby"] > 0, path
    exact = [
        f"/ops/api/banks/{setup.bank_id}",
        "/ops/api/parcels?tracking_number=9400111206206406260787",
        "/ops/api/parcels/unknown/notices",
    ]
    for path in exact:
        setup.reset_counts()
        setup.client.get(path)
        assert setup.statements["standby"] == 0, path


@pytest.mark.postgres
@pytest.mark.slow
def test_writes_never_reach_the_standby(setup: Setup, replication: Replication) -> None:
    with pytest.raises(DBAPIError, match="read-only"), setup.app.state.read_sessions() as s:
        s.execute(text("UPDATE banks SET name = name"))
    # Read only by the engine's own settings, not only because a standby is in recovery: the
    # same engine made on the primary refuses the write too.
    primary = make_engine(replication.primary.url)
    read_engine = make_read_engine(replication.primary.url, primary)
    try:
        with make_sessionmaker(read_engine)() as session:
            setting = session.execute(text("SHOW default_transaction_read_only")).scalar()
            assert setting == "on"
        with pytest.raises(DBAPIError, match="read-only"), make_sessionmaker(read_engine)() as s:
            s.execute(text("UPDATE banks SET name = name"))
    finally:
        read_engine.dispose()
        primary.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_reads_fall_back_to_the_primary_while_the_standby_is_down(
    setup: Setup, replication: Replication, caplog: pytest.LogCaptureFixture
) -> None:
    client = setup.client
    record_sample(setup)
    assert setup.bank_id in overview_ids(client)  # the read pool holds standby connections
    replication.standby.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="central.db"):
            setup.reset_counts()
            assert setup.bank_id in overview_ids(client)
            assert chart_points(setup) == 1
            assert setup.bank_id in report_ids(setup)
            assert setup.bank_id in finder_ids(client, limit=18)
            assert setup.statements["standby"] == 0
        assert len(standby_warnings(caplog)) == 1, caplog.text
    finally:
        replication.standby.start()
    wait_for(lambda: in_recovery(replication.standby.url), "the standby to be back")
    # Past the retry interval the standby is tried again, and answers.
    setup.clock.advance(seconds=11)
    setup.reset_counts()
    assert setup.bank_id in overview_ids(client)
    assert setup.statements["standby"] > 0


# Without clusters ---------------------------------------------------------------------------------


def test_a_read_url_is_refused_unless_both_databases_are_postgresql(tmp_path: Path) -> None:
    sqlite = make_engine(f"sqlite:///{tmp_path / 'central.db'}")
    try:
        with pytest.raises(ReadReplicaConfigError, match="postgresql but the primary"):
            make_read_engine("postgresql+psycopg://postgres@127.0.0.1:5/x", sqlite)
        with pytest.raises(ReadReplicaConfigError, match="needs PostgreSQL"):
            make_read_engine(f"sqlite:///{tmp_path / 'copy.db'}", sqlite)
    finally:
        sqlite.dispose()
    settings = CentralSettings(
        database_url=f"sqlite:///{tmp_path / 'central.db'}",
        database_read_url="postgresql+psycopg://postgres@127.0.0.1:5/x",
        data_dir=tmp_path / "var",
        secret_key=TEST_SECRET,  # type: ignore[arg-type]
    )
    with pytest.raises(ReadReplicaConfigError, match="LOCKER_DATABASE_READ_URL"):
        create_app(settings)


def test_without_a_read_url_lagging_reads_use_the_primary(tmp_path: Path) -> None:
    settings = CentralSettings(
        database_url=f"sqlite:///{tmp_path / 'central.db'}",
        data_dir=tmp_path / "var",
        secret_key=TEST_SECRET,  # type: ignore[arg-type]
    )
    app = create_app(settings)
    try:
        assert app.state.read_engine is None
        assert app.state.read_sessions is app.state.sessions
        assert app.state.read_limiter is app.state.db_limiter
    finally:
        app.state.engine.dispose()


def test_a_standby_that_cannot_be_reached_sends_reads_to_the_primary_for_a_while(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    down = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    attempts: list[int] = []
    event.listen(down, "do_connect", lambda *_: attempts.append(1))
    primary = make_engine(f"sqlite:///{tmp_path / 'central.db'}")
    reads = LaggingReads(
        make_sessionmaker(down), make_sessionmaker(primary), monotonic=clock.monotonic
    )

    def read() -> Any:
        with reads.transaction() as session:
            return session.execute(text("SELECT 1")).scalar()

    try:
        with caplog.at_level(logging.WARNING, logger="central.db"):
            assert read() == 1  # the standby refused the connection: the primary answered
            assert read() == 1 and len(attempts) == 1  # no new attempt within the retry time
            clock.advance(seconds=11)
            assert read() == 1 and len(attempts) == 2  # tried again, still down
            clock.advance(seconds=40)
            assert read() == 1 and len(attempts) == 3
        assert len(standby_warnings(caplog)) == 1, "warned once a minute at most"
        with caplog.at_level(logging.WARNING, logger="central.db"):
            clock.advance(seconds=11)
            assert read() == 1 and len(attempts) == 4
        assert len(standby_warnings(caplog)) == 2, caplog.text
    finally:
        down.dispose()
        primary.dispose()
