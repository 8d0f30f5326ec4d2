"""Building and starting a node: config sections, doors read first, boards that fail loudly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from locker_node.app import build_node, crash_points_from_env, flow_policy
from locker_node.config import ConfigError, parse_config
from locker_node.hardware.board import BoardUnavailable
from locker_node.hardware.simulated import SimulatedLockBoard
from locker_node.store import outbox
from locker_node.store import repository as repo
from locker_node.store.database import DATABASE_FILE, transaction
from locker_node.store.migrate import upgrade
from tests.locker_node.kiosk.rig import LAYOUT, node_config_data


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("app-schema") / DATABASE_FILE
    upgrade(path)
    return path


def data_dir(tmp_path: Path, template: Path) -> Path:
    directory = tmp_path / "node"
    directory.mkdir()
    shutil.copy(template, directory / DATABASE_FILE)
    return directory


def test_the_new_sections_have_defaults_and_refuse_unknown_keys(tmp_path: Path) -> None:
    config = parse_config(node_config_data(tmp_path))
    policy = flow_policy(config)

    assert (config.pickup.code_digits, config.pickup.hold_hours) == (10, 72)
    assert (config.courier.session_idle_s, config.deposit.allow_walk_up) == (300, False)
    assert config.deposit.allow_upsize is True and config.kiosk.idle_timeout_s == 60
    assert policy.keypad.max_attempts_per_day() == 2884
    assert policy.login.max_attempts_per_day() == 1444
    with pytest.raises(ConfigError, match=r"pickup\.keypad\.free_atempts"):
        parse_config(node_config_data(tmp_path, pickup={"keypad": {"free_atempts": 3}}))
    with pytest.raises(ConfigError, match="max_lockout_s must be at least"):
        parse_config(
            node_config_data(
                tmp_path, courier={"login": {"first_lockout_s": 90, "max_lockout_s": 60}}
            )
        )


def test_start_reads_every_door_and_takes_a_door_found_open_as_it_is(
    tmp_path: Path, template: Path
) -> None:
    config = parse_config(node_config_data(data_dir(tmp_path, template)))
    board = SimulatedLockBoard(name="main", lock_count=16, door_delay_s=0.0)
    board.force_open(3)  # left open while the node was down
    node = build_node(config, boards={"main": board}, migrate_in_process=True)
    assert all(status.door is None for status in node.doors.statuses())

    node.start()
    try:
        doors = {status.label: str(status.door) for status in node.doors.statuses()}
        with transaction(node.engine) as conn:
            labels = [c.label for c in repo.list_compartments(conn)]
            events = outbox.outbox_events(conn)
    finally:
        node.stop()

    assert doors["A03"] == "open" and doors["A01"] == "closed"
    assert labels == sorted(label for label, _, _ in LAYOUT)
    assert not [e for e in events if e.type == "door.forced_open"]


def test_a_compartment_dropped_from_the_config_is_never_offered_again(
    tmp_path: Path, template: Path
) -> None:
    directory = data_dir(tmp_path, template)
    board = SimulatedLockBoard(name="main", lock_count=16, door_delay_s=0.0)
    build_node(
        parse_config(node_config_data(directory)), boards={"main": board}, migrate_in_process=True
    ).engine.dispose()
    smaller = parse_config(node_config_data(directory, layout=LAYOUT[1:]))

    node = build_node(smaller, boards={"main": board}, migrate_in_process=True)
    try:
        with transaction(node.engine) as conn:
            a01 = repo.get_compartment(conn, "A01")
            free = {c.label for c in repo.free_candidates(conn)}
    finally:
        node.engine.dispose()

    assert a01 is not None and not a01.configured
    assert "A01" not in free and "A02" in free


def test_a_configured_board_that_will_not_open_is_a_loud_error(
    tmp_path: Path, template: Path
) -> None:
    data = node_config_data(data_dir(tmp_path, template))
    data["boards"] = [
        {"name": "main", "protocol": "kerong-cu16", "port": str(tmp_path / "no-such-tty")}
    ]

    with pytest.raises(BoardUnavailable):
        build_node(parse_config(data), migrate_in_process=True)


def test_crash_points_are_off_unless_asked_for() -> None:
    assert crash_points_from_env({}).armed is None
    assert crash_points_from_env({"LOCKER_NODE_CRASH_AT": "deposit.bound@1Z"}).armed == (
        "deposit.bound"
    )


def test_the_kiosks_door_map_knows_each_compartments_size(tmp_path: Path, template: Path) -> None:
    config = parse_config(node_config_data(data_dir(tmp_path, template)))
    board = SimulatedLockBoard(name="main", lock_count=16, door_delay_s=0.0)
    node = build_node(config, boards={"main": board}, migrate_in_process=True)
    node.start()
    try:
        with TestClient(node.app) as kiosk:
            columns = kiosk.get("/api/layout").json()["columns"]
    finally:
        node.stop()

    sizes = {door["label"]: door["size"] for column in columns for door in column["compartments"]}
    assert sizes == {label: size for label, size, _ in LAYOUT}
