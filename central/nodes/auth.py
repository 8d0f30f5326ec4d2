"""Node requests are signed: who signed one, checked against its enrolled key and a fresh nonce."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from central.errors import ApiError
from central.models import Node
from central.nodes import repository as repo
from locker_wire import signing

NONCE_RETENTION = timedelta(minutes=10)


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
    claimed = read_claim(headers)
    node = claimed_node(session, claimed.node_id)
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


def read_claim(headers: Mapping[str, str]) -> signing.SignedHeaders:
    """Which node claims to have signed the request, or a 401 when its signature headers are
    missing or malformed; reads no body and makes no query, so it can come first."""
    try:
        return signing.read_headers(headers)
    except signing.MissingSignature as exc:
        raise _unauthorized("missing_signature", str(exc)) from exc
    except signing.WireError as exc:
        raise _unauthorized("invalid_signature", str(exc)) from exc


def claimed_node(session: Session, node_id: str) -> Node:
    """The enrolled node of this id, or a 401 `unknown_node` (revoked nodes are unknown)."""
    node = repo.get_node(session, node_id)
    if node is None or node.revoked_at is not None:
        raise _unauthorized("unknown_node", "no enrolled node has this id")
    return node


def purge_nonces(session: Session, now: datetime) -> int:
    return repo.purge_nonces(session, now - NONCE_RETENTION)
