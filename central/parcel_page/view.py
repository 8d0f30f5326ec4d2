"""What the parcel page shows and does: the rules of the recipient's actions (pure), the actions
themselves (each in the request's transaction), the facts the page is made of, and the page's
content in the visitor's language (pure)."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from central.banks import repository as banks_repository
from central.carriers import repository as carriers_repository
from central.context import Ctx
from central.errors import Conflict
from central.models import Actor, Bank, Reservation, ReservationEvent, ReservationStatus
from central.nodes.commands import COMMAND_TTL_LIMITS, extension_payload, issue_command
from central.nodes.errors import NodeError
from central.notices import outbox
from central.notices.hours import Language, describe_hours, format_deadline, map_url
from central.notices.pickup import open_pickup
from central.notices.service import resend_code
from central.ops import repository as ops_repository
from central.ops.alerts import raise_alert
from central.parcel_page.words import CONFIRMATIONS, WORDS, Words
from central.reservations import repository as reservations_repository
from central.reservations.transitions import extend

# The recipient may push the pickup deadline once, by a day at most (less if the bank's
# `max_extension_hours` leaves less room).
RECIPIENT_EXTENSION_HOURS = 24
PROBLEM_HISTORY_TYPE = "problem_reported"
PROBLEM_ALERT_TYPE = "recipient_problem"
PROBLEM_INTERVAL = timedelta(hours=1)
MAX_PROBLEM_MESSAGE = 500
MAX_EARLIER_REPORTS = 5
# The reasons offered, by the state the parcel is in: at the locker, and after a pickup that
# was perhaps not the recipient's own (the "collected" notice points here for that).
PROBLEM_REASONS: dict[str, tuple[str, ...]] = {
    ReservationStatus.DEPOSITED: (
        "door_did_not_open",
        "code_does_not_work",
        "parcel_damaged",
        "parcel_missing",
        "other",
    ),
    ReservationStatus.PICKED_UP: ("not_me", "parcel_damaged", "parcel_missing", "other"),
}
_CODE_GROUP = 5
# What an operator's `extend_deadline` command lives for (`issue_command`'s default).
NODE_COMMAND_TTL = timedelta(minutes=15)


# Rules of the recipient's actions -----------------------------------------------------------------


def extension_used(history: Sequence[ReservationEvent]) -> bool:
    """Whether the recipient has moved the deadline already (operators' extensions don't count)."""
    return any(e.type == "extended" and e.actor == Actor.RECIPIENT for e in history)


def extension_hours(reservation: Reservation, bank: Bank, now: datetime) -> int:
    """Whole hours the recipient may add to the pickup deadline now; 0 when none.

    Nothing while the parcel is not waiting or once its deadline has passed (it is on its way
    back); at most `RECIPIENT_EXTENSION_HOURS`, and no further than the bank's policy lets the
    deadline go (`max_extension_hours` past the original one, as `transitions.extend` counts).
    """
    deadline, deposited = reservation.pickup_deadline, reservation.deposited_at
    if reservation.status != ReservationStatus.DEPOSITED or deadline is None or deposited is None:
        return 0
    if deadline <= now or extension_used(reservation.history):
        return 0
    ceiling = deposited + timedelta(hours=bank.pickup_hours + bank.max_extension_hours)
    room = math.floor((ceiling - deadline).total_seconds() / 3600)
    return max(0, min(RECIPIENT_EXTENSION_HOURS, room))


def problem_wait(history: Sequence[ReservationEvent], now: datetime) -> int | None:
    """Seconds until the recipient may report another problem, or None when they may now."""
    latest = max((e.at for e in history if e.type == PROBLEM_HISTORY_TYPE), default=None)
    if latest is None or latest + PROBLEM_INTERVAL <= now:
        return None
    return max(1, math.ceil((latest + PROBLEM_INTERVAL - now).total_seconds()))


def clean_message(text: str) -> str:
    """A visitor's free text as an operator reads it: one kind of line break, no control
    characters, no blank ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = (c for c in text if c in "\n\t" or not unicodedata.category(c).startswith("C"))
    return "".join(kept).strip()


def redact_code(text: str, code: str | None) -> str:
    """`text` without the pickup code in it: recipients type it in spite of the hint."""
    if not code:
        return text
    for shown in (code, group_code(code)):
        text = text.replace(shown, "[code removed]")
    return text


def problem_detail(
    reservation: Reservation,
    reason: str,
    message: str,
    now: datetime,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What an operator needs to act on a report; never the code nor the recipient's contact.

    `previous`: the detail of the parcel's alert still open, whose report would otherwise be
    replaced by this one (`raise_alert` refreshes an open alert); its reports are kept under
    `earlier_reports`, the latest `MAX_EARLIER_REPORTS`.
    """
    detail: dict[str, Any] = {
        "reason": reason,
        "message": message or None,
        "reported_at": now.isoformat(),
        "reservation_id": reservation.id,
        "tracking_number": reservation.tracking_number,
        "compartment": reservation.compartment_label,
    }
    if previous:
        earlier = list(previous.get("earlier_reports") or [])
        earlier.append({key: previous.get(key) for key in ("reason", "message", "reported_at")})
        detail["earlier_reports"] = earlier[-MAX_EARLIER_REPORTS:]
    return detail


def group_code(code: str) -> str:
    """The code in groups of at most five, as even as can be: "12345 67890", "123 456"."""
    if len(code) <= _CODE_GROUP:
        return code
    groups = math.ceil(len(code) / _CODE_GROUP)
    size, longer = divmod(len(code), groups)
    parts: list[str] = []
    start = 0
    for index in range(groups):
        end = start + size + (1 if index < longer else 0)
        parts.append(code[start:end])
        start = end
    return " ".join(parts)


# The recipient's actions, each in the request's transaction ---------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an action went: a message key of `words.Words.messages`, and for a refusal that
    passes with time, the seconds until it does."""

    message: str
    retry_after_s: int | None = None


def resend(ctx: Ctx, reservation: Reservation) -> Outcome:
    """The "ready" notice again; `resend_code`'s refusals (`ApiError`) go to the caller."""
    resend_code(ctx, reservation)
    return Outcome("resent")


def extend_once(ctx: Ctx, reservation: Reservation) -> Outcome:
    """Push the pickup deadline by `extension_hours`, once, in central and on the bank's node.

    The node keeps a deadline of its own for a parcel in a compartment (the feed does not move
    it), so it gets the `extend_deadline` command an operator's extension sends too, alive until
    the old deadline at least: a node offline until then still hears of it.
    """
    if reservation.status != ReservationStatus.DEPOSITED:
        return Outcome("not_ready")
    if extension_used(reservation.history):
        return Outcome("extension_used")
    bank = banks_repository.get_referenced_bank(ctx.session, reservation.bank_id)
    hours = extension_hours(reservation, bank, ctx.now)
    deadline = reservation.pickup_deadline
    if hours == 0 or deadline is None:
        return Outcome("extension_unavailable")
    extend(
        ctx,
        reservation,
        hours,
        actor=Actor.RECIPIENT,
        actor_id=None,
        reason="extended by the recipient on the parcel page",
    )
    low, high = COMMAND_TTL_LIMITS
    lifetime = min(high, max(low, NODE_COMMAND_TTL, deadline - ctx.now))
    try:
        issue_command(
            ctx.session,
            ctx.keys,
            reservation.bank_id,
            "extend_deadline",
            extension_payload(reservation.id, hours, reservation.pickup_deadline),
            ctx.now,
            ttl=lifetime,
        )
    except NodeError as exc:  # no enrolled node: the node would expire the parcel regardless
        raise Conflict("no_node", str(exc)) from exc
    return Outcome("extended")


def report_problem(ctx: Ctx, reservation: Reservation, reason: str, message: str) -> Outcome:
    """Tell the operators (an alert) and record it in the parcel's history; once an hour.

    `message` is cleaned and at most `MAX_PROBLEM_MESSAGE` long (the caller checks).
    """
    reasons = PROBLEM_REASONS.get(reservation.status, ())
    if not reasons:
        return Outcome("problem_unavailable")
    if reason not in reasons:
        return Outcome("problem_reason")
    wait = problem_wait(reservation.history, ctx.now)
    if wait is not None:
        return Outcome("problem_limit", wait)
    secret = open_pickup(ctx.keys, reservation.pickup_secret_sealed)
    text = redact_code(message, secret.code if secret is not None else None)
    bank_id, subject = reservation.bank_id, reservation.id
    still_open = ops_repository.open_alert(ctx.session, bank_id, PROBLEM_ALERT_TYPE, subject)
    previous = still_open.detail if still_open is not None else None
    raise_alert(
        ctx.session,
        bank_id=bank_id,
        alert_type=PROBLEM_ALERT_TYPE,
        subject=subject,
        detail=problem_detail(reservation, reason, text, ctx.now, previous),
        now=ctx.now,
    )
    entry = ReservationEvent.note(
        reservation,
        PROBLEM_HISTORY_TYPE,
        actor=Actor.RECIPIENT.value,
        reason=f"reported on the parcel page: {reason}",
        data={"reason": reason},
        at=ctx.now,
    )
    reservations_repository.add(ctx.session, entry)
    ctx.session.flush()
    return Outcome("reported")


# The facts, read in one transaction ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParcelFacts:
    """Everything the page is made of, as plain values (no ORM rows leave the transaction)."""

    status: str
    carrier_name: str
    tracking_number: str
    bank_name: str
    bank_address: str
    bank_lat: float
    bank_lon: float
    bank_timezone: str
    opening_hours: dict[str, Any] | None
    pickup_deadline: datetime | None
    closed_at: datetime | None
    recipient_language: str | None
    code: str | None  # only while the parcel waits in the locker
    can_resend: bool
    extension_hours: int
    extension_used: bool
    problem_reasons: tuple[str, ...]


def read_facts(ctx: Ctx, reservation_id: str) -> ParcelFacts | None:
    """The parcel's facts for its page, or None when there is no such reservation."""
    reservation = reservations_repository.get(ctx.session, reservation_id)
    if reservation is None:
        return None
    bank = banks_repository.get_referenced_bank(ctx.session, reservation.bank_id)
    carrier = carriers_repository.get_carrier(ctx.session, reservation.carrier_id)
    waiting = reservation.status == ReservationStatus.DEPOSITED
    secret = open_pickup(ctx.keys, reservation.pickup_secret_sealed) if waiting else None
    recipient = reservation.recipient or {}
    return ParcelFacts(
        status=reservation.status,
        carrier_name=carrier.name if carrier is not None else reservation.carrier_id,
        tracking_number=reservation.tracking_number,
        bank_name=bank.name,
        bank_address=bank.address,
        bank_lat=bank.lat,
        bank_lon=bank.lon,
        bank_timezone=bank.timezone,
        opening_hours=bank.opening_hours,
        pickup_deadline=reservation.pickup_deadline,
        closed_at=reservation.closed_at,
        recipient_language=recipient.get("language"),
        code=secret.code if secret is not None else None,
        can_resend=waiting and can_resend(ctx, reservation),
        extension_hours=extension_hours(reservation, bank, ctx.now),
        extension_used=waiting and extension_used(reservation.history),
        problem_reasons=PROBLEM_REASONS.get(reservation.status, ()),
    )


def can_resend(ctx: Ctx, reservation: Reservation) -> bool:
    """Whether there is anyone to send the code to (`resend_code` refuses otherwise)."""
    return bool(outbox.contacts(reservation.recipient)) and outbox.network_notifies(
        ctx, reservation.carrier_id
    )


# The page, in the visitor's language --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    value: str


@dataclass(frozen=True, slots=True)
class Location:
    name: str
    address: str
    hours: tuple[str, ...]
    map_url: str


@dataclass(frozen=True, slots=True)
class Code:
    grouped: str
    raw: str


@dataclass(frozen=True, slots=True)
class Message:
    key: str
    text: str
    is_error: bool


@dataclass(frozen=True, slots=True)
class Actions:
    waiting: bool  # resending and extending are for a parcel in the locker
    can_resend: bool
    resend_unavailable: str
    extension_hint: str | None  # None: no extension offered
    extension_used: bool
    problem_reasons: tuple[tuple[str, str], ...]  # (value, label)


@dataclass(frozen=True, slots=True)
class PageView:
    language: Language
    state: str
    state_title: str
    state_text: str
    code: Code | None
    code_missing: bool
    deadline: str | None
    deadline_after: str
    details: tuple[Row, ...]
    location: Location | None
    actions: Actions | None
    message: Message | None


def build_view(facts: ParcelFacts, language: Language, message_key: str | None) -> PageView:
    """The page for `facts` in `language`, with the outcome of an action when there was one."""
    words = WORDS[language]
    fields = {"carrier": facts.carrier_name, "bank": facts.bank_name}
    state = words.states.get(facts.status, words.states["cancelled"])
    waiting = facts.status == ReservationStatus.DEPOSITED
    deadline = None
    if waiting and facts.pickup_deadline is not None:
        deadline = format_deadline(facts.pickup_deadline, facts.bank_timezone, language)
    return PageView(
        language=language,
        state=facts.status,
        state_title=state.title,
        state_text=state.text.format_map(fields),
        code=Code(group_code(facts.code), facts.code) if waiting and facts.code else None,
        code_missing=waiting and not facts.code,
        deadline=deadline,
        deadline_after=words.deadline_after.format_map(fields),
        details=_details(facts, words, language),
        location=_location(facts, language),
        actions=_actions(facts, words),
        message=_message(message_key, words, fields),
    )


def _details(facts: ParcelFacts, words: Words, language: Language) -> tuple[Row, ...]:
    rows = [
        Row(words.carrier_label, facts.carrier_name),
        Row(words.tracking_label, facts.tracking_number),
    ]
    if facts.status == ReservationStatus.PICKED_UP and facts.closed_at is not None:
        when = format_deadline(facts.closed_at, facts.bank_timezone, language)
        rows.append(Row(words.collected_label, when))
    return tuple(rows)


def _location(facts: ParcelFacts, language: Language) -> Location | None:
    """Where to go, while there is somewhere to go for the parcel."""
    if facts.status not in (ReservationStatus.RESERVED, ReservationStatus.DEPOSITED):
        return None
    return Location(
        name=facts.bank_name,
        address=facts.bank_address,
        hours=tuple(describe_hours(facts.opening_hours, language)),
        map_url=map_url(facts.bank_lat, facts.bank_lon),
    )


def _actions(facts: ParcelFacts, words: Words) -> Actions | None:
    waiting = facts.status == ReservationStatus.DEPOSITED
    if not waiting and not facts.problem_reasons:
        return None
    hint = None
    if facts.extension_hours > 0:
        hint = words.extend_hint.format(hours=facts.extension_hours)
    return Actions(
        waiting=waiting,
        can_resend=facts.can_resend,
        resend_unavailable=words.resend_unavailable.format(carrier=facts.carrier_name),
        extension_hint=hint,
        extension_used=facts.extension_used,
        problem_reasons=tuple((key, words.reasons[key]) for key in facts.problem_reasons),
    )


def _message(key: str | None, words: Words, fields: dict[str, str]) -> Message | None:
    text = words.messages.get(key) if key else None
    if key is None or text is None:
        return None  # an unknown key in the query string shows nothing
    return Message(key, text.format_map(fields), key not in CONFIRMATIONS)
