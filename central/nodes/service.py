"""Locker nodes: enrollment, request authentication, events up, the feed down, commands, health."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, get_args
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from central.analytics.node_events import NODE_EVENT_MODELS
from central.banks import repository as banks_repository
from central.errors import ApiError, NotFound, Unprocessable
from central.keys import ServiceKeys
from central.models import (
    Actor,
    Alert,
    Bank,
    CompartmentState,
    EnrollmentToken,
    Node,
    NodeCommand,
    Reservation,
    ReservationStatus,
)
from central.nodes import repository as repo
from central.nodes.reissue import CodeReissuedData, on_code_reissued
from central.nodes.seals import open_pickup_seals, sealing_key
from central.reservations import repository as reservations_repository
from central.reservations.service import Ctx, transition
from locker_wire import signing
from locker_wire.schemas import (
    Command,
    CommandAck,
    CommandAckResult,
    CommandType,
    CompartmentEventData,
    CompartmentInfo,
    CourierCodeHash,
    DepositedData,
    EnrollmentRequest,
    EnrollmentResponse,
    EventBatch,
    EventBatchResult,
    EventResult,
    FeedReservation,
    FeedResponse,
    Heartbeat,
    HeartbeatResult,
    NodeEvent,
    NodePolicy,
    ReservationEventData,
)
from locker_wire.sealing import sealing_public_key_text

ENROLLMENT_TOKEN_TTL = timedelta(hours=24)
NONCE_RETENTION = timedelta(minutes=10)
HEARTBEAT_INTERVAL = timedelta(seconds=30)
MISSED_HEARTBEATS = 3
# A change is delivered again for this long after it was made: a transaction that took its
# `updated_at` before a feed read but committed after it is still picked up by the next read.
FEED_OVERLAP = timedelta(minutes=5)
COMMAND_TTL_LIMITS = (timedelta(minutes=1), timedelta(days=7))
# scrypt cost for courier code hashes: ~60 ms per hash here, so an 8-digit code's 1e8 candidates
# take CPU-months, while a code lives one day.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EventRejected(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class NodeError(ValueError):
    """An operator request about nodes that cannot be carried out (CLI)."""


# Central's keys -----------------------------------------------------------------------------------


def signing_key(keys: ServiceKeys) -> Ed25519PrivateKey:
    """Derived from the service key: no other secret to keep, and stable across restarts."""
    return Ed25519PrivateKey.from_private_bytes(keys.derive("node-commands"))


# Enrollment ---------------------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    # The token carries 256 random bits, so a fast hash is enough: there is nothing to guess.
    return hashlib.sha256(token.encode()).hexdigest()


def issue_enrollment_token(session: Session, bank_id: str, now: datetime) -> str:
    if banks_repository.get_bank(session, bank_id) is None:
        raise NodeError(f"no bank {bank_id!r}")
    token = f"enr_{secrets.token_urlsafe(32)}"
    repo.add(
        session,
        EnrollmentToken(
            bank_id=bank_id,
            token_hash=_token_hash(token),
            created_at=now,
            expires_at=now + ENROLLMENT_TOKEN_TTL,
        ),
    )
    session.flush()
    return token


def _token_error(code: str, detail: str) -> ApiError:
    return ApiError(401, code, detail)


def enroll(
    session: Session, keys: ServiceKeys, body: EnrollmentRequest, now: datetime
) -> EnrollmentResponse:
    token = repo.token_by_hash(session, _token_hash(body.token))
    if token is None:
        raise _token_error("invalid_token", "this enrollment token is not known")
    if token.used_at is not None:
        raise _token_error("token_used", "this enrollment token was used already")
    if token.expires_at <= now:
        raise _token_error("token_expired", "this enrollment token has expired; issue a new one")
    if body.bank_id is not None and body.bank_id != token.bank_id:
        raise ApiError(403, "wrong_bank", f"this token enrolls bank {token.bank_id}, not that one")
    try:
        signing.load_public_key(body.public_key)
    except ValueError as exc:
        raise Unprocessable("invalid_public_key", "public_key is not an Ed25519 key") from exc
    bank = repo.lock_bank(session, token.bank_id)
    if bank is None:
        raise NotFound(f"bank {token.bank_id}", code="unknown_bank")
    if not repo.use_token(session, token.id, now):
        raise _token_error("token_used", "this enrollment token was used already")
    # One node per bank: the new enrollment is the bank's node from now on.
    repo.revoke_nodes_of_bank(session, bank.id, now)
    node = Node(
        id=f"node_{secrets.token_hex(12)}",
        bank_id=bank.id,
        public_key=body.public_key,
        version=body.node_version,
        enrolled_at=now,
        last_seen_at=now,
        online=True,
    )
    repo.add(session, node)
    compartments = repo.compartments_of(session, bank.id)
    mismatch = _layout_mismatch(
        {c.label: c.size for c in compartments}, {c.label: c.size for c in body.compartments}
    )
    if mismatch and body.compartments:
        _alert(session, bank.id, "layout_mismatch", {"node_id": node.id, **mismatch}, now)
    session.flush()
    return EnrollmentResponse(
        node_id=node.id,
        bank_id=bank.id,
        timezone=bank.timezone,
        compartments=[
            CompartmentInfo(
                label=c.label,
                size=c.size,
                length_mm=c.length_mm,
                width_mm=c.width_mm,
                height_mm=c.height_mm,
                state=c.state,
            )
            for c in compartments
        ],
        policy=NodePolicy(
            hold_hours=bank.hold_hours,
            pickup_hours=bank.pickup_hours,
            reminder_hours=bank.reminder_hours,
            max_extension_hours=bank.max_extension_hours,
            allow_upsize=bank.allow_upsize,
        ),
        layout_matches=not mismatch or not body.compartments,
        central_signing_public_key=signing.public_key_text(signing_key(keys)),
        central_sealing_public_key=sealing_public_key_text(sealing_key(keys)),
    )


def _layout_mismatch(central: dict[str, str], reported: dict[str, str]) -> dict[str, Any]:
    missing = sorted(set(central) - set(reported))
    unknown = sorted(set(reported) - set(central))
    resized = {
        label: {"central": central[label], "node": reported[label]}
        for label in sorted(set(central) & set(reported))
        if central[label] != reported[label]
    }
    if not (missing or unknown or resized):
        return {}
    return {"missing_on_node": missing, "unknown_to_central": unknown, "size_differs": resized}


def _alert(
    session: Session, bank_id: str, alert_type: str, detail: dict[str, Any], now: datetime
) -> None:
    repo.add(session, Alert(bank_id=bank_id, type=alert_type, detail=detail, created_at=now))


# Signed requests ----------------------------------------------------------------------------------


def _unauthorized(code: str, detail: str, **extra: Any) -> ApiError:
    return ApiError(401, code, detail, **extra)


def authenticate(
    session: Session,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> Node:
    """The node that signed this request, or a 401 saying why not; remembers the nonce."""
    try:
        claimed = signing.read_headers(headers)
    except signing.MissingSignature as exc:
        raise _unauthorized("missing_signature", str(exc)) from exc
    except signing.WireError as exc:
        raise _unauthorized("invalid_signature", str(exc)) from exc
    node = repo.get_node(session, claimed.node_id)
    if node is None or node.revoked_at is not None:
        raise _unauthorized("unknown_node", "no enrolled node has this id")
    unix_now = int(now.timestamp())
    try:
        signing.verify_request(
            signing.load_public_key(node.public_key), headers, method, path, body, unix_now
        )
    except signing.ClockSkew as exc:
        raise _unauthorized(
            "clock_skew",
            "the request's timestamp is too far from central's clock",
            server_time=exc.server_time,
        ) from exc
    except (signing.WireError, ValueError) as exc:
        raise _unauthorized("invalid_signature", "the signature does not match") from exc
    if not repo.record_nonce(session, node.id, claimed.nonce, now):
        raise _unauthorized("replayed_nonce", "this request was received before")
    return node


def purge_nonces(session: Session, now: datetime) -> int:
    return repo.purge_nonces(session, now - NONCE_RETENTION)


def expire_commands(session: Session, now: datetime) -> int:
    """Commands no node acknowledged in time; the feed stopped offering them at expiry already."""
    return repo.expire_commands(session, now)


# Events up ----------------------------------------------------------------------------------------


def apply_events(ctx: Ctx, node: Node, batch: EventBatch) -> EventBatchResult:
    """Apply each event once, in the order given; one event's rejection does not stop the rest.

    A batch costs a handful of statements whatever its size: one INSERT claims every event
    (recording its validated data and the decision), the bank's compartments are read once,
    alerts go in with one statement at the end and so do the decisions that changed while
    applying. Only a handler that writes several rows and can still be refused after the first
    (`Handler.savepoint`) pays for a savepoint of its own.
    """
    state = BatchState(
        compartments=repo.compartment_rows(ctx.session, node.bank_id), session=ctx.session
    )
    checked: list[tuple[NodeEvent, BaseModel | None, EventRejected | None]] = []
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for event in batch.events:
        data, rejection = _validate(event)
        checked.append((event, data, rejection))
        event_id = str(event.id)
        if event_id in seen:
            continue  # the same event twice in one batch: the first is the one that counts
        seen.add(event_id)
        # Only validated data is kept: a node that sent a secret in clear by mistake does not
        # get it stored. Deposits keep their seals, never what is inside.
        rows.append(
            {
                "id": event_id,
                "node_id": node.id,
                "bank_id": node.bank_id,
                "type": event.type,
                "occurred_at": event.occurred_at,
                "received_at": ctx.now,
                "status": "rejected" if rejection else "applied",
                "error": rejection.code if rejection else None,
                "data": data.model_dump(mode="json") if data is not None else {},
            }
        )
    claimed = repo.claim_events(ctx.session, rows)
    state.reservations = repo.lock_reservations(
        ctx.session,
        node.bank_id,
        (
            reservation_id
            for event, data, _ in checked
            if str(event.id) in claimed
            and isinstance(reservation_id := getattr(data, "reservation_id", None), str)
        ),
    )
    state.in_session = list(state.reservations.values())
    state.set_aside()
    results: list[EventResult] = []
    refused: list[tuple[str, str, str | None]] = []
    for event, data, rejection in checked:
        event_id = str(event.id)
        if event_id not in claimed:
            results.append(EventResult(id=event.id, status="duplicate"))
            continue
        claimed.discard(event_id)  # a second copy later in the batch is a duplicate
        if rejection is None:
            assert data is not None
            rejection = _run_handler(ctx, node, event, data, state)
            if rejection is not None:
                refused.append((event_id, "rejected", rejection.code))
        if rejection is not None:
            results.append(
                EventResult(
                    id=event.id, status="rejected", error=rejection.code, detail=rejection.detail
                )
            )
        else:
            results.append(EventResult(id=event.id, status="applied"))
    state.finish(ctx, node.bank_id)
    repo.set_event_outcomes(ctx.session, refused)
    return EventBatchResult(results=results)


def _validate(event: NodeEvent) -> tuple[BaseModel | None, EventRejected | None]:
    model = _DATA_MODELS.get(event.type)
    if model is None or event.type not in _HANDLERS:
        return None, EventRejected("unknown_event_type", f"no event type {event.type!r}")
    try:
        return model.model_validate(event.data), None
    except ValidationError as exc:
        return None, EventRejected("invalid_event", _first_error(exc))


def _run_handler(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> EventRejected | None:
    handler = _HANDLERS[event.type]
    try:
        if handler.savepoint:
            with ctx.session.begin_nested():
                handler.apply(ctx, node, event, data, state)
        else:
            handler.apply(ctx, node, event, data, state)
    except EventRejected as exc:
        return exc
    except ApiError as exc:
        return EventRejected(exc.code, exc.detail)
    finally:
        state.set_aside()
    return None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg"))


@dataclass(slots=True)
class BatchState:
    """What the events of one batch share: rows read once up front, writes made once at the end.

    `compartments` is kept current as handlers change states, so a later event of the batch
    sees what an earlier one did; the changed states are written by `finish`, with the alerts.
    The reservations named by the batch's events (any event data with a `reservation_id`) are
    locked and loaded up front; a handler takes one with `own_reservation`.
    """

    compartments: dict[str, repo.CompartmentRow]
    reservations: dict[str, Reservation] = field(default_factory=dict)
    in_session: list[Reservation] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    changed_states: dict[int, str] = field(default_factory=dict)
    working_units: dict[str, int] = field(default_factory=dict)  # size class -> change
    resolved: set[tuple[str, str]] = field(default_factory=set)  # (alert type, subject)
    bank: Bank | None = None
    # When given, the reservations stay out of this session between events (`set_aside`).
    session: Session | None = None

    def compartment(self, label: str) -> repo.CompartmentRow:
        found = self.compartments.get(label)
        if found is None:
            raise EventRejected("unknown_compartment", f"no compartment {label}")
        return found

    def set_state(self, row: repo.CompartmentRow, state: CompartmentState) -> None:
        self.compartments[row.label] = row._replace(state=state.value)
        self.changed_states[row.id] = state.value
        # A compartment leaving or returning to service takes its unit out of, or back into,
        # what allocation can give for its class.
        leaving = state == CompartmentState.OUT_OF_SERVICE
        if leaving != (row.state == CompartmentState.OUT_OF_SERVICE):
            self.working_units[row.size] = self.working_units.get(row.size, 0) + (
                -1 if leaving else 1
            )

    def add_alert(
        self, alert_type: str, subject: str | None, detail: dict[str, Any], now: datetime
    ) -> None:
        self.alerts.append(
            {"type": alert_type, "subject": subject, "detail": detail, "created_at": now}
        )
        self.resolved.discard((alert_type, subject))

    def resolve_alert(self, alert_type: str, subject: str) -> None:
        """The trouble is over: its open alert (or one raised earlier in the batch) resolves."""
        self.alerts = [a for a in self.alerts if (a["type"], a["subject"]) != (alert_type, subject)]
        self.resolved.add((alert_type, subject))

    def own_reservation(self, reservation_id: str) -> Reservation:
        # Locked by `apply_events` (in id order, for the whole batch), so a carrier's change
        # racing this batch waits instead of failing either side. Another bank's reservation
        # was not loaded, and reads exactly like a missing one.
        reservation = self.reservations.get(reservation_id)
        if reservation is None:
            raise EventRejected(
                "unknown_reservation", f"no reservation {reservation_id} at this bank"
            )
        if self.session is not None and reservation not in self.session:
            self.session.add(reservation)
            self.in_session.append(reservation)
        return reservation

    def set_aside(self) -> None:
        """Take the batch's reservations out of the session between events.

        The ORM keeps every loaded object in step with each UPDATE it runs, by checking the
        UPDATE's criteria against each object of that class in the session: with a batch's
        hundreds of reservations in it, each transition would cost a pass over all of them.
        An event's handler brings back the one it needs (`own_reservation`).
        """
        if self.session is None:
            return
        for reservation in self.in_session:
            if reservation in self.session:
                self.session.expunge(reservation)
        self.in_session.clear()

    def finish(self, ctx: Ctx, bank_id: str) -> None:
        repo.set_compartment_states(ctx.session, self.changed_states)
        repo.change_working_units(ctx.session, bank_id, self.working_units)
        repo.raise_bank_alerts(ctx.session, bank_id, self.alerts)
        repo.resolve_subject_alerts(ctx.session, bank_id, sorted(self.resolved), ctx.now)


def _bank(ctx: Ctx, node: Node) -> Bank:
    bank = banks_repository.get_bank(ctx.session, node.bank_id)
    assert bank is not None
    return bank


def _on_deposited(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> None:
    assert isinstance(data, DepositedData)
    reservation = state.own_reservation(data.reservation_id)
    compartment = state.compartment(data.compartment)
    opened = open_pickup_seals(ctx.keys, str(event.id), data)
    if opened is None:
        raise EventRejected("invalid_seal", "a sealed value does not open for this event")
    pickup_code, qr_payload = opened
    if state.bank is None:
        state.bank = _bank(ctx, node)
    # A node clock running ahead must not push the pickup deadline out; never later than now.
    deposited_at = min(event.occurred_at.astimezone(UTC), ctx.now)
    transition(
        ctx,
        reservation,
        ReservationStatus.DEPOSITED,
        actor=Actor.COURIER,
        actor_id=node.id,
        changes={
            "compartment_label": compartment.label,
            "deposited_at": deposited_at,
            "pickup_deadline": deposited_at + timedelta(hours=state.bank.pickup_hours),
        },
        event_data={"node_event_id": str(event.id), "compartment": compartment.label},
        # Only the webhook body carries the secrets, and the outbox keeps that body encrypted.
        webhook_extra={"pickup_code": pickup_code, "qr_payload": qr_payload},
    )
    state.set_state(compartment, CompartmentState.OCCUPIED)


def _free_compartment(ctx: Ctx, state: BatchState, label: str | None) -> None:
    compartment = state.compartments.get(label) if label is not None else None
    if compartment is not None and compartment.state == CompartmentState.OCCUPIED:
        state.set_state(compartment, CompartmentState.FREE)


def _on_picked_up(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> None:
    assert isinstance(data, ReservationEventData)
    reservation = state.own_reservation(data.reservation_id)
    transition(
        ctx,
        reservation,
        ReservationStatus.PICKED_UP,
        actor=Actor.RECIPIENT,
        actor_id=node.id,
        event_data={"node_event_id": str(event.id), "occurred_at": event.occurred_at.isoformat()},
    )
    _free_compartment(ctx, state, reservation.compartment_label)


def _on_returned(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> None:
    assert isinstance(data, ReservationEventData)
    reservation = state.own_reservation(data.reservation_id)
    node_event = {"node_event_id": str(event.id), "occurred_at": event.occurred_at.isoformat()}
    deadline = reservation.pickup_deadline
    if (
        reservation.status == ReservationStatus.DEPOSITED
        and deadline is not None
        and min(event.occurred_at, ctx.now) >= deadline
    ):
        # The node enforces the pickup deadline itself, possibly before central's job noticed.
        transition(
            ctx,
            reservation,
            ReservationStatus.EXPIRED,
            actor=Actor.SYSTEM,
            reason="not picked up before pickup_deadline",
            event_data=node_event,
        )
    transition(
        ctx,
        reservation,
        ReservationStatus.RETURNED,
        actor=Actor.COURIER,
        actor_id=node.id,
        event_data=node_event,
    )
    _free_compartment(ctx, state, reservation.compartment_label)


def _on_compartment_alert(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> None:
    assert isinstance(data, CompartmentEventData)
    compartment = state.compartment(data.compartment)
    state.add_alert(
        event.type.replace(".", "_"),
        compartment.label,
        {
            "compartment": compartment.label,
            "node_id": node.id,
            "node_event_id": str(event.id),
            "occurred_at": event.occurred_at.isoformat(),
            "detail": data.detail,
        },
        ctx.now,
    )
    if event.type == "compartment.out_of_service":
        state.set_state(compartment, CompartmentState.OUT_OF_SERVICE)


def _on_in_service(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> None:
    """Back in service (an operator enabled it, or the node cleared a fault): usable again."""
    assert isinstance(data, CompartmentEventData)
    compartment = state.compartment(data.compartment)
    if compartment.state != CompartmentState.OUT_OF_SERVICE:
        return
    state.resolve_alert("compartment_out_of_service", compartment.label)
    occupied = repo.compartment_holds_parcel(ctx.session, node.bank_id, compartment.label)
    state.set_state(compartment, CompartmentState.OCCUPIED if occupied else CompartmentState.FREE)


def _record_only(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> None:
    """Nothing beyond the event row, which the batch's claim already wrote."""


@dataclass(frozen=True, slots=True)
class Handler:
    """How central applies one event type, once its data passed `_DATA_MODELS` validation."""

    apply: Callable[[Ctx, Node, NodeEvent, BaseModel, BatchState], None]
    # For handlers that can still be refused (EventRejected, ApiError) after their first write:
    # a savepoint undoes the partial work. A handler that makes all its checks before writing
    # anything, or writes only through `BatchState`, does without one (two round trips saved).
    savepoint: bool = False


_DATA_MODELS: dict[str, type[BaseModel]] = {
    "parcel.deposited": DepositedData,
    "parcel.picked_up": ReservationEventData,
    "parcel.returned": ReservationEventData,
    "door.fault": CompartmentEventData,
    "door.left_open": CompartmentEventData,
    "door.forced_open": CompartmentEventData,
    "compartment.out_of_service": CompartmentEventData,
    "compartment.in_service": CompartmentEventData,
    "parcel.code_reissued": CodeReissuedData,
    **NODE_EVENT_MODELS,
}

# An event type central only keeps (analytics: the event row is the record) registers its data
# model in `_DATA_MODELS` and `RECORD_ONLY` in `_HANDLERS`.
RECORD_ONLY = Handler(_record_only)

_HANDLERS: dict[str, Handler] = {
    # One `transition` each, after checks that write nothing; `transition` itself refuses
    # (invalid_transition, concurrent_update) before its first write.
    "parcel.deposited": Handler(_on_deposited),
    "parcel.picked_up": Handler(_on_picked_up),
    # Two transitions when the parcel must be expired first: the second could refuse.
    "parcel.returned": Handler(_on_returned, savepoint=True),
    "door.fault": Handler(_on_compartment_alert),
    "door.left_open": Handler(_on_compartment_alert),
    "door.forced_open": Handler(_on_compartment_alert),
    "compartment.out_of_service": Handler(_on_compartment_alert),
    "compartment.in_service": Handler(_on_in_service),
    # All checks before the first write (a history event, then the webhook).
    "parcel.code_reissued": Handler(on_code_reissued),
    # Kiosk usage (code failures, lockouts, courier sessions): kept for analytics and reports.
    **dict.fromkeys(NODE_EVENT_MODELS, RECORD_ONLY),
}


# Feed down ----------------------------------------------------------------------------------------


def encode_cursor(position: tuple[datetime, str]) -> str:
    raw = json.dumps({"t": position[0].astimezone(UTC).isoformat(), "id": position[1]})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        at = datetime.fromisoformat(raw["t"])
        rid = raw["id"]
        if at.tzinfo is None or not isinstance(rid, str):
            raise ValueError("bad cursor")
        return at, rid
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API gave out") from exc


@dataclass(frozen=True, slots=True)
class CourierCodeDue:
    """A courier code to send, still in clear: hashed by `hash_courier_codes`, never stored."""

    carrier: str
    valid_from: datetime
    valid_until: datetime
    code: str


def feed(
    ctx: Ctx, node: Node, cursor: str | None, limit: int, *, courier_codes: bool = True
) -> tuple[FeedResponse, list[CourierCodeDue]]:
    """Reservations changed after the cursor, pending commands and courier code hashes.

    Positions are (updated_at, id). A full page moves the cursor to its last row (`more`); a
    caught-up read moves it to the last row or to now minus FEED_OVERLAP, whichever is earlier,
    so the next read sees again every change of the last few minutes, including one whose
    transaction stamped it before this read but committed after. The node applies a reservation
    only when its `updated_at` is newer than the copy it has, so seeing one twice is harmless.

    Courier codes come back unhashed, for `hash_courier_codes` to hash once the transaction is
    over: scrypt takes a while, and no database lock should wait for it.
    """
    after = decode_cursor(cursor) if cursor else (_EPOCH, "")
    rows = repo.changed_reservations(ctx.session, node.bank_id, after, limit)
    more = len(rows) == limit
    last = (rows[-1].updated_at, rows[-1].id) if rows else after
    position = last if more else min(last, (ctx.now - FEED_OVERLAP, ""))
    response = FeedResponse(
        reservations=[
            FeedReservation(
                id=r.id,
                carrier=r.carrier_id,
                tracking_number=r.tracking_number,
                size=r.size,
                status=r.status,
                compartment=r.compartment_label,
                reserved_until=r.reserved_until,
                pickup_deadline=r.pickup_deadline,
                updated_at=r.updated_at,
            )
            for r in rows
        ],
        commands=[
            describe_command(c) for c in repo.pending_commands(ctx.session, node.id, ctx.now)
        ],
        courier_codes=[],
        cursor=encode_cursor(position),
        more=more,
    )
    return response, _courier_codes(ctx, _bank(ctx, node)) if courier_codes else []


def hash_courier_code(code: str, salt: bytes) -> str:
    return hashlib.scrypt(
        code.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    ).hex()


def _courier_codes(ctx: Ctx, bank: Bank) -> list[CourierCodeDue]:
    zone = ZoneInfo(bank.timezone)
    today = ctx.now.astimezone(zone).date()
    return [
        CourierCodeDue(
            carrier=carrier_id,
            valid_from=datetime.combine(day, time(0), zone),
            valid_until=datetime.combine(day + timedelta(days=1), time(0), zone),
            code=ctx.keys.courier_code(carrier_id, bank.id, day),
        )
        for carrier_id in repo.carrier_ids(ctx.session)
        for day in (today, today + timedelta(days=1))
    ]


class _CodeHashes:
    """Hashed codes by (carrier, bank, day), kept so each is hashed once a process, not per pull.

    scrypt costs ~28 ms of CPU on purpose; nodes pull their codes every few minutes, so without
    this a fleet of 5,000 banks and four carriers would spend about two cores on hashing the
    same codes again. Entries live in this process's memory only (like the key the codes are
    derived from), keyed by the code too, so a different key can never be served an old hash.
    Least recently used entries go first beyond `limit`.
    """

    def __init__(self, limit: int = 65_536) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._hashes: OrderedDict[tuple[str, str, datetime, str], CourierCodeHash] = OrderedDict()

    def get(self, bank_id: str, item: CourierCodeDue) -> CourierCodeHash:
        key = (item.carrier, bank_id, item.valid_from, item.code)
        with self._lock:
            found = self._hashes.get(key)
            if found is not None:
                self._hashes.move_to_end(key)
                return found
        salt = secrets.token_bytes(16)
        made = CourierCodeHash(
            carrier=item.carrier,
            valid_from=item.valid_from,
            valid_until=item.valid_until,
            code_hash=hash_courier_code(item.code, salt),
            salt=salt.hex(),
            n=SCRYPT_N,
            r=SCRYPT_R,
            p=SCRYPT_P,
        )
        with self._lock:
            self._hashes[key] = made
            while len(self._hashes) > self._limit:
                self._hashes.popitem(last=False)
        return made


_CODE_HASHES = _CodeHashes()


def hash_courier_codes(bank_id: str, due: Sequence[CourierCodeDue]) -> list[CourierCodeHash]:
    """Each code as scrypt with a random salt: the node can check a PIN, not recover it."""
    return [_CODE_HASHES.get(bank_id, item) for item in due]


# Commands -----------------------------------------------------------------------------------------

COMMAND_TYPES: tuple[str, ...] = get_args(CommandType)
_COMPARTMENT_COMMANDS = {"open_compartment", "disable_compartment", "enable_compartment"}


def describe_command(row: NodeCommand) -> Command:
    return Command(
        id=row.id,
        node_id=row.node_id,
        bank_id=row.bank_id,
        type=row.type,
        payload=row.payload,
        issued_at=int(row.issued_at.timestamp()),
        expires_at=int(row.expires_at.timestamp()),
        signature=row.signature,
    )


def issue_command(
    session: Session,
    keys: ServiceKeys,
    bank_id: str,
    command_type: str,
    payload: dict[str, Any],
    now: datetime,
    ttl: timedelta = timedelta(minutes=15),
) -> Command:
    """Sign and queue a command for the bank's node; the feed delivers it until it expires."""
    if command_type not in COMMAND_TYPES:
        raise NodeError(f"unknown command type {command_type!r}; one of {', '.join(COMMAND_TYPES)}")
    if not COMMAND_TTL_LIMITS[0] <= ttl <= COMMAND_TTL_LIMITS[1]:
        raise NodeError("a command lives between one minute and seven days")
    node = repo.active_node_of_bank(session, bank_id)
    if node is None:
        raise NodeError(f"bank {bank_id!r} has no enrolled node")
    _check_payload(session, bank_id, command_type, payload)
    # Whole seconds: the signed form carries unix seconds, and the stored times must give them back.
    issued = now.astimezone(UTC).replace(microsecond=0)
    fields: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "node_id": node.id,
        "bank_id": bank_id,
        "type": command_type,
        "payload": payload,
        "issued_at": int(issued.timestamp()),
        "expires_at": int((issued + ttl).timestamp()),
    }
    signature = signing.sign_command(signing_key(keys), fields)
    row = NodeCommand(
        id=fields["id"],
        node_id=node.id,
        bank_id=bank_id,
        type=command_type,
        payload=payload,
        issued_at=issued,
        expires_at=issued + ttl,
        signature=signature,
        status="pending",
    )
    repo.add(session, row)
    session.flush()
    return describe_command(row)


def _check_payload(
    session: Session, bank_id: str, command_type: str, payload: dict[str, Any]
) -> None:
    if command_type in _COMPARTMENT_COMMANDS:
        label = payload.get("compartment")
        if not isinstance(label, str) or repo.compartment(session, bank_id, label) is None:
            raise NodeError(f"{command_type} needs the label of one of the bank's compartments")
        return
    reservation_id = payload.get("reservation_id")
    reservation = (
        reservations_repository.get(session, reservation_id)
        if isinstance(reservation_id, str)
        else None
    )
    if reservation is None or reservation.bank_id != bank_id:
        raise NodeError(f"{command_type} needs the id of one of the bank's reservations")
    if command_type == "extend_deadline":
        hours = payload.get("hours")
        if not isinstance(hours, int) or isinstance(hours, bool) or not 1 <= hours <= 168:
            raise NodeError("extend_deadline needs hours between 1 and 168")


def ack_command(
    session: Session, node: Node, command_id: str, ack: CommandAck, now: datetime
) -> CommandAckResult:
    """Record the node's outcome once; acknowledging again answers the recorded status."""
    row = repo.get_command(session, command_id)
    if row is None or row.node_id != node.id:
        raise NotFound(f"command {command_id}", code="unknown_command")
    if row.status in ("pending", "expired"):
        status = "acknowledged" if ack.outcome == "ok" else "failed"
        result = {"outcome": ack.outcome, "detail": ack.detail}
        if repo.finish_command(session, row.id, status, result, now):
            row.status = status
    return CommandAckResult(id=row.id, status=row.status)


# Health -------------------------------------------------------------------------------------------


def record_heartbeat(
    session: Session, node: Node, body: Heartbeat, now: datetime
) -> HeartbeatResult:
    health = {"doors": body.doors, "boards": body.boards, "outbox_depth": body.outbox_depth}
    was_offline = not node.online  # read first: the update below refreshes the loaded row
    repo.record_heartbeat(session, node.id, now, health, body.version)
    if was_offline:
        repo.resolve_alerts(session, node.bank_id, "bank_offline", now)
    return HeartbeatResult(server_time=int(now.timestamp()), online=True)


def mark_silent_nodes_offline(session: Session, now: datetime) -> int:
    """Nodes that missed three heartbeats go offline, each with a `bank_offline` alert."""
    seen_before = now - HEARTBEAT_INTERVAL * MISSED_HEARTBEATS
    silent = repo.mark_silent_offline(session, seen_before)
    repo.insert_alerts(
        session,
        [
            {
                "bank_id": node.bank_id,
                "type": "bank_offline",
                "detail": {"node_id": node.id, "last_seen_at": node.last_seen_at.isoformat()},
                "created_at": now,
            }
            for node in silent
        ],
    )
    return len(silent)
