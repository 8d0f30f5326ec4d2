"""Running bench/soak.py as its own process, on the suite's PostgreSQL when there is one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"
STOP_TIMEOUT_S = 90
# What `bench/soak.py` prints of the load: "  123 parcels: 120 reserved, 5 cancelled, ...".
LOAD_LINE = re.compile(
    r"(\d+) parcels: (\d+) reserved, (\d+) cancelled, (\d+) deposited, (\d+) picked up"
)


def run_soak(work: Path, *options: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """The soak with `options`, its work in `work`; central on a throw-away database of the
    suite's PostgreSQL server (LOCKER_TEST_DATABASE_URL) when it has one, else on SQLite."""
    env = dict(os.environ)
    server = os.environ.get("LOCKER_TEST_DATABASE_URL")
    database = "sqlite"
    if server:
        env["LOCKER_BENCH_DATABASE_URL"] = server
        database = "postgres"
    command = [
        sys.executable, str(SOAK), "--database", database, "--work-dir", str(work),
        "--csv", str(work / "memory.csv"), "--seed", "21", *options,
    ]  # fmt: skip
    with subprocess.Popen(
        command,
        cwd=SOAK.parents[1],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as soak:
        try:
            stdout, stderr = soak.communicate(timeout=timeout_s)
        finally:
            if soak.poll() is None:
                # SIGTERM first: the soak then stops central and the nodes, which run in
                # process groups of their own and would outlive a SIGKILL of the soak.
                soak.terminate()
                try:
                    soak.communicate(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    soak.kill()
    return subprocess.CompletedProcess(command, soak.returncode, stdout, stderr)


def load_figures(output: str) -> dict[str, int]:
    found = LOAD_LINE.search(output)
    assert found, output[-3000:]
    names = ("parcels", "reserved", "cancelled", "deposited", "picked_up")
    return dict(zip(names, map(int, found.groups()), strict=True))


def verdicts(output: str) -> dict[str, bool]:
    """Each invariant the soak printed, and whether it held."""
    found = re.findall(r"^  (ok  |FAIL) (.+) \(\d+ checked\)$", output, re.MULTILINE)
    return {name: mark == "ok  " for mark, name in found}
