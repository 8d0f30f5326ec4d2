"""Carriers and their API keys: keys are random, shown once, and kept only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from central.carriers import repository
from central.errors import ApiError
from central.models import ApiKey, Carrier

CARRIER_ID = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")
_KEY_FORMAT = re.compile(r"^lk_([a-z2-7]{12})_([A-Za-z0-9_-]{43})$")
# Writing last_used_at on every request would turn every read into a write; a minute is precise
# enough for an operator asking "is this key still in use?".
_TOUCH_INTERVAL = timedelta(minutes=1)


class CarrierError(ValueError):
    """A carrier or key operation that cannot be done (unknown carrier, duplicate id, ...)."""


@dataclass(frozen=True, slots=True)
class IssuedKey:
    carrier_id: str
    prefix: str
    key: str  # the only time the full key exists outside the caller's hands


@dataclass(frozen=True, slots=True)
class AuthenticatedCarrier:
    carrier_id: str
    key_prefix: str
    key_id: int


def hash_key(key: str) -> str:
    # API keys carry 256 bits of randomness, so a fast hash is enough: there is nothing to guess.
    return hashlib.sha256(key.encode()).hexdigest()


# Who tells a carrier's recipients of their parcels: the network (central's email and SMS,
# when a reservation has contact details) or the carrier itself. The webhooks are the same.
RECIPIENT_NOTICES = ("network", "carrier")


def _check_recipient_notices(choice: str) -> str:
    if choice not in RECIPIENT_NOTICES:
        raise CarrierError(f"recipient notices are sent by one of {', '.join(RECIPIENT_NOTICES)}")
    return choice


def add_carrier(
    session: Session,
    carrier_id: str,
    name: str | None,
    now: datetime,
    *,
    recipient_notices: str = "network",
) -> Carrier:
    if not CARRIER_ID.match(carrier_id):
        raise CarrierError(
            "carrier id must be 2-32 lowercase letters, digits, '-' or '_', starting with a letter"
        )
    if repository.get_carrier(session, carrier_id) is not None:
        raise CarrierError(f"carrier {carrier_id!r} exists already")
    carrier = Carrier(
        id=carrier_id,
        name=name or carrier_id.upper(),
        recipient_notices=_check_recipient_notices(recipient_notices),
        created_at=now,
    )
    repository.add_carrier(session, carrier)
    return carrier


def update_carrier(
    session: Session,
    carrier_id: str,
    *,
    name: str | None = None,
    recipient_notices: str | None = None,
) -> Carrier:
    """Change an existing carrier's display name or who notifies its recipients."""
    carrier = repository.get_carrier(session, carrier_id)
    if carrier is None:
        raise CarrierError(f"no carrier {carrier_id!r}")
    if name is not None:
        if not name.strip() or len(name) > 200:
            raise CarrierError("a carrier's name is 1-200 characters")
        carrier.name = name
    if recipient_notices is not None:
        carrier.recipient_notices = _check_recipient_notices(recipient_notices)
    session.flush()
    return carrier


def create_api_key(session: Session, carrier_id: str, now: datetime) -> IssuedKey:
    if repository.get_carrier(session, carrier_id) is None:
        raise CarrierError(f"no carrier {carrier_id!r}; add it first")
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    prefix = "".join(secrets.choice(alphabet) for _ in range(12))
    key = f"lk_{prefix}_{secrets.token_urlsafe(32)}"
    repository.add_api_key(
        session,
        ApiKey(carrier_id=carrier_id, prefix=prefix, key_hash=hash_key(key), created_at=now),
    )
    return IssuedKey(carrier_id=carrier_id, prefix=prefix, key=key)


def revoke_api_key(session: Session, prefix: str, now: datetime) -> None:
    if not repository.revoke_api_key(session, prefix, now):
        raise CarrierError(f"no active key with prefix {prefix!r}")


def authenticate(
    session: Session, authorization: str | None, now: datetime
) -> AuthenticatedCarrier:
    """The carrier behind an `Authorization: Bearer <key>` header, or a 401."""
    token, prefix = read_key(authorization)
    key = repository.find_api_key(session, prefix)
    if key is None or not hmac.compare_digest(key.key_hash, hash_key(token)):
        raise _invalid_key()
    if key.revoked_at is not None:
        raise key_revoked()
    if (key.last_used_at is None or now - key.last_used_at > _TOUCH_INTERVAL) and _claim_touch(
        key.id, now
    ):
        repository.touch_api_key(session, key.id, now)
    return AuthenticatedCarrier(carrier_id=key.carrier_id, key_prefix=key.prefix, key_id=key.id)


def read_key(authorization: str | None) -> tuple[str, str]:
    """The key in the header and its prefix, or the 401 for a header that holds none (no query)."""
    if not authorization:
        raise ApiError(
            401,
            "missing_api_key",
            "send Authorization: Bearer <api key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = bearer_token(authorization)
    match = _KEY_FORMAT.match(token) if token else None
    if token is None or match is None:
        raise _invalid_key()
    return token, match.group(1)


def _invalid_key() -> ApiError:
    return ApiError(
        401, "invalid_api_key", "the API key is not valid", headers={"WWW-Authenticate": "Bearer"}
    )


def key_revoked() -> ApiError:
    return ApiError(
        401,
        "api_key_revoked",
        "the API key has been revoked",
        headers={"WWW-Authenticate": "Bearer"},
    )


class VerifiedKeys:
    """The keys this process has verified, with what can never change about them: the carrier
    and the key's id and prefix. For requests that come in bursts, whose key check would
    otherwise be a query of its own each time.

    Whether a key is revoked can change at any moment and is not remembered: a caller of
    `recall` checks it in the transaction that relies on the key (`repository.revoked_among`,
    or in the same statement as its work) and calls `forget` when it is. Only keys that were
    valid are remembered, each under its SHA-256 hash (what the database keeps too).
    """

    def __init__(self) -> None:
        self._by_hash: dict[str, AuthenticatedCarrier] = {}

    def recall(self, authorization: str | None) -> AuthenticatedCarrier | None:
        token = bearer_token(authorization)
        return None if token is None else self._by_hash.get(hash_key(token))

    def remember(self, authorization: str | None, carrier: AuthenticatedCarrier) -> None:
        token = bearer_token(authorization)
        if token is not None:
            self._by_hash[hash_key(token)] = carrier

    def forget(self, key_ids: Iterable[int]) -> None:
        gone = set(key_ids)
        for digest, carrier in list(self._by_hash.items()):
            if carrier.key_id in gone:
                self._by_hash.pop(digest, None)


def bearer_token(authorization: str | None) -> str | None:
    """The key in an `Authorization: Bearer <key>` header; None for any other header."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def record_use(session: Session, carrier: AuthenticatedCarrier, now: datetime) -> None:
    """`last_used_at` for a key recalled from `VerifiedKeys`, at most once a minute a process."""
    if _claim_touch(carrier.key_id, now):
        repository.touch_api_key(session, carrier.key_id, now, unless_since=now - _TOUCH_INTERVAL)


_touch_lock = threading.Lock()
_touched: dict[int, datetime] = {}


def _claim_touch(key_id: int, now: datetime) -> bool:
    """Whether this request records the key's use: one request per key and process a minute.

    Without it, every request that read a stale `last_used_at` would update the same row and
    queue on its lock behind the others, a burst of waiting at the start of each minute.
    """
    with _touch_lock:
        last = _touched.get(key_id)
        if last is not None and now - last <= _TOUCH_INTERVAL:
            return False
        _touched[key_id] = now
        return True
