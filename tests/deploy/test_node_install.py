"""deploy/node/install.sh run for real, as root, in a fresh Debian 12 root (debootstrap + chroot).

The root is a `debootstrap --variant=minbase bookworm` with the script's Debian packages (the
node's and the kiosk's, cage and Chromium) installed by `install.sh --packages-only`. It is
built once (it needs Debian's mirror) and cached as a tarball,
`/var/cache/locker-test/debootstrap-bookworm.tar` (`LOCKER_TEST_CACHE` moves the folder), keyed
by the script's package lines: changing them builds it again. pip keeps its cache beside it,
where the network lets it cache. Each run unpacks the tarball, builds a wheel of this checkout
and, in the chroot, runs `install.sh --no-kiosk --config-only --source <wheel>` twice (the
second run must change nothing), then twice with a token from a real central on this machine
(the node enrolls once), then once with the kiosk; pip fetches the dependencies from PyPI.
Measured here: 2 minutes with the cache to build (75 s of it the root), 1 minute with it.

Needs root, debootstrap, chroot, unshare and a mount namespace; skipped without them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from central.nodes.enrollment import issue_enrollment_token
from locker_node.store.database import DATABASE_FILE
from tests.e2e.harness import BANK, create_world

pytestmark = [pytest.mark.deploy, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "deploy" / "node" / "install.sh"
SUITE, VARIANT, MIRROR = "bookworm", "minbase", "http://deb.debian.org/debian"
CACHE = Path(os.environ.get("LOCKER_TEST_CACHE", "/var/cache/locker-test"))
ROOT_TAR = CACHE / f"debootstrap-{SUITE}.tar"
ROOT_KEY = CACHE / f"debootstrap-{SUITE}.key"
PIP_CACHE = CACHE / "pip"
# The environment inside the chroot: nothing of this machine's (its venv, its pip settings).
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
NODE_USER = "locker-node"
CONFIG = "etc/locker-node/node.toml"
KIOSK_PORT = 8181
# Left out of the copy the wheel is built from: environments, caches, build output.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "var", "build", "dist", "node_modules", "test-artifacts", "*.egg-info",
    "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis",
)  # fmt: skip


def why_not_here() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux"
    for tool in ("debootstrap", "chroot", "unshare", "mount", "tar"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    with tempfile.TemporaryDirectory() as probe:
        mounted = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "x", probe],
            capture_output=True,
            check=False,
        )
    if mounted.returncode != 0:
        return "no mount namespace here (unshare --mount and mount refused)"
    return None


def root_key() -> str:
    """The cached root's key: what debootstrap made it from and the script's package lines."""
    packages = re.findall(r"^(?:NODE|KIOSK)_PACKAGES=.*$", INSTALL.read_text(), re.MULTILINE)
    assert packages, "install.sh lost its package lines"
    text = "\n".join([SUITE, VARIANT, MIRROR, *packages])
    return hashlib.sha256(text.encode()).hexdigest()


def run(argv: list[str], *, timeout_s: float, env: dict[str, str] | None = None) -> str:
    """Run a command; its output, or an AssertionError carrying the output."""
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=timeout_s, env=env
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{output}"
    return output


def in_chroot(root: Path, *argv: str, timeout_s: float = 600) -> str:
    """`argv` inside `root`, with /proc and pip's cache mounted in a private mount namespace:
    whatever happens, the mounts go with the namespace and none is left on this machine."""
    pip_cache = root / "root/.cache/pip"
    pip_cache.mkdir(parents=True, exist_ok=True)
    script = (
        'mount -t proc proc "$1/proc" && mount --bind "$2" "$1/root/.cache/pip" '
        '&& shift 2 && exec chroot "$@"'
    )
    namespace = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
    return run(
        [*namespace, str(root), str(PIP_CACHE), str(root), *argv],
        timeout_s=timeout_s,
        env=CHROOT_ENV,
    )


def assert_nothing_mounted_under(path: Path) -> None:
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    inside = [mount for mount in mounts if mount == str(path) or mount.startswith(f"{path}/")]
    assert not inside, f"still mounted, not deleting {path}: {inside}"


def build_root(target: Path) -> None:
    """debootstrap, then the script's packages through the script itself; cache the result."""
    CACHE.mkdir(parents=True, exist_ok=True)
    run(["debootstrap", f"--variant={VARIANT}", SUITE, str(target), MIRROR], timeout_s=600)
    shutil.copy(INSTALL, target / "tmp/install.sh")
    in_chroot(target, "/tmp/install.sh", "--packages-only")  # the kiosk's too
    in_chroot(target, "apt-get", "clean")
    (target / "tmp/install.sh").unlink()
    assert_nothing_mounted_under(target)
    partial = ROOT_TAR.with_suffix(".tar.partial")
    run(["tar", "-C", str(target), "--numeric-owner", "-cf", str(partial), "."], timeout_s=300)
    os.replace(partial, ROOT_TAR)
    ROOT_KEY.write_text(root_key() + "\n")


def fresh_root(target: Path) -> str:
    """A Debian root with the script's packages in `target`; how it was had."""
    PIP_CACHE.mkdir(parents=True, exist_ok=True)
    key = root_key()
    if ROOT_TAR.exists() and ROOT_KEY.exists() and ROOT_KEY.read_text().strip() == key:
        target.mkdir()
        run(["tar", "-C", str(target), "--numeric-owner", "-xf", str(ROOT_TAR)], timeout_s=300)
        return "cached"
    build_root(target)
    return "built"


def trust_this_machines_cas(root: Path) -> None:
    """This machine's own CAs (/usr/local/share/ca-certificates, Debian's place for them) in
    the root too: behind a TLS-inspecting proxy, pip in the chroot needs them to reach PyPI,
    exactly as a bank's computer on such a network would."""
    local = sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))
    if not local:
        return
    for certificate in local:
        shutil.copy(certificate, root / "usr/local/share/ca-certificates" / certificate.name)
    in_chroot(root, "update-ca-certificates")


def build_wheel(folder: Path) -> Path:
    """A wheel of this checkout, built from a copy so that no build/ lands in the work tree."""
    source = folder / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE, symlinks=True)
    out = folder / "wheel"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
        timeout_s=300,
    )
    (wheel,) = out.glob("locker_network-*.whl")
    return wheel


@dataclass
class Installed:
    """The root after the installs, and what each install said."""

    root: Path
    outputs: dict[str, str]
    # The config as the --config-only installs left it, before the enrollment replaced it.
    standalone_config: str
    standalone_config_stat: os.stat_result
    central_port: int
    kiosk_unit_before_kiosk: bool

    def passwd(self, name: str) -> list[str]:
        for line in (self.root / "etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return fields
        raise AssertionError(f"no user {name} in the root")

    def uid(self, name: str) -> int:
        return int(self.passwd(name)[2])

    def group_members(self, group: str) -> list[str]:
        for line in (self.root / "etc/group").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == group:
                return [member for member in fields[3].split(",") if member]
        raise AssertionError(f"no group {group} in the root")


def install_runs(root: Path, wheel: str, folder: Path, timings: dict[str, float]) -> Installed:
    """install.sh --no-kiosk --config-only twice; then twice with a token from a real central
    (this machine's, on 127.0.0.1: the chroot shares its network); then with the kiosk."""
    argv = ["/tmp/deploy/node/install.sh", "--bank", BANK, "--source", wheel]
    offline = [*argv, "--no-kiosk", "--central", "https://central.example.net", "--config-only"]
    outputs: dict[str, str] = {}
    for name in ("install", "install again"):
        mark = time.monotonic()
        outputs[name] = in_chroot(root, *offline)
        timings[name] = time.monotonic() - mark
    config = root / CONFIG
    standalone = (config.read_text(), config.stat())
    (folder / "central").mkdir()
    with create_world(folder / "central") as world, world.server():
        with world.sessions.begin() as session:
            token = issue_enrollment_token(session, BANK, datetime.now(UTC))
        online = [*argv, "--central", world.base]
        mark = time.monotonic()
        outputs["enroll"] = in_chroot(root, *online, "--no-kiosk", "--token", token)
        outputs["enroll again"] = in_chroot(root, *online, "--no-kiosk", "--token", token)
        timings["enroll, twice"] = time.monotonic() - mark
    kiosk_before = (root / "etc/systemd/system/locker-kiosk.service").exists()
    # The installer's own edit: the kiosk on another port, which the screen must follow.
    config.write_text(config.read_text() + f"\n[kiosk]\nport = {KIOSK_PORT}\n")
    mark = time.monotonic()
    outputs["kiosk"] = in_chroot(root, *online)
    timings["kiosk"] = time.monotonic() - mark
    return Installed(root, outputs, standalone[0], standalone[1], world.port, kiosk_before)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    reason = why_not_here()
    if reason is not None:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("install")
    root = folder / "root"
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        how = fresh_root(root)
        timings[f"root ({how})"] = time.monotonic() - started
        trust_this_machines_cas(root)
        shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
        mark = time.monotonic()
        wheel = build_wheel(folder)
        shutil.copy(wheel, root / "tmp" / wheel.name)
        shutil.copytree(ROOT / "deploy" / "node", root / "tmp/deploy/node")
        timings["wheel"] = time.monotonic() - mark
        result = install_runs(root, f"/tmp/{wheel.name}", folder, timings)
        timings["total"] = time.monotonic() - started
        # Shown with -s, and in the report of a failure.
        print("timings (s):", {name: round(value, 1) for name, value in timings.items()})
        yield result
    finally:
        if root.exists():
            assert_nothing_mounted_under(root)
            shutil.rmtree(root)


def test_the_node_user_exists_with_serial_and_gpio_access(installed: Installed) -> None:
    _, _, uid, _, _, home, shell = installed.passwd(NODE_USER)

    assert int(uid) < 1000, "a system user"
    assert (home, shell) == ("/var/lib/locker-node", "/usr/sbin/nologin")
    assert NODE_USER in installed.group_members("dialout")
    assert NODE_USER in installed.group_members("gpio")  # created: Debian has no gpio group


def test_the_venvs_locker_node_runs_inside_the_root(installed: Installed) -> None:
    output = in_chroot(installed.root, "/opt/locker-node/venv/bin/locker-node", "--help")

    for command in ("run", "provision", "simulate-board"):
        assert command in output


def test_the_units_are_installed_and_enabled_for_boot(installed: Installed) -> None:
    system = installed.root / "etc/systemd/system"
    wants = system / "multi-user.target.wants" / "locker-node.service"

    assert (system / "locker-node.service").read_bytes() == (
        ROOT / "deploy/node/locker-node.service"
    ).read_bytes()
    assert wants.is_symlink()
    assert os.readlink(wants) == "/etc/systemd/system/locker-node.service"
    assert not installed.kiosk_unit_before_kiosk, "--no-kiosk"
    assert (installed.root / "etc/udev/rules.d/99-locker-rs485.rules").is_file()
    assert (installed.root / "etc/systemd/journald.conf.d/locker.conf").is_file()
    assert "nothing started" in installed.outputs["install"]


@pytest.mark.parametrize("unit", ["locker-node.service", "locker-kiosk.service"])
def test_the_installed_units_verify_against_what_was_installed(
    installed: Installed, unit: str
) -> None:
    """ExecStart= (the venv's locker-node, Debian's cage) and the rest, against the real tree."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("needs systemd-analyze")

    output = run([analyze, "verify", "--man=no", f"--root={installed.root}", unit], timeout_s=60)

    assert output == ""


def test_the_config_is_the_node_users_and_nobody_elses(installed: Installed) -> None:
    uid = installed.uid(NODE_USER)
    data_dir = (installed.root / "var/lib/locker-node").stat()

    for config in (installed.standalone_config_stat, (installed.root / CONFIG).stat()):
        assert config.st_uid == uid
        assert stat.S_IMODE(config.st_mode) in (0o600, 0o640)
    assert (data_dir.st_uid, stat.S_IMODE(data_dir.st_mode)) == (uid, 0o750)
    assert f'bank_id = "{BANK}"' in installed.standalone_config
    assert "NOT enrolled" in installed.standalone_config


def test_running_it_again_changes_nothing_it_should_keep(installed: Installed) -> None:
    again = installed.outputs["install again"]

    assert f"config: /{CONFIG} exists, kept" in again
    assert "created" not in again.replace("Created symlink", "")
    assert "locker-network: 0.1.0 in /opt/locker-node/venv" in again


def test_a_token_enrolls_the_node_once_and_its_key_is_its_own(installed: Installed) -> None:
    key = (installed.root / "var/lib/locker-node/node-identity.pem").stat()
    config = (installed.root / CONFIG).read_text()

    assert (
        f"enrolling with http://127.0.0.1:{installed.central_port}" in installed.outputs["enroll"]
    )
    assert (key.st_uid, stat.S_IMODE(key.st_mode)) == (installed.uid(NODE_USER), 0o600)
    assert f'central_url = "http://127.0.0.1:{installed.central_port}"' in config
    assert config.count("[[compartments]]") == 4, "the bank's S:2,M:2 as central knows it"
    # The token is spent: a second run must not try it again.
    assert "already enrolled" in installed.outputs["enroll again"]
    assert "enrolling" not in installed.outputs["enroll again"]


def test_the_installed_node_creates_its_store_as_its_user(installed: Installed) -> None:
    """The store's migrations ship with the wheel, and the data dir is the node's to write."""
    in_chroot(
        installed.root,
        *("runuser", "-u", NODE_USER, "--", "/opt/locker-node/venv/bin/locker-node"),
        *("seed-demo", "--config", f"/{CONFIG}", "--parcels", "0"),
    )

    database = (installed.root / "var/lib/locker-node" / DATABASE_FILE).stat()
    assert database.st_uid == installed.uid(NODE_USER)


def test_the_kiosk_shows_the_configured_port_on_tty1_instead_of_a_login(
    installed: Installed,
) -> None:
    system = installed.root / "etc/systemd/system"
    unit = (system / "locker-kiosk.service").read_text()
    wants = system / "multi-user.target.wants" / "locker-kiosk.service"

    assert f"http://127.0.0.1:{KIOSK_PORT}/\n" in unit and ":8080/" not in unit
    assert os.readlink(wants) == "/etc/systemd/system/locker-kiosk.service"
    # Debian enables a login prompt on tty1; the installer took it away.
    assert "getty.target.wants/getty@tty1.service" in installed.outputs["kiosk"]
    assert not (system / "getty.target.wants" / "getty@tty1.service").exists()
    for group in ("video", "render", "input"):
        assert "locker-kiosk" in installed.group_members(group)
    home = (installed.root / "var/lib/locker-kiosk").stat()
    assert home.st_uid == installed.uid("locker-kiosk")
    # PAMName=login opens a logind session only through pam_systemd.
    session = (installed.root / "etc/pam.d/common-session").read_text()
    assert "pam_systemd.so" in session
    assert (installed.root / "usr/bin/chromium").exists()
