"""Drivers read no settings: importing the hardware package loads no config, domain or flow."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import locker_node.hardware

ROOT = Path(__file__).resolve().parents[3]
FORBIDDEN = ("locker_node.config", "locker_node.domain", "locker_node.flows")


def test_importing_every_hardware_module_loads_no_config_domain_or_flow() -> None:
    modules = [
        f"locker_node.hardware.{info.name}"
        for info in pkgutil.iter_modules(locker_node.hardware.__path__)
    ]
    assert "locker_node.hardware.gpio" in modules
    # A fresh interpreter: this one has long since imported the whole node.
    script = f"import sys, {', '.join(modules)}; print(*sorted(sys.modules), sep='\\n')"
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()

    assert "locker_node.hardware.gpio" in loaded
    assert [m for m in loaded if m.startswith(FORBIDDEN)] == []
