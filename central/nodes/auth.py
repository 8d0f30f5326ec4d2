"""Node requests are signed: who signed one, checked against its enrolled key and a fresh nonce."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from central.errors import ApiError
from central.models import Node
from central.nodes import repository as repo
from central.nodes import sync_repository as sync_repo
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
    seen_keys: SeenKeys | None = None,
) -> Node:
    """The node that signed this request, or a 401 saying why not; remembers the nonce.

    On PostgreSQL, a node whose key this process has seen is checked against that key first,
    and then its row read and its nonce recorded in one statement that holds only while the key
    is still the node's (`sync_repository.node_and_nonce`); any doubt (no key seen, a signature
    that does not match it, a key changed since) takes the path of two statements.
    """
    claimed = read_claim(headers)
    unix_now = int(now.timestamp())
    seen = None if seen_keys is None else seen_keys.get(claimed.node_id)
    if (
        seen_keys is not None
        and seen is not None
        and session.connection().dialect.name == "postgresql"
    ):
        try:
            _verify(seen, headers, method, path, body, unix_now)
        except ApiError:
            pass  # maybe a new key: checked against the node's row below
        else:
            node, fresh = sync_repo.node_and_nonce(
                session, claimed.node_id, seen, claimed.nonce, now
            )
            if node is None or node.revoked_at is not None:
                seen_keys.forget(claimed.node_id)
                raise _unauthorized("unknown_node", "no enrolled node has this id")
            if node.public_key == seen:
                if not fresh:
                    raise _unauthorized("replayed_nonce", "this request was received before")
                return node
        seen_keys.forget(claimed.node_id)
    node = claimed_node(session, claimed.node_id)
    _verify(node.public_key, headers, method, path, body, unix_now)
    if not repo.record_nonce(session, node.id, claimed.nonce, now):
        raise _unauthorized("replayed_nonce", "this request was received before")
    if seen_keys is not None:
        seen_keys.remember(node.id, node.public_key)
    return node


class SeenKeys:
    """Node id -> the public key its last request was verified with, in this process (one per
    app): public keys only, nothing secret, a hint that saves a round trip and is never trusted
    on its own. The oldest entries go first beyond `limit`."""

    def __init__(self, limit: int = 16_384) -> None:
        self._limit = limit
        self._keys: dict[str, str] = {}

    def get(self, node_id: str) -> str | None:
        return self._keys.get(node_id)

    def forget(self, node_id: str) -> None:
        self._keys.pop(node_id, None)

    def remember(self, node_id: str, public_key: str) -> None:
        self._keys[node_id] = public_key
        while len(self._keys) > self._limit:
            try:
                self._keys.pop(next(iter(self._keys)))  # the oldest entry
            except (StopIteration, KeyError, RuntimeError):
                break  # emptied or changed by another thread meanwhile


def _verify(
    public_key: str,
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    unix_now: int,
) -> None:
    try:
        signing.verify_request(_public_key(public_key), headers, method, path, body, unix_now)
    except signing.ClockSkew as exc:
        raise _unauthorized(
            "clock_skew",
            "the request's timestamp is too far from central's clock",
            server_time=exc.server_time,
        ) from exc
    except (signing.WireError, ValueError) as exc:
        raise _unauthorized("invalid_signature", "the signature does not match") from exc


def remember_nonce(
    session: Session, node_id: str, headers: Mapping[str, str], now: datetime
) -> None:
    """Record an authenticated request's nonce again, after its transaction was rolled back."""
    repo.record_nonce(session, node_id, read_claim(headers).nonce, now)


@functools.lru_cache(maxsize=16_384)
def _public_key(text: str) -> Ed25519PublicKey:
    """A node's key, parsed once per process: keyed by the key's own text, so a node enrolled
    anew (a new key) is never checked against its old one."""
    return signing.load_public_key(text)


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
    """The enrolled node of this id, or a 401 `unknown_node` (revoked nodes are unknown).

    A plain row, read without the ORM's identity map: every signed request reads it, and the
    work only reads it (whoever writes the node row does so with a statement of its own)."""
    node = sync_repo.node_by_id(session, node_id)
    if node is None or node.revoked_at is not None:
        raise _unauthorized("unknown_node", "no enrolled node has this id")
    return node


def purge_nonces(session: Session, now: datetime) -> int:
    return repo.purge_nonces(session, now - NONCE_RETENTION)
