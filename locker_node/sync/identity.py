"""What enrollment leaves on the node: its Ed25519 key, its id and central's public keys."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from locker_wire.sealing import load_sealing_public_key
from locker_wire.signing import load_private_key_pem, load_public_key, private_key_pem

KEY_FILE = "node-identity.pem"
CENTRAL_FILE = "central.json"


class IdentityError(Exception):
    """The node is not enrolled, or its enrollment files are unusable."""


@dataclass(frozen=True)
class CentralKeys:
    node_id: str
    signing_public_key: str
    sealing_public_key: str

    @property
    def signing(self) -> Ed25519PublicKey:
        return load_public_key(self.signing_public_key)

    @property
    def sealing(self) -> X25519PublicKey:
        return load_sealing_public_key(self.sealing_public_key)


@dataclass(frozen=True)
class NodeIdentity:
    key: Ed25519PrivateKey
    central: CentralKeys

    @property
    def node_id(self) -> str:
        return self.central.node_id


def write_private_key(data_dir: Path, key: Ed25519PrivateKey) -> Path:
    """Create the key file with mode 0600; O_EXCL so an existing identity is never overwritten."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_key_pem(key))
        handle.flush()
        os.fsync(handle.fileno())
    return path


def write_central_keys(data_dir: Path, central: CentralKeys) -> Path:
    path = data_dir / CENTRAL_FILE
    body = {
        "node_id": central.node_id,
        "central_signing_public_key": central.signing_public_key,
        "central_sealing_public_key": central.sealing_public_key,
    }
    write_atomically(path, json.dumps(body, indent=2) + "\n")
    return path


def write_atomically(path: Path, text: str) -> None:
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(text)
    os.replace(scratch, path)


def load_identity(data_dir: Path) -> NodeIdentity:
    key_path = data_dir / KEY_FILE
    central_path = data_dir / CENTRAL_FILE
    try:
        mode = key_path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise IdentityError(f"{key_path} is accessible to other users: chmod 600 it")
        key = load_private_key_pem(key_path.read_bytes())
        body = json.loads(central_path.read_text())
        central = CentralKeys(
            node_id=str(body["node_id"]),
            signing_public_key=str(body["central_signing_public_key"]),
            sealing_public_key=str(body["central_sealing_public_key"]),
        )
        # Parsed now so that a damaged file stops the node at start, not at the first event.
        central.signing  # noqa: B018
        central.sealing  # noqa: B018
    except FileNotFoundError as exc:
        raise IdentityError(
            f"{data_dir} holds no enrollment ({exc.filename} is missing): run locker-node provision"
        ) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IdentityError(f"{data_dir}: unusable enrollment files: {exc}") from exc
    return NodeIdentity(key=key, central=central)
