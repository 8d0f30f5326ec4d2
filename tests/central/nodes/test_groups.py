"""`parcel.deposited` of a parcel that joined a group-mate's code on the node: the same code for
its carrier, its recipient and its page; compartments shared by group-mates freed last."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.models import Compartment, NodeCommand, Reservation, ReservationEvent, WebhookDelivery
from central.notices.pickup import SHARED_CODE, open_pickup
from tests.central.conftest import World
from tests.central.nodes.support import NodeClient
from tests.central.nodes.test_events import (
    PICKUP_CODE,
    QR_PAYLOAD,
    deposit,
    event,
    every_stored_text,
    send,
    setup,
)
from tests.central.notices import test_outbox
from tests.central.notices.test_outbox import Outbox, text_of
from tests.clock import FakeClock

notices = test_outbox.notices  # the notice dispatcher on fake channels, as a fixture here too

ANA = {"name": "Ana", "email": "ana.garcia@example.com", "phone": "+1 (212) 555-0143"}


def reserve(
    client: TestClient,
    world: World,
    number: str,
    recipient: dict[str, Any] | None = ANA,
    *,
    size: str = "S",
    carrier: str = "acme",
) -> str:
    body: dict[str, Any] = {"tracking_number": number, "bank_id": "NYC-1", "size": size}
    if recipient is not None:
        body["recipient"] = recipient
    response = client.post("/v1/reservations", json=body, headers=world.auth(carrier))
    assert response.status_code == 201, response.text
    rid: str = response.json()["id"]
    return rid


def joined(reservation_id: str, holder_id: str, at: datetime, compartment: str) -> dict[str, Any]:
    """A deposit as the node reports one that joined a group-mate's code: no seals of its own."""
    return event(
        "parcel.deposited",
        {
            "reservation_id": reservation_id,
            "compartment": compartment,
            "sealed_pickup_code": "",
            "sealed_qr_payload": "",
            "shares_code_with": holder_id,
        },
        at,
        str(uuid.uuid4()),
    )


def deposited_webhooks(app: FastAPI, sessions: sessionmaker[Session]) -> dict[str, Any]:
    """The `parcel.deposited` webhook bodies' data, by reservation."""
    with sessions() as session:
        sealed = session.scalars(
            select(WebhookDelivery.body_sealed)
            .where(WebhookDelivery.event_type == "parcel.deposited")
            .order_by(WebhookDelivery.id)
        ).all()
    bodies = [json.loads(app.state.keys.decrypt(body)) for body in sealed]
    return {body["data"]["id"]: body["data"] for body in bodies}


def compartment_state(sessions: sessionmaker[Session], label: str) -> str:
    with sessions() as session:
        state: str = session.scalars(
            select(Compartment.state).where(
                Compartment.bank_id == "NYC-1", Compartment.label == label
            )
        ).one()
        return state


def test_a_parcel_that_joined_a_code_gets_the_holders_code(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = setup(client, world, sessions, clock)
    holder = reserve(client, world, "ACME-J1")
    clock.advance(minutes=1)  # the group lists its reservations oldest first
    joiner = reserve(client, world, "ACME-J2", size="M")

    results = send(
        node, deposit(node, holder, clock(), "A01"), joined(joiner, holder, clock(), "A03")
    )

    assert results == [("applied", None), ("applied", None)]
    webhooks = deposited_webhooks(app, sessions)
    assert "shares_code_with" not in webhooks[holder]
    data = webhooks[joiner]
    assert data["shares_code_with"] == holder
    assert (data["pickup_code"], data["qr_payload"]) == (PICKUP_CODE, QR_PAYLOAD)
    assert data["compartment"] == "A03" and data["status"] == "deposited"
    assert data["group"]["reservations"] == [holder, joiner]
    with sessions() as session:
        row = session.get(Reservation, joiner)
        assert row is not None and row.status == "deposited"
        secret = open_pickup(app.state.keys, row.pickup_secret_sealed)
        last = session.scalars(
            select(ReservationEvent)
            .where(ReservationEvent.reservation_id == joiner)
            .order_by(ReservationEvent.id.desc())
        ).first()
    assert secret is not None and secret.shared
    assert (secret.code, secret.qr_payload) == (PICKUP_CODE, QR_PAYLOAD)
    assert last is not None and last.data is not None
    assert last.data["shares_code_with"] == holder
    # The code is kept sealed only, for the joined parcel as for its holder.
    assert PICKUP_CODE not in every_stored_text(sessions)


def test_group_mates_in_one_compartment_free_it_when_the_last_leaves(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    holder = reserve(client, world, "ACME-J3")
    joiner = reserve(client, world, "ACME-J4")
    send(node, deposit(node, holder, clock(), "A02"), joined(joiner, holder, clock(), "A02"))
    assert compartment_state(sessions, "A02") == "occupied"

    assert send(node, event("parcel.picked_up", {"reservation_id": holder}, clock())) == [
        ("applied", None)
    ]
    assert compartment_state(sessions, "A02") == "occupied"  # the joiner is still in it
    clock.advance(hours=73)  # past its pickup deadline: the courier takes it back
    assert send(node, event("parcel.returned", {"reservation_id": joiner}, clock())) == [
        ("applied", None)
    ]
    assert compartment_state(sessions, "A02") == "free"


def test_both_leaving_in_one_batch_free_the_compartment_once(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    holder = reserve(client, world, "ACME-J5")
    joiner = reserve(client, world, "ACME-J6")

    results = send(
        node,
        deposit(node, holder, clock(), "A01"),
        joined(joiner, holder, clock(), "A01"),
        event("parcel.picked_up", {"reservation_id": joiner}, clock()),
        event("parcel.picked_up", {"reservation_id": holder}, clock()),
    )

    assert results == [("applied", None)] * 4
    assert compartment_state(sessions, "A01") == "free"


def test_a_code_holder_of_another_carrier_or_unknown_is_refused(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    theirs = reserve(client, world, "1Z999AA10123456784", carrier="ups")
    send(node, deposit(node, theirs, clock(), "A01"))
    joiner = reserve(client, world, "ACME-J7")

    results = send(
        node,
        joined(joiner, theirs, clock(), "A02"),
        joined(joiner, "rsv_00000000000000000000", clock(), "A02"),
    )

    assert results == [("rejected", "unknown_code_holder")] * 2
    with sessions() as session:
        row = session.get(Reservation, joiner)
        assert row is not None and row.status == "reserved"


def test_without_the_holders_code_the_node_is_asked_for_a_code_of_its_own(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node: NodeClient = setup(client, world, sessions, clock)
    # Central counts the holder in another group now (its contact changed after its deposit).
    holder = reserve(client, world, "ACME-J8", {"email": "bob@example.com"})
    joiner = reserve(client, world, "ACME-J9")
    send(node, deposit(node, holder, clock(), "A01"))

    assert send(node, joined(joiner, holder, clock(), "A02")) == [("applied", None)]

    data = deposited_webhooks(app, sessions)[joiner]
    assert data["shares_code_with"] == holder
    assert data["pickup_code"] is None and data["qr_payload"] is None
    with sessions() as session:
        row = session.get(Reservation, joiner)
        assert row is not None and row.status == "deposited"
        assert row.pickup_secret_sealed is None
        [command] = session.scalars(select(NodeCommand)).all()
    assert command.type == "invalidate_code" and command.status == "pending"
    assert command.payload["reservation_id"] == joiner and command.payload["reissue"] is True


def test_the_recipient_hears_it_is_one_more_parcel_under_the_same_code(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    notices: Outbox,
) -> None:
    node = setup(client, world, sessions, clock)
    holder = reserve(client, world, "ACME-J10")
    joiner = reserve(client, world, "ACME-J11", {**ANA, "language": "es"}, size="M")
    send(node, deposit(node, holder, clock(), "A01"), joined(joiner, holder, clock(), "A03"))

    assert notices.send_due() == 4
    english, spanish = notices.mailer.sent
    assert f"Pickup code: {PICKUP_CODE}" in text_of(english)
    assert SHARED_CODE["en"] not in text_of(english)  # the holder's own code: nothing to add
    assert f"Código de recogida: {PICKUP_CODE}" in text_of(spanish)
    assert SHARED_CODE["es"] in text_of(spanish)
    sms_bodies = [body for _, body in notices.sms.sent]
    assert SHARED_CODE["en"] not in sms_bodies[0]
    assert SHARED_CODE["es"] in sms_bodies[1] and PICKUP_CODE in sms_bodies[1]
