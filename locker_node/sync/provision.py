"""`locker-node provision`: enroll with central and write the node's config and identity."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from locker_node.config import check_ca_bundle
from locker_node.sync.client import CentralRefused, CentralUnavailable, CentralUntrusted, enroll
from locker_node.sync.identity import (
    KEY_FILE,
    CentralKeys,
    write_atomically,
    write_central_keys,
    write_private_key,
)
from locker_wire.schemas import EnrollmentRequest, EnrollmentResponse, ReportedCompartment
from locker_wire.signing import generate_private_key, public_key_text

BOARD = "main"
MAX_SIMULATED_LOCKS = 256


class ProvisionError(Exception):
    """Enrollment failed; the message says why, for the installer."""


@dataclass(frozen=True)
class Provisioned:
    node_id: str
    config_path: Path
    key_path: Path
    enrollment: EnrollmentResponse


def _existing(config_path: Path) -> dict[str, Any]:
    if not config_path.exists():
        return {}
    try:
        with config_path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProvisionError(f"{config_path}: cannot read the existing config: {exc}") from exc


def provision(
    *,
    central_url: str,
    bank_id: str,
    token: str,
    config_path: Path,
    data_dir: Path | None = None,
    transport: httpx.BaseTransport | None = None,
    node_version: str | None = None,
    ca_bundle: Path | None = None,
) -> Provisioned:
    """Make a key, enroll, then write the key (0600), central's keys and the config.

    Central's certificate is checked against `ca_bundle` when given (and the config keeps it),
    else against the system's CA store."""
    ca_bundle = _usable_ca_bundle(central_url, ca_bundle)
    existing = _existing(config_path)
    # A --data-dir is as the installer typed it, from where they stand; the config's own is
    # relative to the config file.
    data_dir_text = (
        str(data_dir.absolute()) if data_dir is not None else str(existing.get("data_dir", "data"))
    )
    resolved = Path(data_dir_text)
    if not resolved.is_absolute():
        resolved = config_path.parent / resolved
    if (resolved / KEY_FILE).exists():
        # Checked before enrolling, so the one-time token is not spent on a node that cannot
        # store its new key.
        raise ProvisionError(
            f"{resolved / KEY_FILE} exists: this node is enrolled already; "
            "move its data_dir aside to enroll it again"
        )
    key = generate_private_key()
    try:
        reported = [
            ReportedCompartment(
                label=str(c["label"]), size=c["size"], accessible=c.get("accessible") is True
            )
            for c in existing.get("compartments", [])
            if isinstance(c, dict) and "label" in c and "size" in c
        ]
        request = EnrollmentRequest(
            token=token,
            public_key=public_key_text(key),
            bank_id=bank_id,
            node_version=node_version,
            compartments=reported,
        )
    except ValueError as exc:
        raise ProvisionError(f"not a valid enrollment request: {exc}") from exc
    try:
        answer = enroll(central_url, request, transport=transport, ca_bundle=ca_bundle)
    except CentralUntrusted as exc:
        advice = (
            "--central must name a host that central's certificate is issued for"
            if exc.wrong_host
            else "pass --ca-bundle with the PEM file of the CA that issued central's certificate"
        )
        raise ProvisionError(f"{exc}; {advice}") from exc
    except CentralUnavailable as exc:
        raise ProvisionError(f"cannot reach central at {central_url}: {exc}") from exc
    except CentralRefused as exc:
        raise ProvisionError(f"central refused the enrollment: {exc.code}: {exc.detail}") from exc
    key_path = write_private_key(resolved, key)
    write_central_keys(
        resolved,
        CentralKeys(
            node_id=answer.node_id,
            signing_public_key=answer.central_signing_public_key,
            sealing_public_key=answer.central_sealing_public_key,
        ),
    )
    config_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(config_path, config_text(answer, central_url, data_dir_text, ca_bundle))
    return Provisioned(answer.node_id, config_path, key_path, answer)


def _usable_ca_bundle(central_url: str, ca_bundle: Path | None) -> Path | None:
    """The bundle as an absolute path, checked before the one-time token is spent."""
    if ca_bundle is None:
        return None
    if not central_url.startswith("https://"):
        raise ProvisionError("--ca-bundle is for an https:// central URL only")
    try:
        return check_ca_bundle(ca_bundle.absolute())
    except ValueError as exc:
        raise ProvisionError(f"--ca-bundle {exc}") from exc


def config_text(
    answer: EnrollmentResponse,
    central_url: str,
    data_dir: str,
    ca_bundle: Path | None = None,
) -> str:
    """The node config for the enrolled bank: a simulated board until the installer wires one."""
    locks = min(MAX_SIMULATED_LOCKS, max(1, len(answer.compartments)))
    lines = [
        f"bank_id = {json.dumps(answer.bank_id)}",
        f"central_url = {json.dumps(central_url)}",
        *([f"ca_bundle = {json.dumps(str(ca_bundle))}"] if ca_bundle is not None else []),
        f"data_dir = {json.dumps(data_dir)}",
        "",
        "# A simulated board sized to the bank: replace it with the real [[boards]] wiring.",
        "[[boards]]",
        f'name = "{BOARD}"',
        'protocol = "simulated"',
        f"locks = {locks}",
    ]
    for lock, compartment in enumerate(answer.compartments[:MAX_SIMULATED_LOCKS], start=1):
        lines += [
            "",
            "[[compartments]]",
            f"label = {json.dumps(compartment.label)}",
            f'size = "{compartment.size}"',
            f'board = "{BOARD}"',
            f"lock = {lock}",
            *(["accessible = true"] if compartment.accessible else []),
        ]
    return "\n".join(lines) + "\n"
