"""The service key: derives courier access codes and encrypts secrets kept at rest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from datetime import date
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


class ServiceKeys:
    """Purpose-separated keys derived from one master secret (HMAC-SHA256 as the KDF)."""

    def __init__(self, master: bytes) -> None:
        if len(master) < 32:
            raise ValueError("the service secret key must be at least 32 bytes")
        self._master = master
        self._fernet = Fernet(base64.urlsafe_b64encode(self._derive(b"secret-encryption")))
        self._courier = self._derive(b"courier-codes")

    def _derive(self, purpose: bytes) -> bytes:
        return hmac.new(self._master, b"locker-central/" + purpose, hashlib.sha256).digest()

    def derive(self, purpose: str) -> bytes:
        """A key for another part of central, independent of every other purpose's key."""
        return self._derive(purpose.encode())

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("secret cannot be decrypted with this service key") from exc

    def courier_code(self, carrier_id: str, bank_id: str, day: date, digits: int = 8) -> str:
        """The carrier's courier access code for one bank and one local day.

        Derived rather than stored, so central keeps no table of codes in clear; it changes every
        day and differs per carrier and bank.
        """
        message = f"{carrier_id}\x1f{bank_id}\x1f{day.isoformat()}".encode()
        value = int.from_bytes(hmac.new(self._courier, message, hashlib.sha256).digest()[:8], "big")
        return str(value % 10**digits).zfill(digits)


def load_master_key(secret: str | None, data_dir: Path) -> bytes:
    """The configured secret, or one made once and kept in `data_dir/secret.key` (mode 0600)."""
    if secret:
        return secret.encode()
    path = data_dir / "secret.key"
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key
