"""Carrier webhook endpoints and the durable outbox every event goes through."""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from central.errors import NotFound, Unprocessable
from central.keys import ServiceKeys
from central.models import WebhookEndpoint
from central.webhooks import repository
from central.webhooks.schemas import EVENT_TYPES, DeliveryOut, WebhookCreate, WebhookOut

MAX_ENDPOINTS_PER_CARRIER = 10


def _check_url(url: str, *, allow_insecure: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise Unprocessable("invalid_url", "the webhook URL must be an absolute https:// URL")
    if parts.scheme == "http" and not allow_insecure:
        raise Unprocessable("insecure_url", "webhook URLs must use https")
    if parts.username or parts.password:
        raise Unprocessable("invalid_url", "put credentials in the signing secret, not the URL")
    if not allow_insecure:
        try:
            address = ipaddress.ip_address(parts.hostname)
        except ValueError:
            return
        if address.is_private or address.is_loopback or address.is_link_local:
            raise Unprocessable("invalid_url", "webhook URLs must reach a public address")


def register(
    session: Session,
    keys: ServiceKeys,
    carrier_id: str,
    body: WebhookCreate,
    now: datetime,
    *,
    allow_insecure: bool,
) -> WebhookOut:
    _check_url(body.url, allow_insecure=allow_insecure)
    if len(repository.active_endpoints(session, carrier_id)) >= MAX_ENDPOINTS_PER_CARRIER:
        raise Unprocessable(
            "too_many_webhooks", f"at most {MAX_ENDPOINTS_PER_CARRIER} endpoints per carrier"
        )
    secret = body.secret or secrets.token_urlsafe(32)
    events = sorted(set(body.events)) if body.events else list(EVENT_TYPES)
    endpoint = WebhookEndpoint(
        id=f"wh_{secrets.token_hex(8)}",
        carrier_id=carrier_id,
        url=body.url,
        secret_encrypted=keys.encrypt(secret),
        event_types=events,
        created_at=now,
    )
    repository.add(session, endpoint)
    session.flush()
    out = describe(endpoint)
    if body.secret is None:
        out.secret = secret
    return out


def describe(endpoint: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(
        id=endpoint.id,
        url=endpoint.url,
        events=endpoint.event_types,
        created_at=endpoint.created_at,
    )


def list_endpoints(session: Session, carrier_id: str) -> list[WebhookOut]:
    return [describe(e) for e in repository.active_endpoints(session, carrier_id)]


def require_endpoint(session: Session, carrier_id: str, endpoint_id: str) -> WebhookEndpoint:
    endpoint = repository.get_endpoint(session, carrier_id, endpoint_id)
    if endpoint is None:
        raise NotFound(f"webhook {endpoint_id}")
    return endpoint


def delete(session: Session, carrier_id: str, endpoint_id: str, now: datetime) -> None:
    require_endpoint(session, carrier_id, endpoint_id)
    repository.delete_endpoint(session, endpoint_id, now)


def recent_deliveries(session: Session, carrier_id: str, endpoint_id: str) -> list[DeliveryOut]:
    require_endpoint(session, carrier_id, endpoint_id)
    return [
        DeliveryOut(
            event_id=d.event_id,
            event_type=d.event_type,
            status=d.status,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
            delivered_at=d.delivered_at,
            last_error=d.last_error,
        )
        for d in repository.deliveries_of(session, endpoint_id)
    ]


class Subscriptions:
    """Carriers' endpoint subscriptions, read once for a transaction that enqueues many events.

    Only for a transaction that registers and deletes no endpoint itself; one that commits
    after another transaction changed the endpoints is ordered before that change, as it would
    be had it read them itself.
    """

    def __init__(self) -> None:
        self._by_carrier: dict[str, list[tuple[str, list[str]]]] = {}

    def know(self, by_carrier: Mapping[str, list[tuple[str, list[str]]]]) -> None:
        """The carriers' subscriptions, read by the caller; or, for a caller whose writes check
        them again (the reservation statement), as last seen."""
        self._by_carrier.update(by_carrier)

    def known(self) -> dict[str, list[tuple[str, list[str]]]]:
        return dict(self._by_carrier)

    def endpoint_ids(self, session: Session, carrier_id: str, event_type: str) -> list[str]:
        rows = self._by_carrier.get(carrier_id)
        if rows is None:
            rows = self._by_carrier[carrier_id] = repository.subscriptions(session, carrier_id)
        return [id_ for id_, types in rows if event_type in types]


def seal_event(
    keys: ServiceKeys, event_type: str, data: dict[str, Any], now: datetime
) -> tuple[str, str]:
    """A new event's id and its body, encrypted as the outbox keeps it."""
    event_id = f"evt_{secrets.token_hex(12)}"
    body = _BODY.encode(
        {"id": event_id, "type": event_type, "created_at": now.isoformat(), "data": data}
    )
    return event_id, keys.encrypt(body)


# `json.dumps` with these options builds an encoder on every call; a batch seals hundreds.
_BODY = json.JSONEncoder(separators=(",", ":"), default=str)


def enqueue_event(
    session: Session,
    keys: ServiceKeys,
    carrier_id: str,
    event_type: str,
    data: Callable[[], dict[str, Any]],
    now: datetime,
    *,
    subscriptions: Subscriptions | None = None,
) -> str | None:
    """Put one event in the outbox for each subscribed endpoint, in the caller's transaction.

    Returns the event id, or None when no endpoint wants it; `data` is only built in the first
    case. The body is serialised once here, so every retry sends the same bytes with the same `id`
    and receivers can dedupe.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"no webhook event type {event_type!r}")
    endpoint_ids = (
        subscriptions.endpoint_ids(session, carrier_id, event_type)
        if subscriptions is not None
        else repository.subscribed_endpoint_ids(session, carrier_id, event_type)
    )
    if not endpoint_ids:
        return None
    event_id, sealed = seal_event(keys, event_type, data(), now)
    repository.add_deliveries(session, event_id, event_type, endpoint_ids, sealed, now)
    return event_id


def delivery_rows(
    keys: ServiceKeys,
    event_type: str,
    endpoint_ids: Sequence[str],
    data: Callable[[], dict[str, Any]],
    now: datetime,
) -> list[dict[str, Any]]:
    """One event for each of these endpoints, as `webhook_deliveries` rows for a caller that
    inserts many events' rows together (`repository.insert_deliveries`); none when no endpoint
    wants it, and then `data` is not built. Sealed once, as `enqueue_event` does."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"no webhook event type {event_type!r}")
    if not endpoint_ids:
        return []
    event_id, sealed = seal_event(keys, event_type, data(), now)
    return repository.delivery_rows(event_id, event_type, endpoint_ids, sealed, now)
