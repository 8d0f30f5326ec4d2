"""`locker-node provision` against central's real app: key, identity, config; a used token fails."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from locker_node.cli import app as cli
from locker_node.config import load_config
from locker_node.sync.identity import KEY_FILE, load_identity
from locker_node.sync.provision import ProvisionError, provision
from tests.central.conftest import World
from tests.central.nodes.support import issue_token
from tests.clock import FakeClock
from tests.locker_node.sync.conftest import CentralTransport


def test_provision_writes_a_private_key_identity_and_a_config_that_loads(
    client: TestClient,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    world: World,
    tmp_path: Path,
) -> None:
    token = issue_token(sessions, clock)
    config_path = tmp_path / "node.toml"

    done = provision(
        central_url="http://central",
        bank_id="NYC-1",
        token=token,
        config_path=config_path,
        transport=CentralTransport(client),
    )

    key = tmp_path / "data" / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    config = load_config(config_path)
    assert (config.bank_id, config.central_url) == ("NYC-1", "http://central")
    assert config.data_dir == tmp_path / "data"
    assert sorted(c.size for c in config.compartments) == ["L", "M", "M", "S", "S"]
    assert config.boards[0].protocol == "simulated" and config.boards[0].lock_count == 5
    identity = load_identity(config.data_dir)
    assert identity.node_id == done.node_id and done.node_id.startswith("node_")

    # The token is spent, and the node keeps the key it has: nothing is overwritten.
    again = tmp_path / "again" / "node.toml"
    with pytest.raises(ProvisionError, match="token_used"):
        provision(
            central_url="http://central",
            bank_id="NYC-1",
            token=token,
            config_path=again,
            transport=CentralTransport(client),
        )
    assert not again.exists() and not (again.parent / "data" / KEY_FILE).exists()
    with pytest.raises(ProvisionError, match="enrolled already"):
        provision(
            central_url="http://central",
            bank_id="NYC-1",
            token=issue_token(sessions, clock),
            config_path=config_path,
            transport=CentralTransport(client),
        )
    assert load_identity(config.data_dir).node_id == done.node_id


def test_provision_reports_its_compartments_from_an_existing_config(
    client: TestClient,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    world: World,
    tmp_path: Path,
) -> None:
    config_path = tmp_path / "node.toml"
    config_path.write_text(
        'bank_id = "NYC-1"\ndata_dir = "state"\n'
        '[[boards]]\nname = "main"\nprotocol = "simulated"\n'
        '[[compartments]]\nlabel = "Z99"\nsize = "XL"\nboard = "main"\nlock = 1\n'
    )

    done = provision(
        central_url="http://central",
        bank_id="NYC-1",
        token=issue_token(sessions, clock),
        config_path=config_path,
        transport=CentralTransport(client),
    )

    assert not done.enrollment.layout_matches
    assert load_config(config_path).data_dir == tmp_path / "state"
    assert (tmp_path / "state" / KEY_FILE).exists()

    elsewhere = tmp_path / "elsewhere"
    provision(
        central_url="http://central",
        bank_id="NYC-1",
        token=issue_token(sessions, clock),
        config_path=tmp_path / "second.toml",
        data_dir=elsewhere,
        transport=CentralTransport(client),
    )
    assert load_config(tmp_path / "second.toml").data_dir == elsewhere
    assert (elsewhere / KEY_FILE).exists()


def test_the_cli_says_what_went_wrong_and_exits_1(tmp_path: Path) -> None:
    # Port 9 on localhost: nothing listens there, so the connection is refused at once.
    result = CliRunner().invoke(
        cli,
        [
            "provision",
            "--central",
            "http://127.0.0.1:9",
            "--bank",
            "NYC-1",
            "--token",
            "t" * 32,
            "--config",
            str(tmp_path / "node.toml"),
        ],
    )

    assert result.exit_code == 1
    assert "cannot reach central at http://127.0.0.1:9" in result.output
    assert not (tmp_path / "node.toml").exists()


def test_a_bad_token_is_a_clear_error(client: TestClient, world: World, tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="central refused the enrollment: invalid_token"):
        provision(
            central_url="http://central",
            bank_id="NYC-1",
            token="x" * 32,
            config_path=tmp_path / "node.toml",
            transport=CentralTransport(client),
        )
