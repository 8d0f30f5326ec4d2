"""Guarded opens in a real Chromium, against a real central server and a real `locker-node run`
process on a simulated board: admin A asks to open every door and nothing opens; admin B
approves on /ops/approvals and the node opens them all; both steps are in the audit log."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import select

from central.models import Compartment, NodeCommand, OpenRequest
from central.ops.accounts import Passwords, add_operator
from locker_node.store import outbox as node_outbox
from locker_node.store.database import database_path, transaction
from locker_node.store.database import make_engine as make_node_engine
from tests.browser.test_ops_dashboard import open_page, screenshot
from tests.e2e.harness import BANK, World, create_world, eventually, provision_node
from tests.locker_node.e2e.nodes import NodeProcess, spawn
from tests.locker_node.e2e.test_kiosk_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIRST = ("first-admin@ops.test", "first-password-0123")
SECOND = ("second-admin@ops.test", "second-password-0123")
WAIT_MS = 20_000
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "central" / "ops" / "frontend" / "node_modules" / "axe-core" / "axe.min.js"
AXE_REPORTS = ROOT / "test-artifacts" / "axe"


@dataclass
class Network:
    world: World
    node: NodeProcess
    config: Path

    @property
    def base(self) -> str:
        return self.world.base

    def node_audit(self, action: str) -> list[node_outbox.AuditEntry]:
        engine = make_node_engine(database_path(self.config.parent / "data"))
        try:
            with transaction(engine) as conn:
                return [e for e in node_outbox.audit_entries(conn) if e.action == action]
        finally:
            engine.dispose()

    def mass_open_commands(self) -> list[NodeCommand]:
        with self.world.sessions() as session:
            return list(
                session.scalars(select(NodeCommand).where(NodeCommand.type == "open_compartments"))
            )

    def labels(self) -> list[str]:
        with self.world.sessions() as session:
            return sorted(
                session.scalars(select(Compartment.label).where(Compartment.bank_id == BANK))
            )


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with create_world(tmp_path_factory.mktemp("mass-open")) as world:
        passwords = Passwords(time_cost=1, memory_kib=1024, parallelism=1)
        with world.sessions.begin() as session:
            for email, password in (FIRST, SECOND):
                add_operator(session, passwords, email, "admin", password, datetime.now(UTC))
        with world.server():
            config, port = provision_node(world)
            node = spawn(config, port=port)
            try:
                with httpx.Client(timeout=5) as kiosk:
                    node.wait_ready(kiosk)
                yield Network(world, node, config)
            finally:
                node.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Page, network: Network, who: tuple[str, str], path: str) -> None:
    page.goto(f"{network.base}{path}")
    expect(page).to_have_url(re.compile(r"/ops/login\?next="))
    page.locator("#email").fill(who[0])
    page.locator("#password").fill(who[1])
    page.locator("#login-submit").click()
    expect(page.locator("#operator-email")).to_have_text(who[0])


def audit_accessibility(page: Page, name: str, scope: str = "document") -> None:
    """axe-core over the page (or the part `scope` selects): no serious or critical violation."""
    page.evaluate(AXE.read_text(encoding="utf-8"))
    violations: list[dict[str, Any]] = page.evaluate(
        "async (scope) => (await axe.run(scope === 'document' ? document : scope,"
        " {resultTypes: ['violations']})).violations",
        scope,
    )
    AXE_REPORTS.mkdir(parents=True, exist_ok=True)
    (AXE_REPORTS / f"{name}.json").write_text(json.dumps(violations, indent=2))
    bad = [
        (v["id"], [node["target"] for node in v["nodes"]])
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == [], bad


def test_open_all_waits_for_a_second_admin_then_the_node_opens_every_door(
    network: Network, browser: Browser
) -> None:
    with open_page(browser) as first:
        sign_in(first, network, FIRST, f"/ops/banks/{BANK}")
        first.locator("#mass-open-reason").fill("flood warning for the street")
        first.locator("#mass-open-all").click()
        expect(first.locator("#mass-open-status")).to_contain_text("waiting for a second admin")
        pending = first.locator("#mass-open-pending li[data-status='pending']")
        expect(pending).to_have_count(1)
        expect(pending.locator(".countdown")).to_have_text(re.compile(r"^(10:00|9:\d\d) left$"))
        request_id = pending.get_attribute("data-request-id")
        assert request_id is not None
        screenshot(first, "mass-open-requested")
        audit_accessibility(first, "ops-bank-mass-open", "#mass-open")

        # Refused without approval: no command, nothing opened on the node.
        assert network.mass_open_commands() == []
        assert network.node_audit("mass_open") == []
        assert network.node_audit("mass_open_door") == []

        # The requester sees the request on the approvals page, but can only cancel it.
        first.goto(f"{network.base}/ops/approvals")
        own = first.locator(f"#pending-rows tr[data-request-id='{request_id}']")
        expect(own.get_by_role("button", name="Cancel")).to_be_visible()
        expect(own.get_by_role("button", name="Approve")).to_have_count(0)
        audit_accessibility(first, "ops-approvals")

    with open_page(browser) as second:
        sign_in(second, network, SECOND, "/ops/approvals")
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

        [command] = network.mass_open_commands()
        with network.world.sessions() as session:
            row_in_db = session.get(OpenRequest, request_id)
            assert row_in_db is not None and row_in_db.command_id == command.id
        opened = eventually(
            lambda: network.node_audit("mass_open_door") or None, "the node's door entries"
        )
        assert sorted(e.compartment or "" for e in opened) == network.labels()
        assert {e.command_id for e in opened} == {command.id}
        assert all(e.reason == "opened" for e in opened)

        second.goto(f"{network.base}/ops/audit")
        audit = second.locator("#audit-rows")
        expect(audit).to_contain_text("request mass open")
        expect(audit).to_contain_text("approve open request")
        expect(audit).to_contain_text(FIRST[0])
        expect(audit).to_contain_text(SECOND[0])
