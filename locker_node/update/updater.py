"""The running node's side of an update: what to do about the version central wants.

The sync loop hands over every accepted heartbeat's result. A version that differs from the one
running (and has not failed already for the same rollout) is installed in a background thread;
once installed, the node points `<root>/current` at it, records the switch as pending in the
state file and exits with `EXIT_SWITCHED` so that its supervisor starts the new version. The new
version marks itself healthy after its first heartbeat accepted by central with its kiosk
answering; the supervisor, not the new code, rolls back when that does not happen in time.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from locker_node.config import UpdateConfig
from locker_node.update.install import InstallFailed, install_version
from locker_node.update.state import (
    Pending,
    UpdateState,
    current_venv,
    load_state,
    point_current,
    prune_venvs,
    save_state,
)
from locker_wire.schemas import HeartbeatResult, UpdateReport

logger = logging.getLogger(__name__)

Installer = Callable[[UpdateConfig, str], Path]
BUSY_STATES = frozenset({"installing", "switching"})


def system_clock() -> datetime:
    return datetime.now(UTC)


def kiosk_answers(url: str, timeout_s: float = 5.0) -> bool:
    """The kiosk serves its status (its event loop turns and its routes load)."""
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


class Updater:
    """Decides on the wanted version and carries out the node's half of an update."""

    def __init__(
        self,
        config: UpdateConfig,
        running: str,
        *,
        supervised: bool,
        kiosk_check: Callable[[], bool],
        request_exit: Callable[[], None],
        installer: Installer = install_version,
        clock: Callable[[], datetime] = system_clock,
        own_venv: Path | None = None,
    ) -> None:
        self.config = config
        self.running = running
        self.supervised = supervised
        self._kiosk_check = kiosk_check
        self._request_exit = request_exit
        self._installer = installer
        self._clock = clock
        self._own_venv = own_venv if own_venv is not None else Path(sys.prefix)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.switched = False
        self.state = self._starting_state()

    @property
    def root(self) -> Path:
        return self.config.root

    def _starting_state(self) -> UpdateState:
        """The state file as this process finds it on start: a switch to this version is now
        being verified; one that ended elsewhere (a rollback to this version) stays as it was."""
        state = load_state(self.root)
        pending = state.pending
        now = self._clock()
        if pending is not None and pending.to_version == self.running:
            state.moved("verifying", now, running=self.running, wanted=self.running,
                        previous=pending.from_version, detail=None)  # fmt: skip
            self._save(state)
        elif pending is None and state.running not in (None, self.running):
            # Someone installed another version by hand: what the file says is not about us.
            state = UpdateState(failed=state.failed)
            state.moved("idle", now, running=self.running)
        return state

    def _save(self, state: UpdateState) -> None:
        try:
            save_state(self.root, state)
        except OSError:
            logger.exception("update state not saved in %s", self.root)

    def report(self) -> UpdateReport:
        with self._lock:
            return self.state.report(self.running)

    # Decisions -----------------------------------------------------------------------------

    def after_heartbeat(self, result: HeartbeatResult) -> None:
        """Central took a heartbeat: confirm a switch to this version, then consider `wanted`."""
        if self.state.state == "verifying" and self.state.pending is not None:
            self._confirm_healthy()
        self.consider(result.wanted_version, result.wanted_rollout)

    def _confirm_healthy(self) -> None:
        if not self._kiosk_check():
            logger.warning("update to %s: kiosk not answering yet", self.running)
            return
        with self._lock:
            state = self.state
            pending, state.pending = state.pending, None
            state.moved("healthy", self._clock(), detail=None)
            self._save(state)
        logger.info("update to %s confirmed healthy", self.running)
        if pending is not None:
            # Kept: this version and the one before it, to go back to by hand if need be.
            keep = [Path(pending.to_path), Path(pending.from_path)]
            for venv in prune_venvs(self.root, keep):
                logger.info("removed the venv of an older version: %s", venv)

    def should_install(self, wanted: str | None, rollout: int | None) -> bool:
        if wanted is None or wanted == self.running:
            return False
        state = self.state
        if state.state in BUSY_STATES or state.state == "verifying" or self.switched:
            return False
        return not state.has_failed(wanted, rollout)

    def consider(self, wanted: str | None, rollout: int | None) -> bool:
        """Start installing `wanted` in the background when it should be; whether it started."""
        with self._lock:
            if not self.should_install(wanted, rollout) or wanted is None:
                return False
            if not self.supervised:
                self._fail(wanted, rollout, "not started by `locker-node supervise`: no updates")
                return False
            self.state.moved("installing", self._clock(), wanted=wanted, rollout=rollout,
                             previous=None, detail=None)  # fmt: skip
            self._save(self.state)
            self._thread = threading.Thread(
                target=self._update, args=(wanted, rollout), name="node-update", daemon=True
            )
            self._thread.start()
        return True

    def _fail(self, wanted: str, rollout: int | None, detail: str) -> None:
        logger.error("update to %s failed: %s", wanted, detail)
        state = self.state
        state.remember_failure(wanted, rollout)
        state.moved("failed", self._clock(), wanted=wanted, rollout=rollout, detail=detail)
        self._save(state)

    def _update(self, wanted: str, rollout: int | None) -> None:
        logger.info("installing node version %s", wanted)
        started = time.monotonic()
        try:
            target = self._installer(self.config, wanted)
        except InstallFailed as exc:
            with self._lock:
                self._fail(wanted, rollout, exc.detail)
            return
        except Exception as exc:
            logger.exception("update to %s: the install broke", wanted)
            with self._lock:
                self._fail(wanted, rollout, f"install error: {exc}")
            return
        logger.info("version %s installed in %.0f s; switching", wanted, time.monotonic() - started)
        with self._lock:
            self._switch(target, wanted, rollout)
        self._request_exit()

    def _switch(self, target: Path, wanted: str, rollout: int | None) -> None:
        """Record the switch as pending, then point `current` at the new venv."""
        now = self._clock()
        here = current_venv(self.root) or self._own_venv
        self.state.pending = Pending(
            from_version=self.running,
            from_path=str(here),
            to_version=wanted,
            to_path=str(target),
            deadline=time.time() + self.config.verify_timeout_s,
            rollout=rollout,
        )
        self.state.moved("switching", now, wanted=wanted, previous=self.running)
        save_state(self.root, self.state)
        point_current(self.root, target)
        self.switched = True

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for a background install (tests)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
