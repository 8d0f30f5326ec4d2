"""What the browser tests share: the machine's Chromium, a page whose console errors fail the
test, sign-in, screenshots, the axe-core audit, and the worlds the pages run against (central
alone with its operators, or central with a real `locker-node run` process).

The fixtures built on these (`browser`, `page`) are in conftest.py; the kiosk's tests in
tests/locker_node/e2e launch Chromium through `launch_chromium` too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from sqlalchemy import Connection

from central.banks.service import NewBank
from central.ops.accounts import Passwords, add_operator
from locker_node.store.database import database_path, transaction
from locker_node.store.database import make_engine as make_node_engine
from tests.e2e.harness import World, create_world, provision_node
from tests.locker_node.e2e.nodes import NodeProcess, spawn

CHROMIUM = "/usr/bin/chromium"  # the machine's; Playwright never downloads one here
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
AXE = ROOT / "central" / "ops" / "frontend" / "node_modules" / "axe-core" / "axe.min.js"
AXE_REPORTS = ROOT / "test-artifacts" / "axe"
WAIT_MS = 20_000  # node sync, event application and one poll of a page fit well within this
DESKTOP = {"width": 1360, "height": 900}
# The accounts' own hashing, with cheap parameters: sign-in stays quick in tests.
QUICK_PASSWORDS = Passwords(time_cost=1, memory_kib=1024, parallelism=1)

Operators = Mapping[tuple[str, str], str]  # (email, password) -> role
Allowed = Callable[[ConsoleMessage], bool]  # a console error the test expects


@contextmanager
def launch_chromium() -> Iterator[Browser]:
    """The machine's Chromium, headless. Playwright's sync API allows one instance per thread
    at a time: whoever holds this must let go before another test starts its own."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def source(message: ConsoleMessage) -> str:
    """The URL a console message is about (or comes from)."""
    return str(message.location.get("url", ""))


@contextmanager
def open_page(
    browser: Browser,
    *,
    viewport: Mapping[str, int] = DESKTOP,
    timezone_id: str = "UTC",
    permissions: Sequence[str] = (),
    allow: Allowed | None = None,
) -> Iterator[Page]:
    """A fresh browser profile. A console error (a CSP refusal, a script error, a failed
    request) or an uncaught exception in the page fails the test, but for the console errors
    `allow` says the test expects (the browser logging a refusal whose page is under test)."""
    context = browser.new_context(
        viewport={"width": viewport["width"], "height": viewport["height"]},
        locale="en-US",
        timezone_id=timezone_id,
    )
    if permissions:
        context.grant_permissions(list(permissions))
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not (allow is not None and allow(message)):
            errors.append(f"{message.text} at {source(message)}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert errors == []


def screenshot(
    page: Page,
    name: str,
    *,
    full_page: bool = True,
    animations: Literal["allow", "disabled"] = "allow",
) -> None:
    """test-artifacts/screenshots/<name>.png"""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=full_page, animations=animations)


def sign_in(page: Page, base: str, who: tuple[str, str], path: str = "/ops") -> None:
    """Asks for `path` signed out, signs in on the login page it is sent to, and lands there."""
    page.goto(f"{base}{path}")
    expect(page).to_have_url(re.compile(r"/ops/login\?next="))
    page.locator("#email").fill(who[0])
    page.locator("#password").fill(who[1])
    page.locator("#login-submit").click()
    expect(page.locator("#operator-email")).to_have_text(who[0])
    expect(page).to_have_url(f"{base}{path}")


def audit(page: Page, name: str, scope: str = "document") -> None:
    """axe-core over the page (or the part the selector `scope` names): no serious or critical
    violation. The report goes to test-artifacts/axe/<name>.json."""
    page.evaluate(AXE.read_text(encoding="utf-8"))
    report: list[dict[str, Any]] = page.evaluate(
        "async (scope) => (await axe.run(scope === 'document' ? document : scope,"
        " {resultTypes: ['violations']})).violations",
        scope,
    )
    AXE_REPORTS.mkdir(parents=True, exist_ok=True)
    (AXE_REPORTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    bad = [
        (v["id"], v["impact"], [node["target"] for node in v["nodes"]])
        for v in report
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == [], bad


def add_operators(world: World, operators: Operators) -> None:
    now = datetime.now(UTC)
    with world.sessions.begin() as session:
        for (email, password), role in operators.items():
            add_operator(session, QUICK_PASSWORDS, email, role, password, now)


@contextmanager
def serving(world: World, env: Mapping[str, str] | None = None) -> Iterator[World]:
    """Central's real server for `world`, started with `env` added to its environment (the
    server's environment is this process's: see tests.e2e.harness.central_server)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        with world.server():
            yield world


@contextmanager
def central(
    tmp: Path,
    operators: Operators,
    *,
    banks: Sequence[NewBank] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[World]:
    """A central server alone (no node process) with `operators` and `banks` (by default the
    harness's one bank)."""
    with create_world(tmp, banks) as world:
        add_operators(world, operators)
        with serving(world, env):
            yield world


@dataclass
class Network:
    """Central and the bank's enrolled `locker-node run` process on a simulated board."""

    world: World
    node: NodeProcess
    kiosk: httpx.Client  # for the node's own HTTP API
    config: Path

    @property
    def base(self) -> str:
        return self.world.base

    @contextmanager
    def node_database(self) -> Iterator[Connection]:
        """A transaction on the node's own SQLite database."""
        engine = make_node_engine(database_path(self.config.parent / "data"))
        try:
            with transaction(engine) as conn:
                yield conn
        finally:
            engine.dispose()


@contextmanager
def network(
    tmp: Path,
    operators: Operators,
    *,
    banks: Sequence[NewBank] = (),
    before_node: Callable[[World], None] | None = None,
) -> Iterator[Network]:
    """`central(...)`, then `before_node` against the running server, then the first bank's
    node provisioned, started and ready."""
    with central(tmp, operators, banks=banks) as world:
        if before_node is not None:
            before_node(world)
        config, port = provision_node(world)
        node = spawn(config, port=port)
        try:
            with httpx.Client(timeout=5) as kiosk:
                node.wait_ready(kiosk)
                yield Network(world, node, kiosk, config)
        finally:
            node.stop()
