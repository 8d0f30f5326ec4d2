"""Node updates through real processes: central, `locker-node supervise`, and the operator's
package index served over HTTP from a folder of wheels.

The node starts on this checkout (version A, the project's venv). An admin wants version B: the
node installs it into a fresh venv, switches, and B reports healthy. Then version C, whose
`run` exits at start: the supervisor rolls back to B, central shows `rolled_back` with an
`update_failed` alert, and the node does not try C again.

Offline: the wheels of the project's dependencies are repacked from the distributions installed
in this venv (their RECORD and dist-info, tags included), once per session; the project's own
wheels B and C are built from the source tree by `project_wheel` (the project's build backend
wants a setuptools newer than this venv's, and nothing may be downloaded).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from sqlalchemy import select

from central.config import CentralSettings
from central.models import Node
from central.ops.accounts import Passwords, add_operator
from locker_node.update.state import load_state
from tests.e2e.harness import World, create_world, provision_node
from tests.locker_node.e2e.nodes import LOCKER_NODE, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "locker-network"
VERSION_A, VERSION_B, VERSION_C = metadata.version(PROJECT), "0.2.0", "0.3.0"
PACKAGES = ("central", "locker_node", "carrier_adapters", "locker_wire", "migrations")
SKIPPED_DIRS = {"__pycache__", "frontend", "node_modules"}
VERIFY_TIMEOUT_S = 25
ADMIN, PASSWORD = "admin@update.test", "correct horse battery staple"
# C's fault: its `run` stops before the node starts, every time.
FAULT = ("def run_node(config: NodeConfig) -> None:\n", "    raise SystemExit(3)  # version C\n")
T = TypeVar("T")


def wait_for(attempt: Callable[[], T | None], what: str, timeout_s: float) -> T:
    """Retry until `attempt` gives a value, with a deadline (installs take a while)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = attempt()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


# Wheels -------------------------------------------------------------------------------------------


def _record_line(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def write_wheel(path: Path, files: dict[str, bytes], dist_info: str) -> None:
    """A wheel of `files` (archive name -> content) with its RECORD written last."""
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
            writer.writerow(_record_line(name, data))
        writer.writerow([f"{dist_info}/RECORD", "", ""])
        wheel.writestr(f"{dist_info}/RECORD", record.getvalue())


def runtime_distributions(requirements: list[str]) -> list[metadata.Distribution]:
    """The installed distributions that meet `requirements` (pyproject's, which the wheels of
    this checkout declare), with the extras asked for, all the way down."""
    base_env = default_environment()
    seen: dict[str, metadata.Distribution] = {}
    queue = [(r.name, frozenset(r.extras)) for r in map(Requirement, requirements)]
    done: set[tuple[str, frozenset[str]]] = set()
    while queue:
        wanted, extras = queue.pop()
        key = canonicalize_name(wanted)
        if (key, extras) in done:
            continue
        done.add((key, extras))
        dist = metadata.distribution(wanted)
        seen.setdefault(key, dist)
        for line in dist.requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            applies = marker is None or any(
                marker.evaluate({**base_env, "extra": extra}) for extra in (extras or {""})
            )
            if applies:
                queue.append((requirement.name, frozenset(requirement.extras)))
    return list(seen.values())


def repack(dist: metadata.Distribution, folder: Path) -> Path:
    """An installed distribution back into a wheel: its files from RECORD (scripts and data
    outside site-packages left out: pip makes the scripts again from entry_points.txt)."""
    wheel_text = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip().split("-") for line in wheel_text.splitlines()
            if line.startswith("Tag:")]  # fmt: skip
    # A universal wheel has several Tag lines (py2-none-any, py3-none-any): one compressed set.
    tag = "-".join(".".join(sorted({t[part] for t in tags})) for part in range(3))
    name = canonicalize_name(dist.metadata["Name"]).replace("-", "_")
    path = folder / f"{name}-{dist.version}-{tag}.whl"
    if path.exists():
        return path
    files: dict[str, bytes] = {}
    dist_info = ""
    for file in dist.files or []:
        text = file.as_posix()
        if text.startswith("..") or "__pycache__" in text or text.endswith(".pyc"):
            continue
        if text.endswith(".dist-info/RECORD") or text.endswith(
            ("/INSTALLER", "/REQUESTED", "/direct_url.json")
        ):
            dist_info = text.split("/", 1)[0] if text.endswith("RECORD") else dist_info
            continue
        files[text] = Path(str(dist.locate_file(file))).read_bytes()
    assert dist_info and files, f"{dist.metadata['Name']}: nothing to repack"
    partial = path.with_suffix(".partial")
    write_wheel(partial, files, dist_info)
    partial.rename(path)
    return path


def project_wheel(folder: Path, version: str, *, fault: bool = False) -> Path:
    """This checkout as a wheel of `version` (pure Python); with `fault`, its `run` exits."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dist_info = f"locker_network-{version}.dist-info"
    files: dict[str, bytes] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            parts = set(path.relative_to(ROOT).parts)
            if path.is_dir() or parts & SKIPPED_DIRS or path.suffix == ".pyc":
                continue
            files[path.relative_to(ROOT).as_posix()] = path.read_bytes()
    if fault:
        app = files["locker_node/app.py"].decode()
        assert FAULT[0] in app
        files["locker_node/app.py"] = app.replace(FAULT[0], FAULT[0] + FAULT[1]).encode()
    requires = "".join(f"Requires-Dist: {line}\n" for line in project["dependencies"])
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {PROJECT}\nVersion: {version}\n"
        f"Requires-Python: {project['requires-python']}\n{requires}"
    ).encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    scripts = "".join(f"{name} = {target}\n" for name, target in project["scripts"].items())
    files[f"{dist_info}/entry_points.txt"] = f"[console_scripts]\n{scripts}".encode()
    path = folder / f"locker_network-{version}-py3-none-any.whl"
    write_wheel(path, files, dist_info)
    return path


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """The operator's index: the dependencies' wheels (cached between runs when pytest's cache
    is on) and the project's wheels B and C (built fresh, from this checkout)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dists = runtime_distributions(project["dependencies"])
    key = hashlib.sha256(
        "\n".join(["v2", *sorted(f"{d.metadata['Name']}=={d.version}" for d in dists)]).encode()
    ).hexdigest()[:16]
    cache = getattr(request.config, "cache", None)
    deps = (
        cache.mkdir(f"node-update-wheels-{key}")
        if cache is not None
        else tmp_path_factory.mktemp("wheels-deps")
    )
    for dist in dists:
        repack(dist, deps)
    house = tmp_path_factory.mktemp("wheelhouse")
    for wheel in deps.glob("*.whl"):
        (house / wheel.name).symlink_to(wheel)
    project_wheel(house, VERSION_B)
    project_wheel(house, VERSION_C, fault=True)
    return house


@pytest.fixture(scope="session")
def package_index(wheelhouse: Path) -> Iterator[str]:
    """The wheelhouse over HTTP: a directory listing is a page of links for pip's find-links."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(wheelhouse)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"

    def up() -> bool | None:
        try:
            return httpx.get(url, timeout=1).status_code == 200 or None
        except httpx.TransportError:
            return None

    try:
        wait_for(up, "the package index", 20)
        yield url
    finally:
        server.terminate()
        server.wait(10)


# The network ------------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with create_world(tmp_path) as built:
        yield built


def sign_in_admin(world: World, base: str) -> httpx.Client:
    settings = CentralSettings(database_url=world.url)
    with world.sessions.begin() as session:
        add_operator(
            session, Passwords.from_settings(settings), ADMIN, "admin", PASSWORD,
            datetime.now(UTC),
        )  # fmt: skip
    admin = httpx.Client(base_url=base, timeout=30)
    answer = admin.post("/ops/api/session", json={"email": ADMIN, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    admin.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    return admin


def progress(admin: httpx.Client) -> dict[str, Any]:
    answer = admin.get("/ops/api/updates")
    assert answer.status_code == 200, answer.text
    (node,) = answer.json()["banks"]
    result: dict[str, Any] = node
    return result


def shows(admin: httpx.Client, **expected: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        node = progress(admin)
        if node["state"] == "failed" and expected.get("state") != "failed":
            raise AssertionError(f"the update failed: {node['detail']}")
        return node if all(node[key] == value for key, value in expected.items()) else None

    return check


def heartbeats_seen(world: World) -> datetime:
    with world.sessions() as session:
        seen = session.scalars(select(Node.last_seen_at)).one()
        return seen


def test_a_node_updates_to_b_and_rolls_back_a_failing_c(
    world: World, package_index: str, tmp_path: Path
) -> None:
    with world.server() as base:
        config, _port = provision_node(world)
        updates_root = tmp_path / "updates"
        text = config.read_text().replace(
            "[sync]\ninterval_s = 0.1\n", "[sync]\ninterval_s = 0.1\nheartbeat_s = 1\n"
        )
        text += (
            f'\n[update]\nenabled = true\nfind_links = "{package_index}"\n'
            f'root = "{updates_root}"\nverify_timeout_s = {VERIFY_TIMEOUT_S}\ncompile = false\n'
        )
        config.write_text(text)
        admin = sign_in_admin(world, base)
        log = (config.parent / "supervisor.log").open("wb")
        supervisor = subprocess.Popen(
            [LOCKER_NODE, "supervise", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, cwd=config.parent,
            env={k: v for k, v in os.environ.items() if not k.startswith("NOTIFY_")},
        )  # fmt: skip
        try:
            wait_for(shows(admin, running=VERSION_A, state="idle"), "node A reporting", 60)
            started = time.monotonic()

            to_b = admin.put("/ops/api/updates", json={"version": VERSION_B, "all": True})
            assert to_b.status_code == 200, to_b.text
            node = wait_for(shows(admin, running=VERSION_B, state="healthy"), "B healthy", 300)

            took_b = time.monotonic() - started
            assert (node["wanted"], node["detail"]) == (VERSION_B, None)
            assert (updates_root / "current").resolve() == updates_root / "venvs" / VERSION_B

            to_c = admin.put("/ops/api/updates", json={"version": VERSION_C, "all": True})
            assert to_c.status_code == 200, to_c.text
            rollout_c = to_c.json()["rollouts"][0]["id"]
            node = wait_for(shows(admin, state="rolled_back"), "C rolled back", 300)

            assert (node["running"], node["wanted"]) == (VERSION_B, VERSION_C)
            assert f"version {VERSION_C} exited with code 3" in node["detail"]
            assert (updates_root / "current").resolve() == updates_root / "venvs" / VERSION_B
            (alert,) = admin.get("/ops/api/alerts", params={"type": "update_failed"}).json()[
                "alerts"
            ]
            assert alert["detail"]["state"] == "rolled_back"
            assert alert["detail"]["version"] == VERSION_C
            # B keeps running and reporting, and does not try C again for this rollout.
            seen = heartbeats_seen(world)
            for _ in range(3):
                seen = wait_for(
                    lambda last=seen: (now if (now := heartbeats_seen(world)) > last else None),
                    "another heartbeat", 30,
                )  # fmt: skip
            assert progress(admin)["state"] == "rolled_back"
            state = load_state(updates_root)
            assert (state.state, state.running, state.failed) == (
                "rolled_back", VERSION_B, [(VERSION_C, rollout_c)],
            )  # fmt: skip
            installs = (updates_root / "logs" / f"install-{VERSION_C}.log").read_text()
            assert installs.count("pip install") == 1 or installs.count("-m pip") == 1
            print(f"\nA -> B took {took_b:.0f} s; whole test {time.monotonic() - started:.0f} s")
        finally:
            admin.close()
            supervisor.terminate()
            code = supervisor.wait(60)
            log.close()
        assert code == 0, (config.parent / "supervisor.log").read_text()[-5000:]
        assert json.loads((updates_root / "update-state.json").read_text())["pending"] is None
