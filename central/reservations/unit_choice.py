"""PostgreSQL: one reservation whose unit is chosen under the lock (an accessible unit, or any
unit of the class), made in one statement like the batch's (`repository._RESERVE_MANY`)."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Connection

from central.reservations.json_parameter import json_parameter

Outcome = Literal["created", "twin", "full", "unsealed"]

# The fields of the request in `_RESERVE_ONE`'s JSON parameter (the reservation's, then the
# created event's `data`, its notice's id and sealed body).
_FIELDS = (
    "id",
    "carrier_id",
    "tracking_number",
    "bank_id",
    "size",
    "length_mm",
    "width_mm",
    "height_mm",
    "weight_g",
    "recipient",
    "reserved_until",
    "created_at",
    "kind",
    "group_id",
    "accessible",
)


def reserve_one(
    connection: Connection,
    reservation: dict[str, Any],
    event_data: dict[str, Any] | None,
    notice: tuple[str, str] | None,
    event_type: str,
) -> Outcome:
    """Take a unit of the reservation's class and insert it, its `created` event and its
    notice's deliveries, or nothing: what `repository.reserve_unit` does, for a reservation
    whose unit is chosen by its free counts (see `_RESERVE_ONE`).

    The batch runs in autocommit on PostgreSQL, so the steps of SQLite's path (take the unit,
    insert, give the unit back for a twin) would each commit on their own: here they are one
    statement, atomic without a transaction around it.
    """
    row = {name: reservation.get(name) for name in _FIELDS}
    row["accessible"] = bool(row["accessible"])
    row["kind"] = row["kind"] or "delivery"
    row["data"] = event_data
    row["event_id"], row["sealed"] = notice if notice is not None else (None, None)
    parameters = {
        "request": json_parameter(row),
        "event_type": event_type,
    }
    result = connection.exec_driver_sql(_RESERVE_ONE, parameters).one()
    if result.unsealed:
        return "unsealed"
    if not result.granted:
        return "full"
    return "created" if result.created else "twin"


# - `notify`: the carrier's live endpoints that want the event; a request without a sealed
#   notice while there are some writes nothing ("unsealed": the caller seals one, tries again).
# - `locked` locks the class's capacity row if a unit the request may take is free, and says
#   which it takes: an accessible request only an accessible unit (both counts above zero);
#   any other a unit that is not accessible while `available` exceeds the free accessible units,
#   else an accessible one. Re-read under the lock, so a concurrent taker is waited for.
# - `created` inserts the reservation unless the carrier has an active one for the tracking
#   number (the partial unique index); only then does `taken` take the unit, so a twin keeps
#   none. `logged` inserts its first history event, `queued` its deliveries.
_RESERVE_ONE = """
WITH input AS (
    SELECT * FROM json_to_record(%(request)s::json) AS r(
        id varchar, carrier_id varchar, tracking_number varchar, bank_id varchar, size varchar,
        length_mm int, width_mm int, height_mm int, weight_g int, recipient json,
        reserved_until timestamptz, created_at timestamptz, kind varchar, group_id varchar,
        accessible boolean, data json, event_id varchar, sealed text
    )
),
notify AS MATERIALIZED (
    SELECT e.id FROM webhook_endpoints e JOIN input i ON e.carrier_id = i.carrier_id
    WHERE e.deleted_at IS NULL
      AND EXISTS (
        SELECT 1 FROM json_array_elements_text(e.event_types) t WHERE t.value = %(event_type)s
      )
),
req AS MATERIALIZED (
    SELECT * FROM input i WHERE i.sealed IS NOT NULL OR NOT EXISTS (SELECT 1 FROM notify)
),
locked AS MATERIALIZED (
    SELECT c.bank_id, c.size,
        (r.accessible OR c.available <= c.accessible_available) AS accessible_unit
    FROM bank_capacity c JOIN req r ON c.bank_id = r.bank_id AND c.size = r.size
    WHERE c.available > 0
      AND ((NOT r.accessible AND c.available > c.accessible_available)
           OR c.accessible_available > 0)
    FOR UPDATE OF c
),
created AS (
    INSERT INTO reservations (
        id, carrier_id, tracking_number, bank_id, size, status, compartment_label, length_mm,
        width_mm, height_mm, weight_g, recipient, reserved_until, pickup_deadline, deposited_at,
        closed_at, created_at, updated_at, tracking_status, tracking_checked_at, kind, group_id,
        accessible, accessible_unit
    )
    SELECT r.id, r.carrier_id, r.tracking_number, r.bank_id, r.size, 'reserved', NULL,
           r.length_mm, r.width_mm, r.height_mm, r.weight_g, r.recipient, r.reserved_until,
           NULL, NULL, NULL, r.created_at, r.created_at, NULL, NULL, r.kind, r.group_id,
           r.accessible, l.accessible_unit
    FROM req r JOIN locked l ON l.bank_id = r.bank_id AND l.size = r.size
    ON CONFLICT (carrier_id, tracking_number) WHERE status IN ('reserved', 'deposited')
    DO NOTHING
    RETURNING id
),
taken AS (
    UPDATE bank_capacity c SET
        available = c.available - 1,
        accessible_available = c.accessible_available
            - CASE WHEN l.accessible_unit THEN 1 ELSE 0 END
    FROM locked l
    WHERE c.bank_id = l.bank_id AND c.size = l.size AND EXISTS (SELECT 1 FROM created)
    RETURNING c.bank_id
),
logged AS (
    INSERT INTO reservation_events (
        reservation_id, type, from_status, to_status, actor, actor_id, reason, data, at
    )
    SELECT r.id, 'created', NULL, 'reserved', 'carrier', r.carrier_id, NULL, r.data,
           r.created_at
    FROM req r JOIN created c ON c.id = r.id
    RETURNING id
),
queued AS (
    INSERT INTO webhook_deliveries (
        event_id, event_type, endpoint_id, body_sealed, status, attempts, next_attempt_at,
        created_at
    )
    SELECT r.event_id, %(event_type)s, n.id, r.sealed, 'pending', 0, r.created_at, r.created_at
    FROM req r JOIN created c ON c.id = r.id CROSS JOIN notify n
    WHERE r.sealed IS NOT NULL
    ORDER BY n.id
    RETURNING id
)
SELECT (i.sealed IS NULL AND EXISTS (SELECT 1 FROM notify)) AS unsealed,
    EXISTS (SELECT 1 FROM locked) AS granted,
    EXISTS (SELECT 1 FROM created) AS created
FROM input i
"""
