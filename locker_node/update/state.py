"""The update state file (`<root>/update-state.json`) and the versioned venv layout.

Written by the running node (installing, switching, healthy) and by the supervisor (rolled
back), never by both at once: the supervisor writes only while no child runs. Each write
replaces the whole file atomically.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from locker_wire.schemas import UpdateReport

STATE_FILE = "update-state.json"
VENVS = "venvs"
CURRENT = "current"
MAX_DETAIL = 2000
# The node that switched exits with this, so the supervisor starts the new version at once.
EXIT_SWITCHED = 75
# Set by the supervisor in its child's environment: only a supervised node updates itself.
SUPERVISED_ENV = "LOCKER_NODE_SUPERVISED"


@dataclass
class Pending:
    """A switch under way: from one venv to another, healthy by `deadline` (epoch seconds)."""

    from_version: str
    from_path: str
    to_version: str
    to_path: str
    deadline: float
    rollout: int | None = None


@dataclass
class UpdateState:
    state: str = "idle"
    running: str | None = None
    wanted: str | None = None
    previous: str | None = None
    detail: str | None = None
    changed_at: str | None = None
    rollout: int | None = None
    pending: Pending | None = None
    # (version, rollout) pairs that failed: not tried again until an admin sets them anew.
    failed: list[tuple[str, int | None]] = field(default_factory=list)

    def has_failed(self, version: str, rollout: int | None) -> bool:
        return (version, rollout) in self.failed

    def remember_failure(self, version: str, rollout: int | None) -> None:
        if not self.has_failed(version, rollout):
            self.failed = [*self.failed[-9:], (version, rollout)]

    def moved(self, state: str, now: datetime, **changes: Any) -> None:
        """Into `state` at `now`, with the other fields given."""
        self.state = state
        self.changed_at = now.astimezone(UTC).isoformat()
        for key, value in changes.items():
            setattr(self, key, value)
        if self.detail is not None:
            self.detail = self.detail[-MAX_DETAIL:]

    def report(self, running: str) -> UpdateReport:
        """The heartbeat's `update`, for the process that runs `running`."""
        return UpdateReport(
            state=self.state,
            running=running,
            wanted=self.wanted,
            previous=self.previous,
            detail=self.detail,
            changed_at=datetime.fromisoformat(self.changed_at) if self.changed_at else None,
        )


def state_path(root: Path) -> Path:
    return root / STATE_FILE


def load_state(root: Path) -> UpdateState:
    """The state file, or a fresh state when there is none (or it cannot be read)."""
    try:
        data = json.loads(state_path(root).read_text())
    except (OSError, ValueError):
        return UpdateState()
    if not isinstance(data, dict):
        return UpdateState()
    pending = data.pop("pending", None)
    failed = data.pop("failed", [])
    known = {key: data[key] for key in UpdateState.__dataclass_fields__ if key in data}
    try:
        state = UpdateState(**known)
        state.pending = Pending(**pending) if isinstance(pending, dict) else None
        state.failed = [(str(version), rollout) for version, rollout in failed]
    except (TypeError, ValueError):
        return UpdateState()
    return state


def save_state(root: Path, state: UpdateState) -> None:
    root.mkdir(parents=True, exist_ok=True)
    data = asdict(state)
    data["failed"] = [list(pair) for pair in state.failed]
    write_atomically(state_path(root), json.dumps(data, indent=2) + "\n")


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def venv_path(root: Path, version: str) -> Path:
    return root / VENVS / version


def current_venv(root: Path) -> Path | None:
    """Where `<root>/current` points, or None when there is no such link yet."""
    link = root / CURRENT
    if not link.is_symlink():
        return None
    target = Path(os.readlink(link))
    return target if target.is_absolute() else root / target


def point_current(root: Path, target: Path) -> None:
    """Make `<root>/current` point at `target` atomically (a new link renamed over the old)."""
    link = root / CURRENT
    temporary = root / f".{CURRENT}.tmp"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target)
    os.replace(temporary, link)
    directory = os.open(root, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def prune_venvs(root: Path, keep: Iterable[Path]) -> list[Path]:
    """Remove the venvs under `<root>/venvs` other than `keep` (the one running and the one to
    go back to); the removed ones. Each is a few hundred MB of an SD card."""
    kept = {path.resolve() for path in keep}
    removed = []
    for venv in sorted((root / VENVS).glob("*")):
        if venv.is_dir() and not venv.is_symlink() and venv.resolve() not in kept:
            shutil.rmtree(venv, ignore_errors=True)
            removed.append(venv)
    return removed


def node_executable(venv: Path) -> Path:
    return venv / "bin" / "locker-node"
