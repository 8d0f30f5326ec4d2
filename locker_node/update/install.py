"""Installs one node version into a fresh venv from the operator's package index, and checks it.

`python -m venv <root>/venvs/<v>`, `pip install <package>==<v>` from the configured index
only, and a check that the new venv imports the node and reports that version. pip's output
goes to `<root>/logs/install-<v>.log`; on failure its tail is the error's detail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from locker_node.config import UpdateConfig
from locker_node.update.state import MAX_DETAIL, venv_path

CHECK_TIMEOUT_S = 120.0
# In a venv being built; gone once it passed its check.
UNFINISHED = ".unfinished"
# The new venv proves it can load the node and says which version it holds.
CHECK_SCRIPT = (
    "import importlib.metadata as m, sys, locker_node.app, locker_node.cli; "
    "print(m.version(sys.argv[1]))"
)


class InstallFailed(Exception):
    """The version could not be installed or does not start; `detail` says why (a log tail)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail[-MAX_DETAIL:]


def base_python() -> Path:
    """The interpreter this venv was made from (not the venv's own, which a venv cannot copy)."""
    return Path(getattr(sys, "_base_executable", None) or sys.executable)


def pip_arguments(config: UpdateConfig, version: str) -> list[str]:
    """pip's options: the configured index and nothing else, no prompts, no pip self-check."""
    args = ["install", "--no-input", "--disable-pip-version-check", "--no-cache-dir"]
    if config.index_url:
        args += ["--index-url", config.index_url]
    else:
        args.append("--no-index")
    if config.find_links:
        args += ["--find-links", config.find_links]
    if config.trusted_host:
        args += ["--trusted-host", config.trusted_host]
    if not config.compile:
        args.append("--no-compile")
    return [*args, f"{config.package}=={version}"]


def clean_environment() -> dict[str, str]:
    """This process's environment without pip's settings or a venv of its own: the install
    reads only what the node's config says."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PIP_", "PYTHON")) and key not in ("VIRTUAL_ENV",)
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def _run(argv: list[str], log: Path, timeout_s: float, what: str) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        try:
            result = subprocess.run(  # noqa: S603  (argv built from the node's own config)
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_environment(),
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise InstallFailed(f"{what} took longer than {timeout_s:.0f} s") from exc
        except OSError as exc:
            raise InstallFailed(f"{what}: {exc}") from exc
    if result.returncode != 0:
        raise InstallFailed(f"{what} failed (exit {result.returncode}):\n{_tail(log)}")


def _tail(log: Path, limit: int = 1500) -> str:
    try:
        return log.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def install_version(config: UpdateConfig, version: str) -> Path:
    """A ready venv holding `version`; an InstallFailed saying why not.

    Built in place, marked unfinished until it passed its check: a venv's scripts name the
    venv's own path, so one built elsewhere and renamed would not run. A venv left unfinished
    (power lost mid-install) is thrown away and built again.
    """
    target = venv_path(config.root, version)
    unfinished = target / UNFINISHED
    if target.exists() and not unfinished.exists():
        check_venv(target, config.package, version)
        return target
    shutil.rmtree(target, ignore_errors=True)
    logs = config.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"install-{version}.log"
    log.write_text("")
    python = config.python or base_python()
    target.mkdir(parents=True)
    unfinished.write_text("being installed\n")
    try:
        _run([str(python), "-m", "venv", str(target)], log, 300, "creating the venv")
        pip = [str(target / "bin" / "python"), "-m", "pip", *pip_arguments(config, version)]
        _run(pip, log, config.install_timeout_s, f"pip install {config.package}=={version}")
        check_venv(target, config.package, version)
    except InstallFailed:
        shutil.rmtree(target, ignore_errors=True)
        raise
    unfinished.unlink()
    return target


def check_venv(venv: Path, package: str, version: str) -> None:
    """The venv imports the node and holds exactly `version` of `package`."""
    argv = [str(venv / "bin" / "python"), "-c", CHECK_SCRIPT, package]
    try:
        result = subprocess.run(  # noqa: S603  (our own venv's interpreter)
            argv,
            capture_output=True,
            text=True,
            env=clean_environment(),
            cwd=venv,  # not wherever the node runs: `-c` would import from there first
            timeout=CHECK_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallFailed(f"the new venv does not start: {exc}") from exc
    if result.returncode != 0:
        raise InstallFailed(f"the new venv cannot load the node:\n{result.stderr[-1500:]}")
    found = result.stdout.strip()
    if found != version:
        raise InstallFailed(f"the new venv holds {package} {found}, not {version}")
