"""The feed down to a node: its bank's changes by cursor, signed commands, courier code hashes."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from central.cli import app as cli
from central.keys import ServiceKeys
from central.models import NodeCommand
from central.nodes.commands import issue_command
from central.nodes.enrollment import enroll as enroll_node
from central.nodes.enrollment import issue_enrollment_token
from central.nodes.errors import NodeError
from central.scheduler import INTERVALS, Jobs
from locker_wire import signing
from locker_wire.schemas import Command, EnrollmentRequest
from tests.central.conftest import TEST_SECRET, World, engine_for
from tests.central.nodes.support import NodeClient, enroll, reserve
from tests.clock import FakeClock

NO_CODES = "courier_codes=false"


def feed(node: NodeClient, cursor: str | None = None, limit: int = 200) -> dict[str, Any]:
    query = f"/v1/node/feed?{NO_CODES}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
    response = node.get(query)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(page: dict[str, Any]) -> list[str]:
    return [r["id"] for r in page["reservations"]]


def test_the_feed_holds_only_the_nodes_bank(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    mine = reserve(client, world, "ACME-F1")
    reserve(client, world, "ACME-F2", bank_id="NYC-2")
    page = feed(node)
    assert ids(page) == [mine]
    item = page["reservations"][0]
    assert item["carrier"] == "acme" and item["tracking_number"] == "ACME-F1"
    assert (item["size"], item["status"], item["compartment"]) == ("S", "reserved", None)
    assert item["pickup_deadline"] is None
    assert datetime.fromisoformat(item["updated_at"]) == clock()
    assert datetime.fromisoformat(item["reserved_until"]) == clock() + timedelta(hours=72)
    assert page["more"] is False


def test_pages_follow_the_cursor_and_changes_come_again(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    made = []
    for n, size in enumerate(("S", "S", "M")):
        made.append(reserve(client, world, f"ACME-P{n}", size=size))
        clock.advance(seconds=1)
    first = feed(node, limit=2)
    assert first["more"] is True and ids(first) == made[:2]
    second = feed(node, first["cursor"], limit=2)
    assert second["more"] is False and ids(second) == made[2:]

    cancelled = client.delete(f"/v1/reservations/{made[0]}", headers=world.auth("acme"))
    assert cancelled.status_code == 200, cancelled.text
    third = feed(node, second["cursor"])
    # Within the overlap window what was seen comes again; the node keeps the newest copy.
    assert ids(third)[-1] == made[0]
    assert third["reservations"][-1]["status"] == "cancelled"

    clock.advance(minutes=10)
    settled = feed(node, third["cursor"])
    assert feed(node, settled["cursor"])["reservations"] == []


def test_a_change_committed_after_a_read_but_stamped_before_it_is_not_skipped(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    seen = reserve(client, world, "ACME-L1")
    page = feed(node)
    assert ids(page) == [seen]
    # A transaction that took its time a minute ago and commits only now.
    clock.advance(minutes=-1)
    late = reserve(client, world, "ACME-L2")
    clock.advance(minutes=1)
    assert late in ids(feed(node, page["cursor"]))


def test_a_foreign_cursor_is_refused(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    response = node.get(f"/v1/node/feed?{NO_CODES}&cursor=bm90LWEtY3Vyc29y")
    assert (response.status_code, response.json()["error"]) == (400, "invalid_cursor")


def test_courier_codes_come_as_salted_scrypt_hashes_for_today_and_tomorrow(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    response = node.get("/v1/node/feed")
    assert response.status_code == 200, response.text
    entries = response.json()["courier_codes"]
    zone = ZoneInfo("America/New_York")
    today = clock().astimezone(zone).date()
    assert sorted((e["carrier"], e["valid_from"][:10]) for e in entries) == sorted(
        (carrier, str(day))
        for carrier in ("acme", "dhl", "fedex", "ups", "usps")
        for day in (today, today + timedelta(days=1))
    )
    assert len({e["salt"] for e in entries}) == len(entries)
    for entry in entries:
        day = date.fromisoformat(entry["valid_from"][:10])
        valid_from = datetime.fromisoformat(entry["valid_from"])
        assert valid_from == datetime(day.year, day.month, day.day, tzinfo=zone)
        assert datetime.fromisoformat(entry["valid_until"]) - valid_from == timedelta(hours=24)
        code = app.state.keys.courier_code(entry["carrier"], "NYC-1", day)
        assert code not in response.text
        expected = hashlib.scrypt(
            code.encode(),
            salt=bytes.fromhex(entry["salt"]),
            n=entry["n"],
            r=entry["r"],
            p=entry["p"],
            dklen=32,
        ).hex()
        assert entry["code_hash"] == expected
    assert feed(node)["courier_codes"] == []
    # Hashed once a process: the next pull gets the same hashes without paying scrypt again.
    again = node.get("/v1/node/feed")
    assert sorted(again.json()["courier_codes"], key=lambda e: (e["carrier"], e["valid_from"])) == (
        sorted(entries, key=lambda e: (e["carrier"], e["valid_from"]))
    )


def issue(
    sessions: sessionmaker[Session],
    app: FastAPI,
    clock: FakeClock,
    command_type: str = "open_compartment",
    payload: dict[str, Any] | None = None,
    bank_id: str = "NYC-1",
    ttl: timedelta = timedelta(minutes=15),
) -> Command:
    with sessions.begin() as session:
        return issue_command(
            session,
            app.state.keys,
            bank_id,
            command_type,
            {"compartment": "A01"} if payload is None else payload,
            clock(),
            ttl,
        )


def test_commands_are_signed_by_central_for_one_node_and_expire(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    command = issue(sessions, app, clock)
    delivered = feed(node)["commands"]
    assert [c["id"] for c in delivered] == [command.id]
    wire = delivered[0]
    central_key = signing.load_public_key(node.enrollment["central_signing_public_key"])
    now = int(clock().timestamp())
    signing.verify_command(central_key, wire, wire["signature"], now, node.node_id)
    with pytest.raises(signing.CommandForAnotherNode):
        signing.verify_command(central_key, wire, wire["signature"], now, "node_other")
    with pytest.raises(signing.CommandSignatureInvalid):
        forged = wire | {"payload": {"compartment": "A05"}}
        signing.verify_command(central_key, forged, wire["signature"], now, node.node_id)
    with pytest.raises(signing.CommandExpired):
        signing.verify_command(central_key, wire, wire["signature"], now + 15 * 60, node.node_id)

    clock.advance(minutes=15)
    assert feed(node)["commands"] == []


def test_an_ack_is_recorded_once_and_only_from_the_target_node(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    other = enroll(client, sessions, clock, "NYC-2")
    rid = reserve(client, world, "ACME-C1")
    command = issue(sessions, app, clock, "extend_deadline", {"reservation_id": rid, "hours": 24})
    path = f"/v1/node/commands/{command.id}/ack"

    foreign = other.post(path, {"outcome": "ok"})
    assert (foreign.status_code, foreign.json()["error"]) == (404, "unknown_command")
    assert [c["id"] for c in feed(other)["commands"]] == []

    done = node.post(path, {"outcome": "failed", "detail": "door jammed"})
    assert done.status_code == 200, done.text
    assert done.json() == {"id": command.id, "status": "failed"}
    again = node.post(path, {"outcome": "ok"})
    assert again.json()["status"] == "failed"
    assert feed(node)["commands"] == []
    with sessions() as session:
        row = session.get(NodeCommand, command.id)
        assert row is not None
        assert row.result == {"outcome": "failed", "detail": "door jammed"}
        assert row.acknowledged_at == clock()
    bad = node.post(path, {"outcome": "maybe"})
    assert (bad.status_code, bad.json()["error"]) == (422, "validation_error")


def test_commands_are_checked_before_they_are_issued(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    elsewhere = reserve(client, world, "ACME-C2", bank_id="NYC-2")
    with pytest.raises(NodeError, match="no enrolled node"):
        issue(sessions, app, clock)
    enroll(client, sessions, clock)
    bad: list[tuple[str, dict[str, Any], timedelta]] = [
        ("self_destruct", {}, timedelta(minutes=15)),
        ("open_compartment", {"compartment": "Z99"}, timedelta(minutes=15)),
        ("cancel_reservation", {"reservation_id": elsewhere}, timedelta(minutes=15)),
        ("open_compartment", {"compartment": "A01"}, timedelta(days=8)),
    ]
    for kind, payload, ttl in bad:
        with pytest.raises(NodeError):
            issue(sessions, app, clock, kind, payload, ttl=ttl)


def test_node_command_cli_queues_a_signed_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    monkeypatch.setenv("LOCKER_DATABASE_URL", url)
    monkeypatch.setenv("LOCKER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("LOCKER_SECRET_KEY", TEST_SECRET)
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    added = runner.invoke(
        cli,
        ["bank", "add", "B1", "--name", "B", "--address", "A", "--lat", "1", "--lon", "1",
         "--compartments", "S:1"],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    no_node = runner.invoke(cli, ["node", "command", "B1", "open_compartment"])
    assert no_node.exit_code == 1 and "no enrolled node" in no_node.output
    sessions = engine_for(url)
    with sessions.begin() as session:
        now = datetime.now(UTC)
        token = issue_enrollment_token(session, "B1", now)
        key = signing.public_key_text(signing.generate_private_key())
        keys = ServiceKeys(TEST_SECRET.encode())
        enroll_node(session, keys, EnrollmentRequest(token=token, public_key=key), now)
    bad = runner.invoke(cli, ["node", "command", "B1", "open_compartment", "--payload", "[1]"])
    assert bad.exit_code == 1
    made = runner.invoke(
        cli,
        ["node", "command", "B1", "open_compartment", "--payload", '{"compartment": "A01"}',
         "--ttl-minutes", "5"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    with sessions() as session:
        row = session.scalars(select(NodeCommand)).one()
        assert row.id == made.output.strip()
        assert row.expires_at - row.issued_at == timedelta(minutes=5)
        assert row.payload == {"compartment": "A01"}
    sessions.kw["bind"].dispose()


def test_unacknowledged_commands_expire_and_a_late_ack_still_counts(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    late = issue(sessions, app, clock, ttl=timedelta(minutes=5))
    never = issue(sessions, app, clock, "disable_compartment", ttl=timedelta(minutes=5))
    keep = issue(sessions, app, clock, "enable_compartment", ttl=timedelta(minutes=30))
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    jobs = Jobs(sessions, app.state.keys, clock, http, app.state.settings)
    assert "expire_node_commands" in jobs.all() and "expire_node_commands" in INTERVALS
    clock.advance(minutes=4)
    assert jobs.expire_node_commands() == 0
    clock.advance(minutes=1)
    assert jobs.expire_node_commands() == 2
    assert [c["id"] for c in feed(node)["commands"]] == [keep.id]
    acked = node.post(f"/v1/node/commands/{late.id}/ack", {"outcome": "ok"})
    assert acked.json() == {"id": late.id, "status": "acknowledged"}
    with sessions() as session:
        statuses = {c.id: c.status for c in session.scalars(select(NodeCommand))}
    assert statuses == {late.id: "acknowledged", never.id: "expired", keep.id: "pending"}
    jobs.close()
