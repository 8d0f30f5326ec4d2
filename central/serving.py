"""Several web worker processes, each with its own listening socket on the same port.

uvicorn's own `--workers` shares one listening socket between the processes, and whichever process
wakes first accepts a whole burst of new connections: 32 keep-alive clients that connect together
end up 27 on one worker and 5 on the other, so one core saturates while the other idles, and
long-lived connections never move. With `SO_REUSEPORT` each worker binds its own socket and the
kernel spreads incoming connections across them by hash. Where the platform has no balancing
`SO_REUSEPORT` (anything but Linux), uvicorn's shared socket is used instead.

The supervisor restarts a worker that dies and stops them all on SIGINT or SIGTERM. Connections
waiting in a dead worker's accept queue are reset; clients retry them like any dropped connection.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TypedDict

import uvicorn

log = logging.getLogger(__name__)

APP_FACTORY = "central.app:app_from_environment"
STOP_TIMEOUT_S = 30.0


class ForwardedOptions(TypedDict):
    proxy_headers: bool
    forwarded_allow_ips: list[str]


def forwarded_options(trusted_proxies: Sequence[str]) -> ForwardedOptions:
    """uvicorn's options to believe X-Forwarded-For and X-Forwarded-Proto from these proxies only.

    Left to itself uvicorn believes them from 127.0.0.1 and ::1 (or from `FORWARDED_ALLOW_IPS`),
    so a client on the same host, or any client when the reverse proxy passes the header along,
    could choose its own address. With no proxies named, the middleware that reads the headers
    is left out, and its list is empty rather than unset so that the variable cannot widen it.
    """
    return {
        "proxy_headers": bool(trusted_proxies),
        "forwarded_allow_ips": list(trusted_proxies),
    }


def freeze_startup_heap() -> None:
    """Put what start-up built (modules, the app, its schemas and routes) out of the cyclic
    garbage collector's sight, before serving.

    Those objects live as long as the process, yet every full collection walked them all: with
    this app that took 130-140 ms a time, stalling every request in flight (the slowest
    reservations in the benchmark), and about 1.4 s of CPU a worker in a 40-second run. Frozen,
    a full collection walks only what serving allocates (at most 17 ms in the same run).
    """
    gc.collect()
    gc.freeze()


def balanced_workers_supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket of this worker's own on `host:port`, shared with its siblings by SO_REUSEPORT."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_worker(host: str, port: int, access_log: bool, trusted_proxies: tuple[str, ...]) -> None:
    """One worker process: its own socket, the app built from the environment."""
    sock = listening_socket(host, port)
    config = uvicorn.Config(
        APP_FACTORY, factory=True, access_log=access_log, **forwarded_options(trusted_proxies)
    )
    uvicorn.Server(config).run(sockets=[sock])


class WorkerSupervisor:
    """Starts `count` workers, replaces any that dies, and stops them all on a signal."""

    def __init__(
        self,
        host: str,
        port: int,
        count: int,
        *,
        access_log: bool = False,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        self._args = (host, port, access_log, tuple(trusted_proxies))
        self._count = count
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[BaseProcess] = []
        self._stopping = threading.Event()

    def _spawn(self) -> BaseProcess:
        process = self._context.Process(target=run_worker, args=self._args, daemon=False)
        process.start()
        return process

    def run(self) -> None:
        # Fail at once, in this process, when the port is taken, rather than in every worker.
        listening_socket(self._args[0], self._args[1]).close()
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self._workers = [self._spawn() for _ in range(self._count)]
            while not self._stopping.is_set():
                wait([worker.sentinel for worker in self._workers], timeout=0.5)
                for index, worker in enumerate(self._workers):
                    if worker.exitcode is not None and not self._stopping.wait(1.0):
                        # The pause keeps a worker that cannot start from spinning the CPU.
                        log.warning(
                            "web worker %s exited with %s; starting another",
                            worker.pid,
                            worker.exitcode,
                        )
                        self._workers[index] = self._spawn()
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping.set()

    def _shutdown(self) -> None:
        for worker in self._workers:
            if worker.exitcode is None and worker.pid is not None:
                worker.terminate()  # SIGTERM: uvicorn finishes in-flight requests and exits
        for worker in self._workers:
            worker.join(STOP_TIMEOUT_S)
            if worker.exitcode is None:
                worker.kill()
                worker.join()
