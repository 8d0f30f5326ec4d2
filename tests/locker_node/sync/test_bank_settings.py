"""The bank's settings through the sync loop: the node sends the version it has, and applies the
`bank` that central's feed carries when its own differ.

Central's real app answers the feed; what it says of the bank is played by `BankFeed`, which
writes `bank` into the feed's answers as central does (only when the node's version differs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest

from locker_wire.schemas import FeedBank
from tests.locker_node.bank_settings import feed_bank
from tests.locker_node.sync.conftest import SyncedNode


@dataclass
class BankFeed:
    """Central's side of the bank settings in the feed."""

    bank: FeedBank | None = None
    asked: list[int | None] = field(default_factory=list)  # settings_version of each feed

    def install(self, node: SyncedNode) -> None:
        passing = node.transport.handle_request

        def handle(request: httpx.Request) -> httpx.Response:
            response = passing(request)
            if not request.url.path.endswith("/v1/node/feed") or response.status_code != 200:
                return response
            sent = request.url.params.get("settings_version")
            version = None if sent is None else int(sent)
            self.asked.append(version)
            page = json.loads(response.content)
            changed = self.bank is not None and self.bank.version != version
            page["bank"] = self.bank.model_dump(mode="json") if changed and self.bank else None
            return httpx.Response(200, json=page)

        node.transport.handle_request = handle  # type: ignore[method-assign]


@pytest.fixture
def node(make_node: Callable[..., SyncedNode]) -> SyncedNode:
    return make_node()


@pytest.fixture
def central(node: SyncedNode) -> BankFeed:
    feed = BankFeed()
    feed.install(node)
    return feed


def test_the_node_sends_its_version_and_applies_what_central_sends(
    node: SyncedNode, central: BankFeed
) -> None:
    flows = node.node.flows
    central.bank = feed_bank(3, pickup_hours=24, allow_walk_up=True, maintenance="new doors")

    assert node.sync.run_once()

    assert central.asked[0] is None  # a node that has none asks for them
    assert flows.settings_version() == 3
    assert (flows.policy.pickup_hold, flows.policy.allow_walk_up) == (timedelta(hours=24), True)
    status = node.kiosk.get("/api/status").json()
    assert status["maintenance"]["reason"] == "new doors"
    assert status["settings"]["version"] == 3

    assert node.sync.run_once()

    assert central.asked[-1] == 3  # and then the version it has: nothing comes again
    assert flows.settings_version() == 3


def test_a_change_at_central_reaches_the_node_on_its_next_pass(
    node: SyncedNode, central: BankFeed
) -> None:
    central.bank = feed_bank(1, maintenance="new doors")
    assert node.sync.run_once()

    central.bank = feed_bank(2, pickup_hours=120)
    assert node.sync.run_once()

    status = node.kiosk.get("/api/status").json()
    assert status["maintenance"] is None
    assert status["settings"]["pickup_hours"] == 120
    assert node.node.flows.policy.pickup_hold == timedelta(hours=120)


def test_settings_stay_in_force_while_central_is_unreachable(
    node: SyncedNode, central: BankFeed
) -> None:
    central.bank = feed_bank(5, maintenance="new doors")
    assert node.sync.run_once()

    node.transport.down = True
    assert not node.sync.run_once()

    assert node.kiosk.get("/api/status").json()["maintenance"]["reason"] == "new doors"
    assert node.node.flows.settings_version() == 5


def test_a_node_that_has_no_settings_leaves_the_parameter_out(
    node: SyncedNode, central: BankFeed
) -> None:
    assert node.sync.run_once()

    assert central.asked == [None]
    assert node.node.flows.settings_version() is None
    assert node.kiosk.get("/api/status").json()["settings"] is None
