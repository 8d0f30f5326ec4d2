"""Node updates on central's side: the wanted node version per bank, and each node's progress
as its heartbeats report it.

A rollout is an admin's "run version X" for every bank or for a list of banks; the latest
active rollout covering a bank decides what its node should run. Heartbeats are the hottest
node endpoint, so a heartbeat costs two indexed reads here, and a write only when the node's
report changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from packaging.version import InvalidVersion, Version
from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from central.db import rowcount
from central.errors import ApiError
from central.models import Bank, Node, NodeRollout, NodeRolloutBank, NodeUpdateStatus
from central.nodes import repository as node_repo
from locker_wire.schemas import Heartbeat, UpdateReport

ALERT_TYPE = "update_failed"
FAILED_STATES = frozenset({"failed", "rolled_back"})
MAX_BANKS_PER_ROLLOUT = 10_000


class UpdateError(ApiError):
    """A rollout an admin asked for that cannot be: a 4xx with a machine-readable code."""


class Wanted(NamedTuple):
    """The version a bank's node should run, and the rollout that asks for it."""

    rollout_id: int
    version: str


def normalize_version(text: str) -> str:
    """`text` as a PEP 440 version in its normal form ("v1.2" -> "1.2"), or an UpdateError."""
    try:
        version = Version(text.strip())
    except InvalidVersion as exc:
        raise UpdateError(
            422, "invalid_version", f"{text!r} is not a PEP 440 version (e.g. 1.4.2)"
        ) from exc
    if version.local is not None:
        # pip never installs a local version from an index by `==` without the label; refusing
        # it here saves a rollout that every node would fail.
        raise UpdateError(422, "invalid_version", "a local version label (+...) is not allowed")
    return str(version)


# Rollouts -----------------------------------------------------------------------------------------


def set_rollout(
    session: Session,
    *,
    version: str,
    bank_ids: Sequence[str] | None,
    operator_id: int | None,
    now: datetime,
) -> NodeRollout:
    """Make `version` the wanted one for `bank_ids` (None: every bank). A rollout to every bank
    supersedes (stops) the active ones before it; one to some banks overrides earlier ones for
    those banks only, being the latest."""
    normal = normalize_version(version)
    if bank_ids is not None:
        banks = sorted(set(bank_ids))
        if not banks:
            raise UpdateError(422, "no_banks", "name at least one bank, or all")
        if len(banks) > MAX_BANKS_PER_ROLLOUT:
            raise UpdateError(422, "too_many_banks", f"at most {MAX_BANKS_PER_ROLLOUT} banks")
        known = set(session.scalars(select(Bank.id).where(Bank.id.in_(banks))))
        unknown = [bank for bank in banks if bank not in known]
        if unknown:
            raise UpdateError(
                404, "unknown_bank", f"no such bank: {', '.join(unknown[:20])}", banks=unknown
            )
    else:
        banks = []
        _stop_active(session, operator_id, now)
    rollout = NodeRollout(
        version=normal, all_banks=bank_ids is None, set_by=operator_id, set_at=now
    )
    session.add(rollout)
    session.flush()
    session.add_all(NodeRolloutBank(rollout_id=rollout.id, bank_id=bank) for bank in banks)
    session.flush()
    return rollout


def stop_rollouts(session: Session, *, operator_id: int | None, now: datetime) -> int:
    """Stop every active rollout: nodes keep the version they run. How many were active."""
    return _stop_active(session, operator_id, now)


def _stop_active(session: Session, operator_id: int | None, now: datetime) -> int:
    return rowcount(
        session.execute(
            update(NodeRollout)
            .where(NodeRollout.stopped_at.is_(None))
            .values(stopped_at=now, stopped_by=operator_id)
        )
    )


def wanted_for_bank(session: Session, bank_id: str) -> Wanted | None:
    """The latest active rollout that covers the bank, or None (keep what runs)."""
    names_bank = exists().where(
        NodeRolloutBank.rollout_id == NodeRollout.id, NodeRolloutBank.bank_id == bank_id
    )
    row = session.execute(
        select(NodeRollout.id, NodeRollout.version)
        .where(NodeRollout.stopped_at.is_(None), NodeRollout.all_banks | names_bank)
        .order_by(NodeRollout.id.desc())
        .limit(1)
    ).first()
    return None if row is None else Wanted(row.id, row.version)


def active_rollouts(session: Session) -> list[tuple[NodeRollout, list[str]]]:
    """The active rollouts, newest first, each with the banks it names (none: every bank)."""
    rollouts = session.scalars(
        select(NodeRollout).where(NodeRollout.stopped_at.is_(None)).order_by(NodeRollout.id.desc())
    ).all()
    named: dict[int, list[str]] = {rollout.id: [] for rollout in rollouts}
    if named:
        for rollout_id, bank_id in session.execute(
            select(NodeRolloutBank.rollout_id, NodeRolloutBank.bank_id)
            .where(NodeRolloutBank.rollout_id.in_(named))
            .order_by(NodeRolloutBank.bank_id)
        ):
            named[rollout_id].append(bank_id)
    return [(rollout, named[rollout.id]) for rollout in rollouts]


# Heartbeats ---------------------------------------------------------------------------------------


def record_update(session: Session, node: Node, body: Heartbeat, now: datetime) -> Wanted | None:
    """Keep the node's update report when it changed (raising or resolving `update_failed`);
    the version the node should run (None: what it runs)."""
    wanted = wanted_for_bank(session, node.bank_id)
    if body.update is not None:
        _keep_report(session, node, body.update, wanted, now)
    return wanted


def _report_values(report: UpdateReport) -> dict[str, Any]:
    return {
        "state": report.state,
        "running": report.running,
        "wanted": report.wanted,
        "previous": report.previous,
        "detail": report.detail,
        "changed_at": report.changed_at,
    }


def _keep_report(
    session: Session, node: Node, report: UpdateReport, wanted: Wanted | None, now: datetime
) -> None:
    values = _report_values(report)
    stored = session.get(NodeUpdateStatus, node.id)
    if stored is not None and all(
        getattr(stored, key) == value for key, value in values.items() if key != "changed_at"
    ):
        return
    rollout_id = wanted.rollout_id if wanted is not None else None
    if stored is None:
        session.add(
            NodeUpdateStatus(
                node_id=node.id, bank_id=node.bank_id, rollout_id=rollout_id, recorded_at=now,
                **values,
            )
        )  # fmt: skip
    else:
        for key, value in values.items():
            setattr(stored, key, value)
        stored.bank_id, stored.rollout_id, stored.recorded_at = node.bank_id, rollout_id, now
    session.flush()
    if report.state in FAILED_STATES:
        node_repo.raise_bank_alerts(
            session,
            node.bank_id,
            [
                {
                    "type": ALERT_TYPE,
                    "subject": node.id,
                    "detail": {
                        "node_id": node.id,
                        "state": report.state,
                        "version": report.wanted,
                        "running": report.running,
                        "reason": report.detail,
                    },
                    "created_at": now,
                }
            ],
        )
    elif report.state == "healthy" and (report.wanted in (None, report.running)):
        node_repo.resolve_subject_alerts(session, node.bank_id, [(ALERT_TYPE, node.id)], now)


# The dashboard's view -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeProgress:
    """One active node: its bank, what it should run, runs, and its last update report."""

    bank_id: str
    bank_name: str
    node_id: str
    online: bool
    wanted: str | None
    rollout_id: int | None
    running: str | None
    state: str
    detail: str | None
    since: datetime | None


def fleet_progress(session: Session) -> list[NodeProgress]:
    """Every active (not revoked) node with its bank's wanted version and its progress."""
    rollouts = active_rollouts(session)  # newest first: the first that covers a bank decides
    rows = session.execute(
        select(Node, Bank.name, NodeUpdateStatus)
        .join(Bank, Bank.id == Node.bank_id)
        .outerjoin(NodeUpdateStatus, NodeUpdateStatus.node_id == Node.id)
        .where(Node.revoked_at.is_(None))
        .order_by(Node.bank_id, Node.id)
    ).all()
    out = []
    for node, bank_name, status in rows:
        rollout = next((r for r, banks in rollouts if not banks or node.bank_id in banks), None)
        out.append(
            NodeProgress(
                bank_id=node.bank_id,
                bank_name=bank_name,
                node_id=node.id,
                online=node.online,
                wanted=rollout.version if rollout is not None else None,
                rollout_id=rollout.id if rollout is not None else None,
                running=status.running if status is not None else node.version,
                state=status.state if status is not None else "idle",
                detail=status.detail if status is not None else None,
                since=status.changed_at or status.recorded_at if status is not None else None,
            )
        )
    return out
