"""The sync loop: outbox to central, feed (reservations, courier codes, commands) to the store."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, get_args

from sqlalchemy import Engine

from locker_node.config import SyncConfig
from locker_node.domain.codes import DEFAULT_CODE_DIGITS
from locker_node.domain.doors import (
    CompartmentUnavailable,
    DoorController,
    DoorOpened,
    UnknownCompartment,
)
from locker_node.domain.lifecycle import EventType
from locker_node.store import inbound
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from locker_node.store.keys import NodeKeys
from locker_node.sync.client import CentralClient, CentralError, CentralUnavailable
from locker_node.sync.identity import NodeIdentity, write_atomically
from locker_wire.schemas import Command, CommandAck, FeedResponse, Heartbeat, KioskEventType
from locker_wire.sealing import seal, seal_context
from locker_wire.signing import InvalidCommand, verify_command

logger = logging.getLogger(__name__)

CURSOR_FILE = "sync-cursor"
ACTOR = "central"
# What central's event API knows; the node's other events stay local (see `wire_event`).
_RESERVATION_EVENTS = {EventType.PARCEL_PICKED_UP, EventType.PARCEL_RETURNED}
# Events that carry a new pickup code and QR payload, sealed to central's key on the wire.
_CODE_EVENTS = {EventType.PARCEL_DEPOSITED, EventType.PARCEL_CODE_REISSUED}
_COMPARTMENT_EVENTS = {
    EventType.COMPARTMENT_OUT_OF_SERVICE,
    EventType.COMPARTMENT_IN_SERVICE,
    EventType.DOOR_FORCED_OPEN,
    EventType.DOOR_LEFT_OPEN,
}
_KIOSK_EVENTS = set(get_args(KioskEventType))
MAX_FEED_PAGES = 50


class SyncService:
    """One node's conversation with central; `run_once` is one pass, `start` runs it in a thread.

    Central unreachable is normal: events stay queued and go out, in order, on a later pass.
    """

    def __init__(
        self,
        engine: Engine,
        client: CentralClient,
        identity: NodeIdentity,
        keys: NodeKeys,
        doors: DoorController,
        config: SyncConfig,
        *,
        bank_id: str,
        data_dir: Path,
        board_of: Mapping[str, str],
        clock: Callable[[], datetime],
        version: str = "0",
        code_digits: int = DEFAULT_CODE_DIGITS,
    ) -> None:
        self._engine = engine
        self._client = client
        self._identity = identity
        self._keys = keys
        self._doors = doors
        self.config = config
        self._bank_id = bank_id
        self._cursor_path = data_dir / CURSOR_FILE
        self._board_of = dict(board_of)
        self._clock = clock
        self._version = version
        self._code_digits = code_digits  # of codes reissued on central's command, as the kiosk's
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_heartbeat: float | None = None
        self._last_codes: float | None = None
        self._unavailable = False

    # Outbox -----------------------------------------------------------------------------------

    def wire_event(self, event: repo.OutboxEvent) -> dict[str, Any] | None:
        """The event as central's wire has it, or None for an event central has no type for.

        Those (`parcel.expired`, board events) stay on the node: central expires parcels on its
        own clock, and board and door health travel in the heartbeat.
        """
        data = event.data
        body: dict[str, Any]
        if event.type in _CODE_EVENTS:
            sealing = self._identity.central.sealing
            body = {
                "reservation_id": data["reservation_id"],
                "compartment": data["compartment"],
            }
            # Sealed anew on every send: the node's own seal never leaves it, and central's
            # opens only in this event's context.
            for field in ("pickup_code", "qr_payload"):
                clear = self._keys.unseal(str(data[f"sealed_{field}"]))
                body[f"sealed_{field}"] = seal(
                    sealing, clear.encode(), context=seal_context(event.event_id, field)
                )
            if event.type == EventType.PARCEL_CODE_REISSUED and data.get("command_id"):
                body["command_id"] = str(data["command_id"])
        elif event.type in _RESERVATION_EVENTS:
            body = {"reservation_id": data["reservation_id"]}
        elif event.type in _COMPARTMENT_EVENTS:
            detail = {k: v for k, v in data.items() if k != "compartment"}
            body = {"compartment": data["compartment"], "detail": detail or None}
        elif event.type in _KIOSK_EVENTS:
            body = dict(data)  # usage figures only: no codes, no personal data
        else:
            return None
        return {
            "id": event.event_id,
            "type": event.type,
            "occurred_at": json.loads(event.payload)["occurred_at"],
            "data": body,
        }

    def deliver_outbox(self) -> int:
        """Send queued events in order, a batch at a time; how many central has now taken."""
        delivered = 0
        while not self._stopping.is_set():
            with transaction(self._engine) as conn:
                batch = repo.outbox_events(conn, limit=self.config.batch_size, unsent_only=True)
            if not batch:
                break
            wire: list[dict[str, Any]] = []
            local_only: list[str] = []
            unsendable: list[tuple[str, str]] = []
            for event in batch:
                try:
                    item = self.wire_event(event)
                except (KeyError, ValueError, TypeError) as exc:
                    # A seal this node cannot open (its secret was replaced) or a damaged
                    # payload: it would fail the same way on every pass and hold up the rest.
                    unsendable.append((event.event_id, f"unsendable: {exc}"))
                    continue
                if item is None:
                    local_only.append(event.event_id)
                else:
                    wire.append(item)
            results = self._client.post_events(wire).results if wire else []
            now = self._clock()
            done = list(local_only)
            refused = list(unsendable)
            for result in results:
                if result.status in ("applied", "duplicate"):
                    done.append(str(result.id))
                else:
                    refused.append((str(result.id), f"{result.error}: {result.detail}"))
            with transaction(self._engine) as conn:
                for event_id, reason in refused:
                    logger.error("event %s not applied by central: %s", event_id, reason)
                    # Marked sent too: the same event would be refused again, and holding it
                    # back would only hold up the ones behind it. The audit log keeps why.
                    repo.append_audit(
                        conn,
                        at=now,
                        actor=ACTOR,
                        action="event_rejected",
                        reason=reason[:200],
                        command_id=event_id,
                    )
                    done.append(event_id)
                repo.mark_events_sent(conn, done, now)
            delivered += len(results)
            if len(batch) < self.config.batch_size:
                break
        return delivered

    # Feed -------------------------------------------------------------------------------------

    def read_cursor(self) -> str | None:
        try:
            return self._cursor_path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def pull_feed(self) -> int:
        """Apply feed pages until caught up; how many commands were handled."""
        handled = 0
        codes = self._last_codes is None or (
            time.monotonic() - self._last_codes >= self.config.courier_codes_s
        )
        for _ in range(MAX_FEED_PAGES):
            page = self._client.feed(self.read_cursor(), courier_codes=codes)
            if codes:
                self._last_codes = time.monotonic()
                codes = False
            self._apply_page(page)
            # Saved only once the page is in the store: a crash in between reads it again,
            # which applying a reservation twice tolerates.
            write_atomically(self._cursor_path, page.cursor + "\n")
            for command in page.commands:
                self.handle_command(command)
                handled += 1
            if not page.more or self._stopping.is_set():
                break
        return handled

    def _apply_page(self, page: FeedResponse) -> None:
        now = self._clock()
        with transaction(self._engine) as conn:
            for reservation in page.reservations:
                try:
                    if reservation.status == "reserved":
                        inbound.apply_reservation(
                            conn,
                            inbound.ReservationIn(
                                id=reservation.id,
                                carrier_id=reservation.carrier,
                                tracking_number=reservation.tracking_number,
                                size=reservation.size,
                                reserved_until=reservation.reserved_until,
                            ),
                            now,
                        )
                    elif reservation.status == "cancelled":
                        inbound.cancel_reservation(conn, reservation.id, now)
                    # Later states (deposited, picked up, ...) were reached on this node.
                except inbound.InboundError as exc:
                    logger.error("reservation %s from central refused: %s", reservation.id, exc)
            for code in page.courier_codes:
                try:
                    inbound.add_courier_credential(
                        conn,
                        inbound.CourierCredentialIn.from_wire(
                            carrier=code.carrier,
                            code_hash=code.code_hash,
                            salt=code.salt,
                            n=code.n,
                            r=code.r,
                            p=code.p,
                            valid_from=code.valid_from,
                            valid_until=code.valid_until,
                        ),
                        now,
                    )
                except inbound.InboundError as exc:
                    logger.error("courier code for %s refused: %s", code.carrier, exc)

    # Commands ---------------------------------------------------------------------------------

    def handle_command(self, command: Command) -> CommandAck:
        """Verify, execute once, record, acknowledge; a command seen again is only re-acked."""
        with transaction(self._engine) as conn:
            seen = repo.audit_for_command(conn, "remote_command", command.id)
        if seen is not None and seen.detail is not None:
            ack = CommandAck.model_validate_json(seen.detail)
        else:
            ack = self._execute(command)
            with transaction(self._engine) as conn:
                repo.append_audit(
                    conn,
                    at=self._clock(),
                    actor=ACTOR,
                    action="remote_command",
                    reason=command.type,
                    compartment=_label(command),
                    command_id=command.id,
                    detail=ack.model_dump(),
                )
        try:
            self._client.ack(command.id, ack)
        except CentralError as exc:
            # Acked on a later pass: the feed repeats the command until it is.
            logger.warning("ack of command %s not delivered: %s", command.id, exc)
        return ack

    def _execute(self, command: Command) -> CommandAck:
        now = self._clock()
        fields = command.model_dump(exclude={"signature"})
        try:
            verify_command(
                self._identity.central.signing,
                fields,
                command.signature,
                int(now.timestamp()),
                self._identity.node_id,
            )
            if command.bank_id != self._bank_id:
                raise InvalidCommand(f"command {command.id} is for bank {command.bank_id}")
        except InvalidCommand as exc:
            logger.error("refused command %s: %s", command.id, exc)
            return CommandAck(outcome="failed", detail=f"refused: {exc.code}: {exc}")
        try:
            return self._run(command, now)
        except (KeyError, ValueError, TypeError, CompartmentUnavailable, UnknownCompartment) as exc:
            return CommandAck(outcome="failed", detail=f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            # Acked failed rather than left pending: a command that breaks the node once would
            # break it again on every pass.
            logger.exception("command %s failed", command.id)
            return CommandAck(outcome="failed", detail=f"{type(exc).__name__}: {exc}")

    def _run(self, command: Command, now: datetime) -> CommandAck:
        payload = command.payload
        if command.type == "open_compartment":
            label = str(payload["compartment"])
            window = now - timedelta(seconds=self.config.remote_open_window_s)
            with transaction(self._engine) as conn:
                recent = repo.count_audit_since(conn, "remote_open", window)
                if recent >= self.config.remote_open_limit:
                    logger.error("remote open of %s refused: rate limit", label)
                    return CommandAck(
                        outcome="failed",
                        detail=f"rate limited: {recent} remote opens in the last "
                        f"{self.config.remote_open_window_s} s",
                    )
                # Counted before the door fires, so a crash mid-open still uses up one.
                repo.append_audit(
                    conn,
                    at=now,
                    actor=ACTOR,
                    action="remote_open",
                    compartment=label,
                    command_id=command.id,
                )
            outcome = self._doors.open_door(
                label, reason=f"remote open {command.id}", allow_out_of_service=True
            )
            if isinstance(outcome, DoorOpened):
                return CommandAck(outcome="ok")
            return CommandAck(outcome="failed", detail=f"door: {type(outcome).__name__}")
        if command.type == "disable_compartment":
            self._doors.mark_out_of_service(str(payload["compartment"]), "disabled by central")
            return CommandAck(outcome="ok")
        if command.type == "enable_compartment":
            self._doors.return_to_service(str(payload["compartment"]))
            return CommandAck(outcome="ok")
        if command.type == "cancel_reservation":
            with transaction(self._engine) as conn:
                if inbound.cancel_reservation(conn, str(payload["reservation_id"]), now):
                    return CommandAck(outcome="ok")
            return CommandAck(
                outcome="failed", detail="unknown here, or already deposited or finished"
            )
        if command.type in ("extend_deadline", "invalidate_code"):
            reservation_id = str(payload["reservation_id"])
            with transaction(self._engine) as conn:
                if command.type == "extend_deadline":
                    done = inbound.extend_pickup(conn, reservation_id, int(payload["hours"]), now)
                elif payload.get("reissue") is True:
                    reissued = inbound.reissue_pickup_code(
                        conn,
                        reservation_id,
                        now,
                        keys=self._keys,
                        code_digits=self._code_digits,
                        bank_id=self._bank_id,
                        command_id=command.id,
                    )
                    done = reissued is not None
                else:
                    done = inbound.invalidate_pickup_code(conn, reservation_id, now)
                if done:
                    repo.append_audit(
                        conn,
                        at=now,
                        actor=ACTOR,
                        action=command.type,
                        command_id=command.id,
                        detail=payload,
                    )
                    return CommandAck(outcome="ok")
            return CommandAck(
                outcome="failed", detail="no parcel of that reservation is in a compartment"
            )
        return CommandAck(
            outcome="failed", detail=f"{command.type} is not supported by this node version"
        )

    # Heartbeat --------------------------------------------------------------------------------

    def send_heartbeat(self) -> None:
        doors: dict[str, str] = {}
        boards: dict[str, str] = {}
        for status in self._doors.statuses():
            doors[status.label] = status.door.value if status.door is not None else "unknown"
            board = self._board_of.get(status.label)
            if board is not None:
                unread = status.door is None
                boards[board] = "error" if unread or boards.get(board) == "error" else "ok"
        with transaction(self._engine) as conn:
            depth = repo.outbox_depth(conn)
        self._client.heartbeat(
            Heartbeat.model_validate(
                {"doors": doors, "boards": boards, "outbox_depth": depth, "version": self._version}
            )
        )

    # Loop -------------------------------------------------------------------------------------

    def run_once(self, *, heartbeat: bool = False) -> bool:
        """One pass; False when central could not be reached (everything stays queued)."""
        try:
            if heartbeat:
                self.send_heartbeat()
            self.deliver_outbox()
            self.pull_feed()
        except CentralUnavailable as exc:
            if not self._unavailable:
                logger.warning("central unavailable, the node carries on: %s", exc)
            self._unavailable = True
            return False
        if self._unavailable:
            logger.info("central reachable again")
        self._unavailable = False
        return True

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run_loop, name="sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            thread.join(60)
        self._client.close()

    def _run_loop(self) -> None:
        while not self._stopping.is_set():
            due = self._last_heartbeat is None or (
                time.monotonic() - self._last_heartbeat >= self.config.heartbeat_s
            )
            try:
                if self.run_once(heartbeat=due) and due:
                    self._last_heartbeat = time.monotonic()
            except Exception:
                # A bad pass is tried again next tick; the kiosk must not depend on sync.
                logger.exception("sync pass failed")
            self._stopping.wait(self.config.interval_s)


def _label(command: Command) -> str | None:
    label = command.payload.get("compartment")
    return str(label)[:16] if isinstance(label, str) else None
