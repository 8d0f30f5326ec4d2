"""The conditional feed: an answer's tag sent back with its cursor gets 304 until anything the
answer would hold changes, on any worker or host, and never hides a change."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session, sessionmaker

from central.app import create_app
from central.banks.settings import start_maintenance
from central.carriers.service import add_carrier
from central.config import CentralSettings
from central.context import Ctx
from central.models import Alert, Node
from central.nodes import courier_codes, sync_repository, updates
from central.nodes.commands import issue_command
from tests.central.conftest import World
from tests.central.nodes.support import NodeClient, enroll, reserve
from tests.clock import FakeClock

NO_CODES = "courier_codes=false"


@pytest.fixture
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Courier codes hashed by a stand-in (the real scrypt is checked in test_feed.py and
    test_courier_codes.py); the codes hashed, in order."""
    hashed: list[str] = []

    def stand_in(code: str, salt: bytes) -> str:
        hashed.append(code)
        return (salt.hex() + code).ljust(64, "0")[:64]

    monkeypatch.setattr(courier_codes, "hash_courier_code", stand_in)
    return hashed


def pull(
    node: NodeClient,
    cursor: str | None = None,
    *,
    known: str | None = None,
    version: int | None = 1,
    codes: bool = False,
    limit: int = 200,
) -> tuple[int, dict[str, Any] | None, str | None]:
    """(status, body or None for a 304, tag) of one feed request."""
    query = [f"limit={limit}", "courier_codes=true" if codes else NO_CODES]
    if cursor:
        query.append(f"cursor={cursor}")
    if version is not None:
        query.append(f"settings_version={version}")
    if known:
        query.append(f"known={known}")
    response = node.get("/v1/node/feed?" + "&".join(query))
    assert response.status_code in (200, 304), response.text
    etag = response.headers.get("etag")
    tag = etag.strip('"') if etag else None
    if response.status_code == 304:
        assert response.content == b""
        return 304, None, tag
    return 200, response.json(), tag


def settle(node: NodeClient, **options: Any) -> tuple[str, str]:
    """Pull until the answer is the whole of what is new; its (cursor, tag)."""
    status, body, tag = pull(node, **options)
    assert status == 200 and body is not None and tag is not None and not body["more"]
    return body["cursor"], tag


def test_an_unchanged_feed_is_answered_304_with_its_tag(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    reserve(client, world, "ACME-Q1")
    cursor, tag = settle(node)
    clock.advance(seconds=30)
    assert pull(node, cursor, known=tag) == (304, None, tag)
    clock.advance(seconds=30)
    assert pull(node, cursor, known=tag) == (304, None, tag)
    # No condition, or a condition for another cursor, limit or settings version: the feed.
    assert pull(node, cursor)[0] == 200
    assert pull(node, None, known=tag)[0] == 200
    assert pull(node, cursor, known=tag, limit=100)[0] == 200
    assert pull(node, cursor, known=tag, version=None)[0] == 200
    assert pull(node, cursor, known="not-a-tag")[0] == 200


def test_a_changed_reservation_a_new_one_and_a_late_commit_each_end_the_304(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    first = reserve(client, world, "ACME-Q2")
    cursor, tag = settle(node)
    clock.advance(seconds=30)
    cancelled = client.delete(f"/v1/reservations/{first}", headers=world.auth("acme"))
    assert cancelled.status_code == 200
    status, body, new_tag = pull(node, cursor, known=tag)
    assert status == 200 and body is not None and new_tag != tag
    assert [(r["id"], r["status"]) for r in body["reservations"]] == [(first, "cancelled")]
    cursor, tag = body["cursor"], str(new_tag)
    assert pull(node, cursor, known=tag)[0] == 304

    clock.advance(seconds=30)
    made = reserve(client, world, "ACME-Q3")
    status, body, new_tag = pull(node, cursor, known=tag)
    assert status == 200 and body is not None
    assert made in [r["id"] for r in body["reservations"]]
    cursor, tag = body["cursor"], str(new_tag)
    assert pull(node, cursor, known=tag)[0] == 304

    # A transaction that stamped its change a minute ago (after the cursor) and commits only
    # now, after the answer the node holds was read: the next condition fails on it.
    clock.advance(minutes=-1)
    late = reserve(client, world, "ACME-Q4")
    clock.advance(minutes=1)
    status, body, _ = pull(node, cursor, known=tag)
    assert status == 200 and body is not None
    assert late in [r["id"] for r in body["reservations"]]


def test_a_reservation_of_another_bank_changes_nothing(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    cursor, tag = settle(node)
    reserve(client, world, "ACME-Q5", bank_id="NYC-2")
    assert pull(node, cursor, known=tag)[0] == 304


def test_a_pending_command_and_its_ack_each_end_the_304(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    cursor, tag = settle(node)
    with sessions.begin() as session:
        command = issue_command(
            session, app.state.keys, "NYC-1", "open_compartment", {"compartment": "A01"}, clock()
        )
    status, body, new_tag = pull(node, cursor, known=tag)
    assert status == 200 and body is not None
    assert [c["id"] for c in body["commands"]] == [command.id]
    cursor, tag = body["cursor"], str(new_tag)
    assert pull(node, cursor, known=tag)[0] == 304
    acked = node.post(f"/v1/node/commands/{command.id}/ack", {"outcome": "ok"})
    assert acked.status_code == 200
    status, body, _ = pull(node, cursor, known=tag)
    assert status == 200 and body is not None and body["commands"] == []


def test_changed_bank_settings_end_the_304_and_come_with_the_answer(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    cursor, tag = settle(node)
    with sessions.begin() as session:
        ctx = Ctx(session=session, keys=app.state.keys, now=clock())
        start_maintenance(ctx, "NYC-1", "new floor", None)
    status, body, new_tag = pull(node, cursor, known=tag)
    assert status == 200 and body is not None
    assert body["bank"]["version"] == 2 and body["bank"]["maintenance"]["reason"] == "new floor"
    # Until the node has them, every pull brings them: never a 304 for an old version.
    assert pull(node, body["cursor"], known=new_tag)[0] == 200
    assert pull(node, body["cursor"], known=new_tag, version=2)[0] == 304


def test_courier_codes_end_the_304_when_the_day_turns_or_a_carrier_comes(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    cheap_scrypt: list[str],
) -> None:
    node = enroll(client, sessions, clock)
    cursor, tag = settle(node, codes=True)
    assert len(cheap_scrypt) == 10  # five carriers, today and tomorrow
    assert pull(node, cursor, known=tag, codes=True)[0] == 304
    # The answer without codes is another answer, with a tag of its own.
    assert pull(node, cursor, known=tag, codes=False)[0] == 200

    with sessions.begin() as session:
        add_carrier(session, "zeta", "Zeta", clock())
    status, body, tag2 = pull(node, cursor, known=tag, codes=True)
    assert status == 200 and body is not None
    assert {c["carrier"] for c in body["courier_codes"]} >= {"zeta"}
    assert len(cheap_scrypt) == 12
    assert pull(node, body["cursor"], known=tag2, codes=True)[0] == 304

    # Midnight at the bank (New York): today's codes go, the day after tomorrow's come.
    clock.advance(hours=15)
    status, body, _ = pull(node, body["cursor"], known=tag2, codes=True)
    assert status == 200 and body is not None
    assert len(cheap_scrypt) == 18  # six carriers' new tomorrow


def test_a_missing_stored_hash_ends_the_304(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    cheap_scrypt: list[str],
) -> None:
    node = enroll(client, sessions, clock)
    cursor, tag = settle(node, codes=True)
    with sessions.begin() as session:
        session.execute(text("DELETE FROM courier_code_hashes WHERE carrier_id = 'ups'"))
    status, body, _ = pull(node, cursor, known=tag, codes=True)
    assert status == 200 and body is not None
    assert len([c for c in body["courier_codes"] if c["carrier"] == "ups"]) == 2


def test_no_tag_while_more_pages_follow(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    for n, size in enumerate(("S", "S", "M")):
        reserve(client, world, f"ACME-QP{n}", size=size)
        clock.advance(seconds=1)
    status, body, tag = pull(node, limit=2)
    assert status == 200 and body is not None and body["more"] is True and tag is None
    # The last page moves the cursor back (by the overlap) before the rows it read after the
    # earlier one: its rows after the new cursor are not all among those read, so no tag yet.
    status, body, tag = pull(node, body["cursor"], limit=2)
    assert status == 200 and body is not None and body["more"] is False and tag is None
    # More changes in the overlap than a page holds: tagged once they are older than it.
    clock.advance(minutes=10)
    cursor = body["cursor"]
    while True:
        status, body, tag = pull(node, cursor, limit=2)
        assert body is not None
        cursor = body["cursor"]
        if not body["more"]:
            break
        assert tag is None
    assert tag is not None and pull(node, cursor, known=tag, limit=2)[0] == 304


@pytest.fixture
def second_host(settings: CentralSettings, clock: FakeClock, app: FastAPI) -> Iterator[TestClient]:
    """Another central process on the same database (another worker, or another host)."""
    other = create_app(settings, clock=clock)
    with TestClient(other) as client:
        yield client
    other.state.engine.dispose()


def test_a_tag_from_one_host_holds_on_another(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    second_host: TestClient,
    cheap_scrypt: list[str],
) -> None:
    node = enroll(client, sessions, clock)
    reserve(client, world, "ACME-QH")
    cursor, tag = settle(node, codes=True)
    elsewhere = NodeClient(second_host, clock, node.node_id, node.bank_id, node.key)
    assert pull(elsewhere, cursor, known=tag, codes=True) == (304, None, tag)
    assert len(cheap_scrypt) == 10  # the other host hashed nothing: the hashes are stored


def test_the_304_costs_one_statement_after_the_signature(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    reserve(client, world, "ACME-QS")
    cursor, tag = settle(node)
    statements: list[str] = []

    def note(*args: Any) -> None:
        statements.append(" ".join(str(args[2]).split())[:40])

    event.listen(app.state.engine, "before_cursor_execute", note)
    try:
        assert pull(node, cursor, known=tag)[0] == 304
    finally:
        event.remove(app.state.engine, "before_cursor_execute", note)
    # The node, its nonce, what the feed would hold: nothing else (no savepoint either). On
    # PostgreSQL a node whose key was seen has its row read and its nonce written in one.
    mine = [s for s in statements if not s.startswith(("PRAGMA", "BEGIN", "COMMIT"))]
    if app.state.engine.dialect.name == "postgresql":
        assert len(mine) == 2, statements
        assert mine[0].startswith("WITH known AS")
    else:
        assert len(mine) == 3, statements
        assert mine[0].startswith("SELECT") and mine[1].startswith("INSERT INTO node_nonces")


def test_a_refused_feed_request_still_spends_its_nonce(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    nonce = "ab" * 16
    path = f"/v1/node/feed?{NO_CODES}&cursor=bm90LWEtY3Vyc29y"
    first = node.request("GET", path, nonce=nonce)
    assert (first.status_code, first.json()["error"]) == (400, "invalid_cursor")
    again = node.request("GET", path, nonce=nonce)
    assert (again.status_code, again.json()["error"]) == (401, "replayed_nonce")


def test_the_heartbeat_says_when_a_command_waits_in_the_feed(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    beat = {"doors": {}, "boards": {}, "outbox_depth": 0, "version": "1.0.0"}

    def news() -> bool:
        response = node.post("/v1/node/heartbeat", beat)
        assert response.status_code == 200, response.text
        return bool(response.json()["feed_news"])

    assert news() is False
    with sessions.begin() as session:
        command = issue_command(
            session,
            app.state.keys,
            "NYC-1",
            "open_compartment",
            {"compartment": "A01"},
            clock(),
            timedelta(minutes=5),
        )
    assert news() is True
    acked = node.post(f"/v1/node/commands/{command.id}/ack", {"outcome": "ok"})
    assert acked.status_code == 200
    assert news() is False
    with sessions.begin() as session:
        issue_command(
            session,
            app.state.keys,
            "NYC-1",
            "open_compartment",
            {"compartment": "A02"},
            clock(),
            timedelta(minutes=5),
        )
    clock.advance(minutes=5)
    assert news() is False  # expired: nothing to pull


def test_the_heartbeats_wanted_version_follows_the_rollouts_rule(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """The heartbeat reads the wanted version in its own statement: the same answer as
    `updates.wanted_for_bank` through every kind of rollout."""
    nodes = {bank: enroll(client, sessions, clock, bank) for bank in ("NYC-1", "NYC-2")}
    beat = {"doors": {}, "boards": {}, "outbox_depth": 0, "version": "1.0.0"}
    steps: list[Callable[[Session], object]] = [
        lambda s: None,
        lambda s: updates.set_rollout(
            s, version="1.1", bank_ids=None, operator_id=None, now=clock()
        ),
        lambda s: updates.set_rollout(
            s, version="1.2", bank_ids=["NYC-2"], operator_id=None, now=clock()
        ),
        lambda s: updates.set_rollout(
            s, version="1.3", bank_ids=["NYC-1", "BOS-1"], operator_id=None, now=clock()
        ),
        lambda s: updates.stop_rollouts(s, operator_id=None, now=clock()),
    ]
    for step in steps:
        with sessions.begin() as session:
            step(session)
        for bank, node in nodes.items():
            answer = node.post("/v1/node/heartbeat", beat).json()
            with sessions() as session:
                wanted = updates.wanted_for_bank(session, bank)
            expected = (None, None) if wanted is None else (wanted.version, wanted.rollout_id)
            assert (answer["wanted_version"], answer["wanted_rollout"]) == expected


def test_a_heartbeat_that_stopped_half_way_is_made_good_by_the_next(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL a heartbeat's writes commit one by one: one that failed after raising
    its alert leaves the alert, and the next heartbeat records it, raising nothing twice."""
    node = enroll(client, sessions, clock)
    body = {
        "doors": {"A01": "closed"},
        "boards": {"main": "ok"},
        "outbox_depth": 0,
        "version": "1.0.0",
        "health": {"power": "battery"},
    }
    recorded = sync_repository.record_heartbeat

    def lost(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("the database went away")

    monkeypatch.setattr(sync_repository, "record_heartbeat", lost)
    with pytest.raises(ConnectionError):
        node.post("/v1/node/heartbeat", body)
    monkeypatch.setattr(sync_repository, "record_heartbeat", recorded)
    for _ in range(2):
        clock.advance(seconds=30)
        assert node.post("/v1/node/heartbeat", body).status_code == 200
    with sessions() as session:
        alerts = session.scalars(select(Alert).where(Alert.type == "power_lost")).all()
        row = session.get(Node, node.node_id)
    assert [(a.subject, a.resolved_at) for a in alerts] == [("power", None)]
    assert row is not None and row.health is not None
    assert row.health["alerting"] == ["power_lost:power"] and row.last_seen_at == clock()
