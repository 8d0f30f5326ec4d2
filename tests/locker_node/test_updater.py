"""Node updates on the node: the updater's decisions, the state file, pip's arguments, and the
supervisor's switch, verification and rollback with stand-in node executables."""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from locker_node.config import ConfigError, UpdateConfig, parse_config
from locker_node.update.install import InstallFailed, pip_arguments
from locker_node.update.state import (
    Pending,
    UpdateState,
    current_venv,
    load_state,
    point_current,
    save_state,
)
from locker_node.update.supervisor import Supervisor
from locker_node.update.updater import Updater
from locker_wire.schemas import HeartbeatResult

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def config_for(root: Path, **changes: object) -> UpdateConfig:
    values: dict[str, object] = {
        "enabled": True,
        "index_url": "https://pypi.example.net/simple/",
        "root": root,
        "verify_timeout_s": 5,
    }
    return UpdateConfig.model_validate(values | changes)


class FakeInstaller:
    def __init__(self, root: Path, error: str | None = None) -> None:
        self.root, self.error, self.calls = root, error, []  # type: ignore[var-annotated]

    def __call__(self, config: UpdateConfig, version: str) -> Path:
        self.calls.append(version)
        if self.error is not None:
            raise InstallFailed(self.error)
        target = self.root / "venvs" / version
        target.mkdir(parents=True)
        return target


def updater(
    root: Path, installer: FakeInstaller, *, supervised: bool = True, kiosk: bool = True
) -> tuple[Updater, threading.Event]:
    exited = threading.Event()
    made = Updater(
        config_for(root),
        "1.0.0",
        supervised=supervised,
        kiosk_check=lambda: kiosk,
        request_exit=exited.set,
        installer=installer,
        clock=lambda: NOW,
        own_venv=root / "base-venv",
    )
    return made, exited


def result(wanted: str | None, rollout: int | None = 1) -> HeartbeatResult:
    return HeartbeatResult(
        server_time=0, online=True, wanted_version=wanted, wanted_rollout=rollout
    )


def test_nothing_happens_without_a_new_wanted_version(tmp_path: Path) -> None:
    installer = FakeInstaller(tmp_path)
    node, exited = updater(tmp_path, installer)

    node.after_heartbeat(result(None))
    node.after_heartbeat(result("1.0.0"))

    assert installer.calls == [] and not exited.is_set()
    report = node.report()
    assert (report.state, report.running, report.wanted) == ("idle", "1.0.0", None)


def test_an_installed_version_is_switched_to_and_the_node_asks_to_exit(tmp_path: Path) -> None:
    installer = FakeInstaller(tmp_path)
    node, exited = updater(tmp_path, installer)

    assert node.consider("1.1.0", 7)
    node.join(10)

    assert installer.calls == ["1.1.0"] and exited.is_set() and node.switched
    assert current_venv(tmp_path) == tmp_path / "venvs" / "1.1.0"
    state = load_state(tmp_path)
    assert state.state == "switching"
    assert state.pending == Pending(
        from_version="1.0.0",
        from_path=str(tmp_path / "base-venv"),
        to_version="1.1.0",
        to_path=str(tmp_path / "venvs" / "1.1.0"),
        deadline=state.pending.deadline if state.pending else 0,
        rollout=7,
    )
    # Nothing more is started while the switch is under way.
    assert not node.consider("1.2.0", 8)


def test_a_failed_install_is_reported_and_not_retried_until_a_new_rollout(tmp_path: Path) -> None:
    installer = FakeInstaller(tmp_path, error="pip install failed (exit 1): no such version")
    node, exited = updater(tmp_path, installer)

    node.after_heartbeat(result("1.1.0", 3))
    node.join(10)
    node.after_heartbeat(result("1.1.0", 3))
    node.join(10)

    assert installer.calls == ["1.1.0"] and not exited.is_set()
    report = node.report()
    assert (report.state, report.wanted, report.running) == ("failed", "1.1.0", "1.0.0")
    assert report.detail == "pip install failed (exit 1): no such version"
    assert current_venv(tmp_path) is None
    # An admin setting it again (a new rollout) is a new try.
    node.after_heartbeat(result("1.1.0", 4))
    node.join(10)
    assert installer.calls == ["1.1.0", "1.1.0"]


def test_a_node_not_under_the_supervisor_refuses_to_update(tmp_path: Path) -> None:
    installer = FakeInstaller(tmp_path)
    node, _ = updater(tmp_path, installer, supervised=False)

    node.after_heartbeat(result("1.1.0"))

    assert installer.calls == []
    report = node.report()
    assert report.state == "failed" and "locker-node supervise" in (report.detail or "")


def test_a_new_version_verifies_itself_after_a_heartbeat_with_its_kiosk_up(tmp_path: Path) -> None:
    pending = Pending("0.9.0", "/venvs/0.9.0", "1.0.0", str(tmp_path / "venvs/1.0.0"), 1e12, 5)
    save_state(tmp_path, UpdateState(state="switching", pending=pending, wanted="1.0.0"))
    down, _ = updater(tmp_path, FakeInstaller(tmp_path), kiosk=False)
    assert down.report().state == "verifying" and down.report().previous == "0.9.0"

    down.after_heartbeat(result("1.0.0", 5))
    assert load_state(tmp_path).pending is not None  # the kiosk does not answer yet

    up, _ = updater(tmp_path, FakeInstaller(tmp_path))
    up.after_heartbeat(result("1.0.0", 5))

    state = load_state(tmp_path)
    assert (state.state, state.pending, state.running) == ("healthy", None, "1.0.0")


def test_pip_reads_only_the_configured_index(tmp_path: Path) -> None:
    with_index = config_for(tmp_path, trusted_host="pypi.example.net", compile=False)
    links_only = config_for(tmp_path, index_url=None, find_links="http://127.0.0.1:9/wheels/")

    assert pip_arguments(with_index, "1.2.0") == [
        "install", "--no-input", "--disable-pip-version-check", "--no-cache-dir",
        "--index-url", "https://pypi.example.net/simple/",
        "--trusted-host", "pypi.example.net", "--no-compile", "locker-network==1.2.0",
    ]  # fmt: skip
    assert "--no-index" in pip_arguments(links_only, "1.2.0")
    assert "--index-url" not in pip_arguments(links_only, "1.2.0")


def test_updates_need_a_package_source_and_an_absolute_root(tmp_path: Path) -> None:
    base = {"bank_id": "B", "data_dir": "data", "boards": [{"name": "m", "protocol": "simulated"}]}
    with pytest.raises(ConfigError, match="index_url or find_links"):
        parse_config(base | {"update": {"enabled": True}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="absolute"):
        parse_config(
            base | {"update": {"index_url": "https://x.test/simple/", "root": "rel"}},
            base_dir=tmp_path,
        )
    assert parse_config(base, base_dir=tmp_path).update.enabled is False


# The supervisor, with stand-in node executables -----------------------------------------------


def fake_venv(root: Path, version: str, script: str) -> Path:
    """A venv whose `bin/locker-node` is a small Python script (argv: run --config ...)."""
    venv = root / "venvs" / version
    (venv / "bin").mkdir(parents=True)
    node = venv / "bin" / "locker-node"
    node.write_text(f"#!{sys.executable}\nimport json, sys, time, pathlib\n{script}\n")
    node.chmod(0o755)
    return venv


def switched(root: Path, old: Path, new: Path) -> None:
    point_current(root, new)
    pending = Pending("1.0.0", str(old), "2.0.0", str(new), 1e12, 9)
    save_state(root, UpdateState(state="switching", wanted="2.0.0", pending=pending))


def test_a_new_version_that_exits_is_rolled_back_and_the_old_one_started(tmp_path: Path) -> None:
    old = fake_venv(
        tmp_path, "1.0.0", f"pathlib.Path({str(tmp_path / 'old-ran')!r}).touch()\nsys.exit(9)"
    )
    new = fake_venv(tmp_path, "2.0.0", "sys.exit(3)")
    switched(tmp_path, old, new)

    code = Supervisor(config_for(tmp_path), ["run"], own_venv=old, clock=lambda: NOW).run()

    assert code == 9 and (tmp_path / "old-ran").exists()
    assert current_venv(tmp_path) == old
    state = load_state(tmp_path)
    assert (state.state, state.running, state.wanted, state.pending) == (
        "rolled_back", "1.0.0", "2.0.0", None,
    )  # fmt: skip
    assert state.detail == "version 2.0.0 exited with code 3 before it was healthy"
    assert state.has_failed("2.0.0", 9)


def test_a_new_version_that_never_says_healthy_is_rolled_back_at_the_deadline(
    tmp_path: Path,
) -> None:
    old = fake_venv(tmp_path, "1.0.0", "sys.exit(0)")
    new = fake_venv(tmp_path, "2.0.0", "time.sleep(120)")
    switched(tmp_path, old, new)

    code = Supervisor(config_for(tmp_path), ["run"], own_venv=old, clock=lambda: NOW).run()

    assert code == 0 and current_venv(tmp_path) == old
    assert load_state(tmp_path).detail == "version 2.0.0 did not report healthy within 5 s"


def test_a_new_version_that_says_healthy_stays(tmp_path: Path) -> None:
    old = fake_venv(tmp_path, "1.0.0", "sys.exit(0)")
    state_file = tmp_path / "update-state.json"
    healthy = (
        f"p = pathlib.Path({str(state_file)!r}); s = json.loads(p.read_text())\n"
        "s.update(state='healthy', pending=None, running='2.0.0'); p.write_text(json.dumps(s))\n"
        "sys.exit(7)"
    )
    new = fake_venv(tmp_path, "2.0.0", healthy)
    switched(tmp_path, old, new)

    code = Supervisor(config_for(tmp_path), ["run"], own_venv=old, clock=lambda: NOW).run()

    assert code == 7 and current_venv(tmp_path) == new
    assert json.loads(state_file.read_text())["state"] == "healthy"


def test_a_healthy_switch_removes_all_but_this_version_and_the_one_before(tmp_path: Path) -> None:
    for version in ("0.8.0", "0.9.0", "1.0.0", "1.1.0rc1"):
        (tmp_path / "venvs" / version / "bin").mkdir(parents=True)
    pending = Pending(
        "0.9.0", str(tmp_path / "venvs/0.9.0"), "1.0.0", str(tmp_path / "venvs/1.0.0"), 1e12, 5
    )
    save_state(tmp_path, UpdateState(state="switching", pending=pending, wanted="1.0.0"))
    made, _ = updater(tmp_path, FakeInstaller(tmp_path))

    made.after_heartbeat(result("1.0.0", 5))

    assert sorted(p.name for p in (tmp_path / "venvs").iterdir()) == ["0.9.0", "1.0.0"]
