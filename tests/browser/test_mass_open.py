"""Guarded opens in a real Chromium, against a real central server and a real `locker-node run`
process on a simulated board: admin A asks to open every door and nothing opens; admin B
approves on /ops/approvals and the node opens them all; both steps are in the audit log."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from central.models import Compartment, NodeCommand, OpenRequest
from locker_node.store import outbox as node_outbox
from tests.browser.support import WAIT_MS, Network, audit, open_page, screenshot, sign_in
from tests.browser.support import network as start_network
from tests.e2e.harness import BANK, eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIRST = ("first-admin@ops.test", "first-password-0123")
SECOND = ("second-admin@ops.test", "second-password-0123")


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    operators = {FIRST: "admin", SECOND: "admin"}
    with start_network(tmp_path_factory.mktemp("mass-open"), operators) as network:
        yield network


def node_audit(network: Network, action: str) -> list[node_outbox.AuditEntry]:
    with network.node_database() as conn:
        return [e for e in node_outbox.audit_entries(conn) if e.action == action]


def mass_open_commands(network: Network) -> list[NodeCommand]:
    with network.world.sessions() as session:
        return list(
            session.scalars(select(NodeCommand).where(NodeCommand.type == "open_compartments"))
        )


def labels(network: Network) -> list[str]:
    with network.world.sessions() as session:
        return sorted(session.scalars(select(Compartment.label).where(Compartment.bank_id == BANK)))


def test_open_all_waits_for_a_second_admin_then_the_node_opens_every_door(
    network: Network, browser: Browser
) -> None:
    with open_page(browser) as first:
        sign_in(first, network.base, FIRST, f"/ops/banks/{BANK}")
        first.locator("#mass-open-reason").fill("flood warning for the street")
        first.locator("#mass-open-all").click()
        expect(first.locator("#mass-open-status")).to_contain_text("waiting for a second admin")
        pending = first.locator("#mass-open-pending li[data-status='pending']")
        expect(pending).to_have_count(1)
        expect(pending.locator(".countdown")).to_have_text(re.compile(r"^(10:00|9:\d\d) left$"))
        request_id = pending.get_attribute("data-request-id")
        assert request_id is not None
        screenshot(first, "mass-open-requested")
        audit(first, "ops-bank-mass-open", "#mass-open")

        # Refused without approval: no command, nothing opened on the node.
        assert mass_open_commands(network) == []
        assert node_audit(network, "mass_open") == []
        assert node_audit(network, "mass_open_door") == []

        # The requester sees the request on the approvals page, but can only cancel it.
        first.goto(f"{network.base}/ops/approvals")
        own = first.locator(f"#pending-rows tr[data-request-id='{request_id}']")
        expect(own.get_by_role("button", name="Cancel")).to_be_visible()
        expect(own.get_by_role("button", name="Approve")).to_have_count(0)
        audit(first, "ops-approvals")

    with open_page(browser) as second:
        sign_in(second, network.base, SECOND, "/ops/approvals")
        row = second.locator(f"#pending-rows tr[data-request-id='{request_id}']")
        expect(row).to_contain_text(FIRST[0])
        row.get_by_role("button", name="Approve").click()
        expect(second.locator("#decision-dialog")).to_be_visible()
        second.locator("#decision-reason").fill("confirmed with the requester by phone")
        second.locator("#decision-submit").click()

        expect(second.locator("#status")).to_contain_text(
            "done, acknowledged by the node", timeout=WAIT_MS
        )
        decided = second.locator(f"#decided-rows tr[data-request-id='{request_id}']")
        expect(decided).to_have_attribute("data-status", "approved")
        expect(decided.locator("[data-command-status]")).to_have_attribute(
            "data-command-status", "acknowledged", timeout=WAIT_MS
        )
        screenshot(second, "mass-open-approved")

        [command] = mass_open_commands(network)
        with network.world.sessions() as session:
            row_in_db = session.get(OpenRequest, request_id)
            assert row_in_db is not None and row_in_db.command_id == command.id
        opened = eventually(
            lambda: node_audit(network, "mass_open_door") or None, "the node's door entries"
        )
        assert sorted(e.compartment or "" for e in opened) == labels(network)
        assert {e.command_id for e in opened} == {command.id}
        assert all(e.reason == "opened" for e in opened)

        second.goto(f"{network.base}/ops/audit")
        audit_log = second.locator("#audit-rows")
        expect(audit_log).to_contain_text("request mass open")
        expect(audit_log).to_contain_text("approve open request")
        expect(audit_log).to_contain_text(FIRST[0])
        expect(audit_log).to_contain_text(SECOND[0])
