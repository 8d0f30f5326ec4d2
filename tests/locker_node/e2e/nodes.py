"""Real `locker-node run` processes against a board simulator on a pseudo-terminal."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from locker_node.store.database import DATABASE_FILE

LOCKER_NODE = str(Path(sys.executable).parent / "locker-node")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(
    directory: Path, *, port: int, board_path: str, layout: list[tuple[str, str, int]]
) -> Path:
    lines = [
        'bank_id = "CRASH-1"',
        'data_dir = "data"',
        "[kiosk]",
        f"port = {port}",
        "[doors]",
        "confirm_window_ms = 300",
        "confirm_poll_ms = 10",
        "monitor_interval_ms = 200",
        "[[boards]]",
        'name = "main"',
        'protocol = "kerong-cu16"',
        f'port = "{board_path}"',
        "reply_timeout_ms = 200",
    ]
    for label, size, lock in layout:
        lines += [
            "[[compartments]]",
            f'label = "{label}"',
            f'size = "{size}"',
            'board = "main"',
            f"lock = {lock}",
        ]
    path = directory / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def prepare_data_dir(directory: Path, template: Path) -> Path:
    data_dir = directory / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, data_dir / DATABASE_FILE)
    return data_dir


@dataclass
class NodeProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    base_url: str

    def log_text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    # Bounds, not waits: each returns as soon as its condition holds. They are wide because a
    # busy machine (CI with other jobs) starts and kills processes many times slower.
    def wait_ready(self, client: httpx.Client, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the node exited while starting:\n{self.log_text()}")
            try:
                if client.get(f"{self.base_url}/api/status").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"the node did not start in {timeout_s} s:\n{self.log_text()}")

    def wait_killed(self, timeout_s: float = 60.0) -> None:
        """The crash point fired: the process died of SIGKILL, by its own hand."""
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the node did not die:\n{self.log_text()}") from None
        assert code == -signal.SIGKILL, f"exit {code}:\n{self.log_text()}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def spawn(
    config: Path, *, port: int, crash_at: str | None = None, log_name: str = "node.log"
) -> NodeProcess:
    """Start `locker-node run`; the caller stops it (`NodeProcess.stop`)."""
    env = {key: value for key, value in os.environ.items() if key != "LOCKER_NODE_CRASH_AT"}
    if crash_at:
        env["LOCKER_NODE_CRASH_AT"] = crash_at
    log_path = config.parent / log_name
    log = log_path.open("wb")
    process = subprocess.Popen(
        [LOCKER_NODE, "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=config.parent,
        env=env,
    )
    return NodeProcess(process, log_path, log, f"http://127.0.0.1:{port}")


@contextmanager
def node_process(
    config: Path, *, port: int, crash_at: str | None = None, log_name: str = "node.log"
) -> Iterator[NodeProcess]:
    node = spawn(config, port=port, crash_at=crash_at, log_name=log_name)
    try:
        yield node
    finally:
        node.stop()
