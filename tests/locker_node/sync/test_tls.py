"""TLS to central: a real central served over HTTPS on 127.0.0.1 with a trustme CA; the node
trusts it only through `ca_bundle`, enrolls and syncs, and says clearly when it does not."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
import uvicorn
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from central.models import Node as CentralNode
from locker_node.app import Node, build_node
from locker_node.cli import app as cli
from locker_node.config import ConfigError, NodeConfig, load_config
from locker_node.hardware.simulated import SimulatedLockBoard
from locker_node.sync.client import CentralClient
from locker_node.sync.identity import KEY_FILE, load_identity
from locker_node.sync.service import SyncService
from tests.central.conftest import World
from tests.central.nodes.support import issue_token
from tests.central.server import free_port
from tests.clock import FakeClock
from tests.locker_node.support import wait_until

SERVICE_LOG = "locker_node.sync.service"


@dataclass
class HttpsCentral:
    """Central's app behind uvicorn's TLS; `present` swaps the certificate new handshakes get."""

    url: str
    ca_pem: Path
    server: uvicorn.Server
    certificates: dict[str, Path]

    def present(self, name: str) -> None:
        ssl_context = self.server.config.ssl
        assert ssl_context is not None
        ssl_context.load_cert_chain(self.certificates[name])


@pytest.fixture
def https_central(app: FastAPI, world: World, tmp_path: Path) -> Iterator[HttpsCentral]:
    ca = trustme.CA()
    ca_pem = tmp_path / "central-ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    certificates = {}
    for name, hosts in (("right", ("127.0.0.1", "localhost")), ("wrong", ("central.example",))):
        path = tmp_path / f"central-{name}.pem"
        ca.issue_cert(*hosts).private_key_and_cert_chain_pem.write_to_path(str(path))
        certificates[name] = path
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            ssl_certfile=certificates["right"],
            ssl_keyfile=certificates["right"],
            loop="asyncio",
            http="h11",
            ws="none",
            log_level="critical",  # refused handshakes are the point here, not server errors
        )
    )
    thread = threading.Thread(target=server.run, name="https-central", daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout_s=10, what="central over HTTPS to start")
    try:
        yield HttpsCentral(f"https://127.0.0.1:{port}", ca_pem, server, certificates)
    finally:
        server.should_exit = True
        thread.join(10)


def run_provision(url: str, token: str, config_path: Path, *extra: str) -> Result:
    return CliRunner().invoke(
        cli,
        [
            "provision",
            "--central",
            url,
            "--bank",
            "NYC-1",
            "--token",
            token,
            "--config",
            str(config_path),
            *extra,
        ],
    )


@pytest.fixture
def start_sync(clock: FakeClock) -> Iterator[Callable[[NodeConfig], SyncService]]:
    """The node's store and flows, and its sync loop wired as `app.build_sync` wires it, with
    the config's `ca_bundle` given to the client; driven pass by pass or as a thread."""
    made: list[tuple[Node, SyncService]] = []

    def start(config: NodeConfig) -> SyncService:
        assert config.central_url is not None
        node = build_node(
            config.model_copy(update={"central_url": None}),
            boards={"main": SimulatedLockBoard(name="main", lock_count=16, door_delay_s=0.0)},
            clock=clock,
            migrate_in_process=True,
        )
        node.start()
        identity = load_identity(config.data_dir)
        client = CentralClient(
            config.central_url,
            identity,
            clock=lambda: clock().timestamp(),
            timeout_s=config.sync.timeout_s,
            ca_bundle=config.ca_bundle,
        )
        sync = SyncService(
            node.flows,
            client,
            identity,
            # Passes every 50 ms; heartbeat and feed tried again a second after they failed.
            config.sync.model_copy(
                update={"interval_s": 0.05, "heartbeat_s": 1.0, "feed_interval_s": 1.0}
            ),
            data_dir=config.data_dir,
            board_of={c.label: c.board for c in config.compartments},
            version="tls-test",
        )
        made.append((node, sync))
        return sync

    yield start
    for node, sync in made:
        sync.stop()
        node.stop()


def enrolled_config(
    central: HttpsCentral, sessions: sessionmaker[Session], clock: FakeClock, folder: Path
) -> NodeConfig:
    config_path = folder / "node.toml"
    token = issue_token(sessions, clock)
    result = run_provision(central.url, token, config_path, "--ca-bundle", str(central.ca_pem))
    assert result.exit_code == 0, result.output
    return load_config(config_path)


def untrusted_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == SERVICE_LOG and "central's certificate is not trusted" in r.getMessage()
    ]


def test_with_the_ca_bundle_the_node_enrolls_and_syncs_over_https(
    https_central: HttpsCentral,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    start_sync: Callable[[NodeConfig], SyncService],
    tmp_path: Path,
) -> None:
    config = enrolled_config(https_central, sessions, clock, tmp_path)

    assert config.central_url == https_central.url
    assert config.ca_bundle == https_central.ca_pem
    sync = start_sync(config)
    assert sync.run_once(heartbeat=True)
    assert sync.read_cursor() is not None
    node_id = load_identity(config.data_dir).node_id
    with sessions() as session:
        seen = session.get(CentralNode, node_id)
        assert seen is not None and seen.version == "tls-test"


def test_without_the_ca_bundle_enrollment_fails_clearly_and_spends_nothing(
    https_central: HttpsCentral,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    token = issue_token(sessions, clock)
    config_path = tmp_path / "node.toml"

    result = run_provision(https_central.url, token, config_path)

    assert result.exit_code == 1
    assert "provision failed: central's certificate is not trusted: " in result.output
    assert "unable to get local issuer certificate" in result.output
    assert "checked against the system's CA store" in result.output
    assert "pass --ca-bundle" in result.output
    assert "Traceback" not in result.output
    assert not config_path.exists() and not (tmp_path / "data" / KEY_FILE).exists()
    # Refused at the handshake: the one-time token was never sent, so it still works.
    again = run_provision(
        https_central.url, token, config_path, "--ca-bundle", str(https_central.ca_pem)
    )
    assert again.exit_code == 0, again.output


def test_without_the_ca_bundle_sync_logs_the_problem_once_and_keeps_trying(
    https_central: HttpsCentral,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    start_sync: Callable[[NodeConfig], SyncService],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.INFO, logger=SERVICE_LOG)
    config = enrolled_config(https_central, sessions, clock, tmp_path)
    sync = start_sync(config.model_copy(update={"ca_bundle": None}))

    assert not sync.run_once(heartbeat=True)
    assert not sync.run_once(heartbeat=True)

    [record] = untrusted_records(caplog)
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert "unable to get local issuer certificate" in message
    assert f"{https_central.url}, checked against the system's CA store" in message
    assert "set ca_bundle in the node config" in message
    assert "tries again (outbox every 0.05 s, feed every 1.0 s)" in message

    # As a thread, the loop keeps passing at its interval, with no traceback and no new line.
    passes: list[bool] = []
    run_once = sync.run_once

    def counted(*, heartbeat: bool = False, feed: bool = True) -> bool:
        passes.append(run_once(heartbeat=heartbeat, feed=feed))
        return passes[-1]

    monkeypatch.setattr(sync, "run_once", counted)
    sync.start()
    wait_until(lambda: len(passes) >= 3, what="three more passes of the sync loop")
    assert not any(passes)
    assert len(untrusted_records(caplog)) == 1
    assert not [r for r in caplog.records if r.exc_info is not None]


def test_a_certificate_for_another_host_fails_and_sync_recovers_once_it_is_right(
    https_central: HttpsCentral,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    start_sync: Callable[[NodeConfig], SyncService],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.INFO, logger=SERVICE_LOG)
    https_central.present("wrong")
    token = issue_token(sessions, clock)

    result = run_provision(
        https_central.url, token, tmp_path / "node.toml", "--ca-bundle", str(https_central.ca_pem)
    )

    assert result.exit_code == 1
    assert "central's certificate is not trusted: IP address mismatch" in result.output
    assert "--central must name a host that central's certificate is issued for" in result.output

    https_central.present("right")
    config = enrolled_config(https_central, sessions, clock, tmp_path / "node")
    https_central.present("wrong")
    sync = start_sync(config)
    sync.start()
    wait_until(lambda: bool(untrusted_records(caplog)), what="the certificate error in the log")
    [record] = untrusted_records(caplog)
    assert "IP address mismatch" in record.getMessage()
    assert "central_url must name a host" in record.getMessage()
    assert f"checked against the CA bundle {https_central.ca_pem}" in record.getMessage()

    https_central.present("right")
    wait_until(
        lambda: any(r.getMessage() == "central reachable again" for r in caplog.records),
        what="the sync loop to get through once the certificate is right",
    )
    assert sync.read_cursor() is not None
    assert not [r for r in caplog.records if r.exc_info is not None]


def test_a_ca_bundle_that_is_not_there_stops_the_node_at_start(
    https_central: HttpsCentral,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    config = enrolled_config(https_central, sessions, clock, tmp_path)
    config_path = tmp_path / "node.toml"
    missing = tmp_path / "moved" / "central-ca.pem"
    config_path.write_text(config_path.read_text().replace(str(https_central.ca_pem), str(missing)))

    with pytest.raises(ConfigError) as raised:
        load_config(config_path)

    assert f"ca_bundle: {missing}: cannot read it: No such file or directory" in str(raised.value)
    assert str(config_path) in str(raised.value)
    assert config.ca_bundle is not None  # the enrolled config named one: it was moved since


def test_provision_checks_the_ca_bundle_before_spending_the_token(
    https_central: HttpsCentral,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    token = issue_token(sessions, clock)
    not_pem = tmp_path / "not-a-ca.pem"
    not_pem.write_text("hello\n")

    for bundle, message in (
        (tmp_path / "absent.pem", "absent.pem: cannot read it: No such file or directory"),
        (not_pem, "not-a-ca.pem: holds no PEM certificate"),
    ):
        result = run_provision(
            https_central.url, token, tmp_path / "node.toml", "--ca-bundle", str(bundle)
        )
        assert result.exit_code == 1
        assert f"provision failed: --ca-bundle {tmp_path}" in result.output
        assert message in result.output
    result = run_provision(
        "http://127.0.0.1:9", token, tmp_path / "node.toml", "--ca-bundle", str(not_pem)
    )
    assert result.exit_code == 1
    assert "--ca-bundle is for an https:// central URL only" in result.output
    assert not (tmp_path / "node.toml").exists()
    enrolled_config(https_central, sessions, clock, tmp_path)  # the token is still good
