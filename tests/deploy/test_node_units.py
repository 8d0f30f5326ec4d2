"""deploy/node/ checked by the tools that will read it: systemd-analyze, udev's grammar, bash."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import typer

from locker_node.cli import app as node_cli
from locker_node.config import KioskConfig

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / "deploy" / "node"
NODE_UNIT = NODE / "locker-node.service"
KIOSK_UNIT = NODE / "locker-kiosk.service"
INSTALL = NODE / "install.sh"
# Every unit under deploy/ (central's too, read only), wherever it sits.
UNITS = sorted((ROOT / "deploy").rglob("*.service"))
HOST_UNITS = next(
    (
        path
        for path in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
        if path.is_dir()
    ),
    None,
)
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None or HOST_UNITS is None, reason="systemd-analyze and systemd's units"
)
EXEC_KEY = re.compile(r"^Exec(Start|StartPre|StartPost|Stop|StopPost|Reload|Condition)=(.*)$")


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file by key, across sections, in order."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def exec_paths(path: Path) -> list[str]:
    """The executables a unit starts, without systemd's -@:+! prefixes."""
    paths = []
    for line in path.read_text().splitlines():
        match = EXEC_KEY.match(line)
        if match:
            paths.append(shlex.split(match.group(2))[0].lstrip("-@:+!"))
    return paths


def fake_root(tmp_path: Path, units: list[Path]) -> Path:
    """A root for `systemd-analyze --root`: the host's own units, the units under test in
    /etc/systemd/system, and stub executables where the units expect the real ones (the node's
    venv and cage are not on this machine)."""
    if HOST_UNITS is None:
        raise AssertionError("no systemd units on this machine")
    root = tmp_path / "root"
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in units:
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
        for executable in exec_paths(unit):
            stub = root / executable.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\n")
            stub.chmod(0o755)
    return root


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS, ids=[unit.name for unit in UNITS])
def test_systemd_analyze_verifies_the_unit_without_a_word(unit: Path, tmp_path: Path) -> None:
    root = fake_root(tmp_path, UNITS)

    result = subprocess.run(
        [SYSTEMD_ANALYZE or "", "verify", "--man=no", f"--root={root}", unit.name],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    # An unknown key or a bad value is only a warning to systemd (exit 0): none is allowed.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_systemd_analyze
def test_the_node_unit_is_hardened(tmp_path: Path) -> None:
    root = fake_root(tmp_path, [NODE_UNIT])

    result = subprocess.run(
        [
            SYSTEMD_ANALYZE or "",
            "security",
            "--offline=yes",
            "--threshold=20",  # tenths: an exposure of 2.0 at most ("OK")
            f"--root={root}",
            NODE_UNIT.name,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_the_node_unit_runs_the_real_cli_under_systemd_watchdog_with_its_devices() -> None:
    settings = unit_settings(NODE_UNIT)
    argv = shlex.split(settings["ExecStart"][0])

    assert argv[0] == "/opt/locker-node/venv/bin/locker-node"
    # `supervise`: `run` itself unless the config turns node updates on.
    assert argv[1:] == ["supervise", "--config", "/etc/locker-node/node.toml"]
    # ... and parse as `locker-node supervise` parses them (nothing runs).
    group = typer.main.get_command(node_cli)
    parent = group.make_context("locker-node", argv[1:])
    run = group.get_command(parent, argv[1])  # type: ignore[attr-defined]
    assert run is not None
    with run.make_context(argv[1], argv[2:], parent=parent) as context:
        assert context.params == {"config": Path("/etc/locker-node/node.toml")}

    assert settings["Type"] == ["notify"] and settings["NotifyAccess"] == ["main"]
    assert settings["WatchdogSec"] == ["30s"]
    assert settings["User"] == ["locker-node"]
    assert settings["SupplementaryGroups"] == ["dialout gpio"]
    assert settings["StateDirectory"] == ["locker-node"]
    # Serial ports and GPIO must stay reachable.
    assert settings.get("PrivateDevices", ["no"]) in (["no"], ["false"])
    allowed = {value.split()[0] for value in settings["DeviceAllow"]}
    assert {"char-ttyUSB", "char-gpiochip", "char-gpiomem"} <= allowed
    assert settings["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]


def test_the_kiosk_shows_the_nodes_default_kiosk_port_on_tty1() -> None:
    settings = unit_settings(KIOSK_UNIT)
    argv = shlex.split(settings["ExecStart"][0])

    assert argv[:3] == ["/usr/bin/cage", "-d", "--"]
    assert argv[3] == "/usr/bin/chromium" and "--kiosk" in argv
    assert argv[-1] == f"http://127.0.0.1:{KioskConfig().port}/"
    # install.sh rewrites this exact URL for another port.
    assert "http://127.0.0.1:8080/" in INSTALL.read_text()
    assert settings["TTYPath"] == ["/dev/tty1"] and settings["PAMName"] == ["login"]
    assert "getty@tty1.service" in settings["Conflicts"]
    assert settings["User"] == ["locker-kiosk"] and settings["Restart"] == ["always"]


# udev's rule grammar (udev(7)): comma-separated KEY[{attr}]OP"value" pairs.
UDEV_PAIR = re.compile(r'\s*([A-Z]+)(\{[^}]+\})?\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*')
UDEV_MATCH_KEYS = {
    "ACTION", "DEVPATH", "KERNEL", "KERNELS", "NAME", "SYMLINK", "SUBSYSTEM", "SUBSYSTEMS",
    "DRIVER", "DRIVERS", "ATTR", "ATTRS", "SYSCTL", "ENV", "CONST", "TAG", "TAGS", "TEST",
    "PROGRAM", "RESULT",
}  # fmt: skip
UDEV_ASSIGN_KEYS = {
    "NAME", "SYMLINK", "OWNER", "GROUP", "MODE", "SECLABEL", "ATTR", "SYSCTL", "ENV", "TAG",
    "RUN", "LABEL", "GOTO", "IMPORT", "OPTIONS",
}  # fmt: skip


def udev_rules(path: Path) -> list[list[tuple[str, str, str]]]:
    """Each rule as (key, operator, value) triples; an AssertionError for a malformed one."""
    rules = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pairs = []
        for part in line.split(","):
            match = UDEV_PAIR.fullmatch(part)
            assert match, f'{path.name}:{number}: not KEY OP "value": {part!r}'
            key, _attr, operator, value = match.groups()
            known = UDEV_MATCH_KEYS if operator in ("==", "!=") else UDEV_ASSIGN_KEYS
            assert key in known, f"{path.name}:{number}: {key}{operator} is not udev's"
            pairs.append((key, operator, value))
        rules.append(pairs)
    return rules


@pytest.mark.parametrize("rules", sorted(NODE.glob("*.rules")), ids=lambda path: path.name)
def test_the_udev_rules_parse(rules: Path, tmp_path: Path) -> None:
    assert udev_rules(rules)
    udevadm = shutil.which("udevadm")
    help_text = "" if udevadm is None else subprocess.run(
        [udevadm, "--help"], capture_output=True, text=True, check=False
    ).stdout  # fmt: skip
    if udevadm is not None and re.search(r"^\s+verify\b", help_text, re.MULTILINE):
        # systemd 254 and later check rules themselves.
        result = subprocess.run(
            [udevadm, "verify", "--resolve-names=never", str(rules)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_rs485_rule_names_the_adapter_for_dialout() -> None:
    rules = udev_rules(NODE / "99-locker-rs485.rules")
    chips = set()
    for rule in rules:
        assignments = {(key, op, value) for key, op, value in rule if op not in ("==", "!=")}
        assert {
            ("GROUP", "=", "dialout"),
            ("MODE", "=", "0660"),
            ("SYMLINK", "+=", "locker-rs485"),
        } <= assignments
        matches = {key: value for key, op, value in rule if op == "=="}
        chips.add((matches["ATTRS"], matches["SUBSYSTEM"]))
    text = (NODE / "99-locker-rs485.rules").read_text()
    for vendor, product in (("0403", "6001"), ("1a86", "7523"), ("10c4", "ea60")):
        assert f'ATTRS{{idVendor}}=="{vendor}", ATTRS{{idProduct}}=="{product}"' in text
    assert "ATTRS{serial}" in text, "how to pin one adapter by serial number"


def test_the_journald_drop_in_uses_only_journald_keys() -> None:
    parser = configparser.ConfigParser(strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(NODE / "journald-locker.conf")

    assert parser.sections() == ["Journal"]
    keys = set(parser["Journal"])
    assert {"SystemMaxUse", "SystemKeepFree", "MaxRetentionSec", "RateLimitBurst"} <= keys
    template = Path("/etc/systemd/journald.conf")
    if template.exists():
        # Debian's journald.conf lists every key it knows, commented out.
        known = set(re.findall(r"^#?(\w+)=", template.read_text(), re.MULTILINE))
        assert keys <= known, keys - known


def test_install_sh_is_an_executable_bash_script_that_shellcheck_accepts() -> None:
    assert INSTALL.stat().st_mode & 0o111, "install.sh must be executable"
    assert INSTALL.read_text().startswith("#!/usr/bin/env bash\n")
    syntax = subprocess.run(["bash", "-n", str(INSTALL)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    shellcheck = shutil.which("shellcheck")
    if shellcheck is not None:
        lint = subprocess.run([shellcheck, str(INSTALL)], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout


def test_install_sh_explains_itself_and_refuses_what_it_does_not_know() -> None:
    usage = subprocess.run(["bash", str(INSTALL), "--help"], capture_output=True, text=True)
    wrong = subprocess.run(["bash", str(INSTALL), "--frobnicate"], capture_output=True, text=True)

    assert usage.returncode == 0
    for option in ("--central", "--bank", "--token", "--source", "--config-only", "--no-kiosk"):
        assert option in usage.stdout
    assert "works ONCE" in usage.stdout
    assert wrong.returncode == 2 and "unknown argument: --frobnicate" in wrong.stderr
