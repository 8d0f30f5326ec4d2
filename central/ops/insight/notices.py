"""Recipient notices as operators see them: per parcel (counts, details) and the network's failures.

A notice's status is `sent`, `failed` (given up, or refused for good), `pending` (waiting for
its first or next attempt) or `unsent` (its channel is not configured). What was sent, and to
whom, is never read here: only the masked destination the outbox keeps for operators. A
channel's error can quote the address or number it refused (an SMTP server's "550 <john@...>",
Twilio's message), so errors are masked the same way before they leave.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypedDict

from sqlalchemy.orm import Session

from central.errors import NotFound
from central.notices.outbox import mask_email
from central.notices.sms import mask_phone
from central.ops.insight import repository as repo

STATUSES = ("sent", "failed", "pending", "unsent")
FAILED_WINDOW = timedelta(hours=24)

_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# 8 to 15 digits (E.164) with the separators people write; not inside a word or an id, not a
# date. Dots are no separator here, so a server's IP address stays readable.
_PHONE = re.compile(r"(?<![\w.+])(?!\d{4}-\d\d-\d\d)\+?\d(?:[ ()-]{0,2}\d){7,14}(?!\w)")


class NoticeOut(TypedDict):
    id: int
    kind: str
    channel: str
    destination_hint: str
    status: str
    attempts: int
    created_at: str | None
    sent_at: str | None
    # When the next attempt is due; only while the notice is pending.
    next_attempt_at: str | None
    last_error: str | None
    provider_ref: str | None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def mask_contacts(text: str | None) -> str | None:
    """`text` with every email address and phone number in it masked as the outbox masks them."""
    if text is None:
        return None
    text = _EMAIL.sub(lambda m: mask_email(m.group()), text)
    return _PHONE.sub(lambda m: mask_phone(m.group()), text)


def empty_counts() -> dict[str, int]:
    return dict.fromkeys(STATUSES, 0)


def count(notices: Sequence[NoticeOut]) -> dict[str, int]:
    counts = empty_counts()
    for notice in notices:
        counts[notice["status"]] = counts.get(notice["status"], 0) + 1
    return counts


def counts_by_reservation(
    session: Session, reservation_ids: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Notices per status of each reservation (all statuses present, zero when none)."""
    counts: dict[str, dict[str, int]] = {rid: empty_counts() for rid in reservation_ids}
    for rid, status, n in repo.notice_counts(session, reservation_ids):
        counts.setdefault(rid, empty_counts())[status] = int(n)
    return counts


def notices_by_reservation(
    session: Session, reservation_ids: Sequence[str]
) -> dict[str, list[NoticeOut]]:
    found: dict[str, list[NoticeOut]] = defaultdict(list)
    for (
        rid, notice_id, kind, channel, hint, status, attempts,
        created_at, sent_at, next_attempt_at, last_error, provider_ref,
    ) in repo.notices_of(session, reservation_ids):  # fmt: skip
        found[rid].append(
            {
                "id": int(notice_id),
                "kind": kind,
                "channel": channel,
                "destination_hint": hint,
                "status": status,
                "attempts": int(attempts),
                "created_at": _iso(created_at),
                "sent_at": _iso(sent_at),
                "next_attempt_at": _iso(next_attempt_at) if status == "pending" else None,
                "last_error": mask_contacts(last_error) if status != "sent" else None,
                "provider_ref": provider_ref,
            }
        )
    return found


def parcel_notices(session: Session, reservation_id: str) -> dict[str, Any]:
    """One reservation's notices, oldest first, with their counts per status."""
    ref = repo.reservation_ref(session, reservation_id)
    if ref is None:
        raise NotFound(f"reservation {reservation_id}", code="unknown_reservation")
    rid, tracking_number, bank_id, carrier_id = ref
    notices = notices_by_reservation(session, [rid]).get(rid, [])
    return {
        "reservation_id": rid,
        "tracking_number": tracking_number,
        "bank_id": bank_id,
        "carrier": carrier_id,
        "notice_counts": count(notices),
        "notices": notices,
    }


def health(session: Session, now: datetime) -> dict[str, Any]:
    """The overview's signal of a channel in trouble (an SMTP server down, Twilio refusing):
    notices failed in the last 24 hours, and those still waiting after an attempt."""
    since = now - FAILED_WINDOW
    failed, waiting, oldest = repo.notice_health(session, since)
    return {
        "since": since.isoformat(),
        "failed_last_24h": int(failed),
        "waiting": int(waiting),
        "waiting_since": _iso(oldest),
    }
