"""The sync loop: outbox to central, feed (reservations, courier codes, commands) to the store."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from locker_node.config import SyncConfig
from locker_node.domain.doors import DoorController
from locker_node.flows.errors import CommandRefused
from locker_node.flows.facade import LockerFlows
from locker_node.health.probes import HealthProbes
from locker_node.store import outbox
from locker_node.store.database import transaction
from locker_node.store.keys import NodeKeys
from locker_node.sync.client import (
    CentralClient,
    CentralError,
    CentralUnavailable,
    CentralUntrusted,
)
from locker_node.sync.identity import NodeIdentity, write_atomically
from locker_node.update.updater import Updater
from locker_wire.schemas import Command, CommandAck, DepositedData, FeedHeld, Heartbeat
from locker_wire.sealing import seal, seal_context
from locker_wire.signing import InvalidCommand, verify_command

logger = logging.getLogger(__name__)

CURSOR_FILE = "sync-cursor"
ACTOR = "central"
MAX_FEED_PAGES = 50
# How long a flow waits for the feed it asked for (`catch_up`): a courier stands at the kiosk.
CATCH_UP_WAIT_S = 5.0


class SyncService:
    """One node's conversation with central; `run_once` is one pass, `start` runs it in a thread.

    Central unreachable is normal: events stay queued and go out, in order, on a later pass.
    """

    def __init__(
        self,
        flows: LockerFlows,
        client: CentralClient,
        identity: NodeIdentity,
        config: SyncConfig,
        *,
        data_dir: Path,
        board_of: Mapping[str, str],
        version: str = "0",
        updater: Updater | None = None,
        health: HealthProbes | None = None,
    ) -> None:
        self._flows = flows
        ports = flows.ports
        self._engine: Engine = ports.engine
        self._keys: NodeKeys = ports.keys
        self._doors: DoorController = ports.doors
        self._clock: Callable[[], datetime] = ports.clock
        self._client = client
        self._identity = identity
        self.config = config
        self._cursor_path = data_dir / CURSOR_FILE
        self._board_of = dict(board_of)
        self._version = version
        # Node updates (`[update]` enabled): reports in each heartbeat, acts on its result.
        self.updater = updater
        self._health = health
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_codes: float | None = None
        # The tag of the last whole answer, by whether it held courier codes: (cursor, tag).
        # Sent back with that cursor, central answers 304 while nothing changed. In memory
        # only: after a restart the first pull is a full one.
        self._tags: dict[bool, tuple[str, str]] = {}
        # Pulls asked for by flows (`catch_up`) and pulls done since, for them to wait on.
        self._pulls = threading.Condition()
        self._pulls_asked = 0
        self._pulls_done = 0
        # What the last failed pass logged (None after a good one): each problem is logged
        # once when it starts, not on every pass while it lasts.
        self._problem: str | None = None

    # Outbox -----------------------------------------------------------------------------------

    def wire_event(self, event: outbox.OutboxEvent) -> dict[str, Any] | None:
        """The event as central's wire has it, or None for an event that stays on the node."""
        data = event.event().wire_data()
        if data is None:
            return None
        if isinstance(data, DepositedData) and data.shares_code_with is not None:
            # It joined a group-mate's code: no code of its own to send, central has that one.
            data = data.model_copy(update={"sealed_pickup_code": "", "sealed_qr_payload": ""})
        elif isinstance(data, DepositedData):
            # Sealed anew on every send: the node's own seal never leaves it, and central's
            # opens only in this event's context.
            sealing = self._identity.central.sealing
            resealed = {}
            for field in ("pickup_code", "qr_payload"):
                clear = self._keys.unseal(getattr(data, f"sealed_{field}"))
                context = seal_context(event.event_id, field)
                resealed[f"sealed_{field}"] = seal(sealing, clear.encode(), context=context)
            data = data.model_copy(update=resealed)
        return {
            "id": event.event_id,
            "type": event.type,
            "occurred_at": event.occurred_at,
            "data": data.model_dump(mode="json"),
        }

    def deliver_outbox(self) -> int:
        """Send queued events in order, a batch at a time; how many central has now taken."""
        delivered = 0
        while not self._stopping.is_set():
            with transaction(self._engine) as conn:
                batch = outbox.outbox_events(conn, limit=self.config.batch_size, unsent_only=True)
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
                    outbox.append_audit(
                        conn,
                        at=now,
                        actor=ACTOR,
                        action="event_rejected",
                        reason=reason[:200],
                        command_id=event_id,
                    )
                    done.append(event_id)
                outbox.mark_events_sent(conn, done, now)
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

    def codes_due(self) -> bool:
        """Whether the next pull asks for the courier codes (every `courier_codes_s`)."""
        return self._last_codes is None or (
            time.monotonic() - self._last_codes >= self.config.courier_codes_s
        )

    def held_feed(self) -> FeedHeld | None:
        """The tagged answer the node holds for its cursor, for its heartbeat: the one with the
        courier codes when it has both (None: it holds none, as with a central that gives no
        tags, which never gets one in a heartbeat either)."""
        cursor = self.read_cursor()
        for codes in (True, False):
            held = self._tags.get(codes)
            if held is not None and held[0] == cursor:
                return FeedHeld(
                    cursor=held[0],
                    tag=held[1],
                    courier_codes=codes,
                    settings_version=self._flows.settings_version(),
                )
        return None

    def pull_feed(self) -> int:
        """Apply feed pages until caught up; how many commands were handled.

        Each pull sends the tag of the answer the node has for its cursor (when it has one):
        a 304 means nothing changed, and costs central next to nothing.
        """
        handled = 0
        codes = self.codes_due()
        for _ in range(MAX_FEED_PAGES):
            cursor = self.read_cursor()
            known = self._tags.get(codes)
            answer = self._client.feed_since(
                cursor,
                known=known[1] if known is not None and known[0] == cursor else None,
                courier_codes=codes,
                settings_version=self._flows.settings_version(),
            )
            if codes:
                self._last_codes = time.monotonic()
            page = answer.page
            if page is None:
                break  # nothing new: the node has it all, courier codes included
            self._flows.apply_feed_page(page)
            # Saved only once the page is in the store: a crash in between reads it again,
            # which applying a reservation twice tolerates.
            write_atomically(self._cursor_path, page.cursor + "\n")
            if answer.tag is None:
                self._tags.pop(codes, None)
            else:
                self._tags[codes] = (page.cursor, answer.tag)
            codes = False
            for command in page.commands:
                self.handle_command(command)
                handled += 1
            if not page.more or self._stopping.is_set():
                break
        return handled

    # Commands ---------------------------------------------------------------------------------

    def handle_command(self, command: Command) -> CommandAck:
        """Run a command once through the node's flows, then acknowledge it to central."""
        ack = self._flows.handle_command(command, verify=self._verify)
        try:
            self._client.ack(command.id, ack)
        except CentralError as exc:
            # Acked on a later pass: the feed repeats the command until it is. That pass must
            # be a full one, not a 304 for the answer that brought it.
            logger.warning("ack of command %s not delivered: %s", command.id, exc)
            self._tags.clear()
        return ack

    def _verify(self, command: Command, now: datetime) -> None:
        """Central's signature, the command's expiry, and this node as its addressee."""
        try:
            verify_command(
                self._identity.central.signing,
                command.signed_fields(),
                command.signature,
                int(now.timestamp()),
                self._identity.node_id,
            )
        except InvalidCommand as exc:
            raise CommandRefused(str(exc), code=exc.code) from exc

    # Heartbeat --------------------------------------------------------------------------------

    def send_heartbeat(self) -> bool:
        """Report the node's state, and the feed answer it holds; whether to pull the feed now:
        central says a pull would bring news, or the node held no answer it could check."""
        doors: dict[str, str] = {}
        boards: dict[str, str] = {}
        for status in self._doors.statuses():
            doors[status.label] = status.door.value if status.door is not None else "unknown"
            board = self._board_of.get(status.label)
            if board is not None:
                unread = status.door is None
                boards[board] = "error" if unread or boards.get(board) == "error" else "ok"
        with transaction(self._engine) as conn:
            depth = outbox.outbox_depth(conn)
        health = None if self._health is None else self._health.read()
        held = self.held_feed()
        result = self._client.heartbeat(
            Heartbeat.model_validate(
                {
                    "doors": doors,
                    "boards": boards,
                    "outbox_depth": depth,
                    "version": self._version,
                    "health": health,
                    "update": None if self.updater is None else self.updater.report(),
                    "feed": held,
                }
            )
        )
        if self.updater is not None:
            self.updater.after_heartbeat(result)
        return result.feed_news or held is None

    # Loop -------------------------------------------------------------------------------------

    def run_once(self, *, heartbeat: bool = False, feed: bool = True) -> bool:
        """One pass: the heartbeat when asked, the outbox, the feed when asked (or when the
        heartbeat says a pull would bring news). False when central could not be reached (everything
        stays queued); a pass that had nothing to ask of central says how the last one went."""
        try:
            news = self.send_heartbeat() if heartbeat else False
            delivered = self.deliver_outbox()
            if feed or news:
                self.pull_feed()
            elif not heartbeat and not delivered:
                return self._problem is None
        except CentralUntrusted as exc:
            if self._problem != str(exc):
                logger.error(
                    "%s; %s. The node carries on and tries again (outbox every %s s, feed "
                    "every %s s)",
                    exc,
                    untrusted_advice(exc),
                    self.config.interval_s,
                    self.config.feed_interval_s,
                )
            self._problem = str(exc)
            return False
        except CentralUnavailable as exc:
            if self._problem != "unavailable":
                logger.warning("central unavailable, the node carries on: %s", exc)
            self._problem = "unavailable"
            return False
        if self._problem is not None:
            logger.info("central reachable again")
        self._problem = None
        return True

    def catch_up(self, timeout_s: float = CATCH_UP_WAIT_S) -> bool:
        """For a flow (`ports.feed`): have the sync thread pull the feed at once, and wait for
        that pull, `timeout_s` at most; whether it was done and central answered."""
        with self._pulls:
            if self._thread is None or not self._thread.is_alive():
                return False
            self._pulls_asked += 1
            wanted = self._pulls_asked
            self._wake.set()
            done = self._pulls.wait_for(lambda: self._pulls_done >= wanted, timeout_s)
        return done and self._problem is None and not self._stopping.is_set()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run_loop, name="sync", daemon=True)
        self._thread.start()
        self._flows.ports.feed = self

    def stop(self) -> None:
        if self._flows.ports.feed is self:
            self._flows.ports.feed = None
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            self._wake.set()
            with self._pulls:  # a flow waiting for a pull waits no longer
                self._pulls_done = self._pulls_asked
                self._pulls.notify_all()
            thread.join(60)
        self._client.close()

    def _run_loop(self) -> None:
        """Passes every `interval_s`, or at once when a flow asks for the feed (`catch_up`);
        what each pass does besides the outbox is `SyncSchedule`'s to say."""
        schedule = SyncSchedule(self.config, time.monotonic())
        while not self._stopping.is_set():
            now = time.monotonic()
            with self._pulls:
                asked = self._pulls_asked
            beat, feed = schedule.due(now)
            feed = feed or asked > self._pulls_done or self.codes_due()
            try:
                self.run_once(heartbeat=beat, feed=feed)
            except Exception:
                # A bad pass is tried again next tick; the kiosk must not depend on sync.
                logger.exception("sync pass failed")
            schedule.tried(now, heartbeat=beat, feed=feed)
            if feed:
                with self._pulls:
                    self._pulls_done = asked
                    self._pulls.notify_all()
            self._wake.wait(self.config.interval_s)
            self._wake.clear()


class SyncSchedule:
    """When the heartbeat and the feed are due (monotonic seconds).

    Both are due at the start. News reaches the node by its heartbeat: the heartbeat sends the
    tag of the feed answer the node holds, and its answer says when a pull would bring news (a
    reservation changed, a command waits) for the node to pull at once. The feed's regular pull
    is a safety net beside it, half an interval after the start and an interval apart after
    that. Each is due again an interval after it was tried, whether or not central answered:
    a fleet coming back after an outage of central keeps its spread instead of retrying all
    at once. (The courier codes are pulled when they are due, `SyncService.codes_due`.)
    """

    def __init__(self, config: SyncConfig, start: float) -> None:
        self._config = config
        self._next_beat = start
        self._next_feed = start
        self._first_feed = True

    def due(self, now: float) -> tuple[bool, bool]:
        """(heartbeat due, feed due) at `now`."""
        return now >= self._next_beat, now >= self._next_feed

    def tried(self, now: float, *, heartbeat: bool, feed: bool) -> None:
        if heartbeat:
            self._next_beat = now + self._config.heartbeat_s
        if feed:
            interval = self._config.feed_interval_s
            self._next_feed = now + (interval / 2 if self._first_feed else interval)
            self._first_feed = False


def untrusted_advice(exc: CentralUntrusted) -> str:
    """What an operator can do about a certificate the node does not trust."""
    if exc.wrong_host:
        return "central_url must name a host that central's certificate is issued for"
    return (
        "set ca_bundle in the node config (top level, beside central_url) to the PEM file "
        "of the CA that issued central's certificate"
    )
