"""`locker-node provision` and accessible doors: written from central's layout, reported back
when the node enrolls again, and sent only when true so an older central still enrolls it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from locker_node.config import load_config
from locker_node.sync.provision import provision
from tests.central.banks.test_accessible_banks import accessible_labels, add_accessible_bank
from tests.central.conftest import World
from tests.central.nodes.support import issue_token
from tests.clock import FakeClock
from tests.locker_node.sync.conftest import CentralTransport


class Recording(CentralTransport):
    """Central's app, keeping the bodies the node sent to enroll."""

    def __init__(self, client: TestClient) -> None:
        super().__init__(client)
        self.enrollments: list[dict[str, object]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/enroll"):
            self.enrollments.append(json.loads(request.content))
        return super().handle_request(request)


def test_provision_writes_which_doors_are_accessible(
    client: TestClient,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    world: World,
    tmp_path: Path,
) -> None:
    add_accessible_bank(sessions, clock, accessible="A02,A05")
    config_path = tmp_path / "node.toml"

    done = provision(
        central_url="http://central",
        bank_id="ADA-1",
        token=issue_token(sessions, clock, "ADA-1"),
        config_path=config_path,
        transport=CentralTransport(client),
    )

    assert [c.label for c in done.enrollment.compartments if c.accessible] == ["A02", "A05"]
    config = load_config(config_path)
    assert [c.label for c in config.compartments if c.accessible] == ["A02", "A05"]
    assert config_path.read_text().count("accessible = true") == 2


def test_enrolling_again_reports_the_doors_the_installer_marked(
    client: TestClient,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    world: World,
    tmp_path: Path,
) -> None:
    add_accessible_bank(sessions, clock, accessible="A02")
    config_path = tmp_path / "node.toml"
    transport = Recording(client)
    provision(
        central_url="http://central",
        bank_id="ADA-1",
        token=issue_token(sessions, clock, "ADA-1"),
        config_path=config_path,
        transport=transport,
    )
    # The installer finds A02 mounted too high and A04 within reach, and enrolls again.
    text = config_path.read_text().replace("lock = 2\naccessible = true\n", "lock = 2\n")
    text = text.replace("lock = 4\n", "lock = 4\naccessible = true\n")
    config_path.write_text(text)
    (tmp_path / "data").rename(tmp_path / "old-data")

    again = provision(
        central_url="http://central",
        bank_id="ADA-1",
        token=issue_token(sessions, clock, "ADA-1"),
        config_path=config_path,
        transport=transport,
    )

    reported = transport.enrollments[-1]["compartments"]
    assert isinstance(reported, list)
    # Only the accessible door carries the flag: the others travel in the earlier shape.
    assert [c for c in reported if "accessible" in c] == [
        {"label": "A04", "size": "M", "accessible": True}
    ]
    assert {"label": "A02", "size": "S"} in reported
    assert accessible_labels(sessions, "ADA-1") == ["A04"]
    assert [c.label for c in again.enrollment.compartments if c.accessible] == ["A04"]
    assert [c.label for c in load_config(config_path).compartments if c.accessible] == ["A04"]
