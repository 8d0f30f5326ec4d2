"""The node secret in `data_dir` (mode 0600) and the purpose-bound keys derived from it."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from locker_node.domain.codes import KeyedHasher
from locker_node.store.database import StoreError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

SECRET_FILE = "node-secret.key"  # noqa: S105 - a file name, not a secret


class SecretFileError(StoreError):
    """The node secret is unreadable, malformed, or readable by others."""


class NodeKeys:
    """Keys for hashing codes and tokens and for sealing outbox secrets, each for one purpose.

    Derived with HMAC-SHA256 from one 256-bit secret, so a key for one purpose says nothing
    about another's.
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the node secret is at least 256 bits")
        self._secret = secret
        self.pickup_codes = KeyedHasher(self._derive("pickup-codes"))
        self.qr_tokens = KeyedHasher(self._derive("qr-tokens"))
        self.session_tokens = KeyedHasher(self._derive("session-tokens"))
        self._fernet: Fernet | None = None

    def _derive(self, purpose: str) -> bytes:
        return hmac.new(self._secret, b"locker-node/" + purpose.encode(), hashlib.sha256).digest()

    # The sync client re-seals these to central's X25519 key, bound to the event id
    # (`locker_wire.sealing`), when it sends the event (`SyncService.wire_event`); until then
    # they are sealed under a node-local key so that the outbox never holds a code in clear.
    def seal(self, secret: str) -> str:
        return self._sealer().encrypt(secret.encode()).decode()

    def unseal(self, token: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._sealer().decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("sealed value does not open with this node's key") from exc

    def _sealer(self) -> Fernet:
        # Imported on first use: the library is some 6 MB resident, and a node that only
        # serves pickups never needs it.
        if self._fernet is None:
            from cryptography.fernet import Fernet

            self._fernet = Fernet(base64.urlsafe_b64encode(self._derive("outbox-seal")))
        return self._fernet

    @classmethod
    def load_or_create(cls, data_dir: Path) -> NodeKeys:
        return cls(load_or_create_secret(data_dir))


def load_or_create_secret(data_dir: Path) -> bytes:
    """The secret in `data_dir/node-secret.key`, made on first start with mode 0600."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Written aside and linked into place, so a crash never leaves an empty secret file
        # that would keep the node from starting.
        scratch = data_dir / f".{SECRET_FILE}.{os.getpid()}.tmp"
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            # Another process may have made it first; then theirs is the secret.
            with contextlib.suppress(FileExistsError):
                os.link(scratch, path)
        finally:
            scratch.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretFileError(
            f"{path} is accessible to other users (mode {stat.S_IMODE(mode):o}); "
            "it holds the key to every pickup code: chmod 600 it"
        )
    text = path.read_text().strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise SecretFileError(f"{path} does not hold a hex secret") from None
    if len(secret) < 32:
        raise SecretFileError(f"{path} holds fewer than 256 bits")
    return secret
