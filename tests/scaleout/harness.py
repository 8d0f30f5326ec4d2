"""Central on several hosts: `locker-central serve` processes behind a real HAProxy that ends TLS,
on a throw-away PostgreSQL database. What tests/scaleout and bench/scaleout.py start.

Each host gets a network namespace of its own when this machine allows it (root, `ip netns`):
an address of its own on a bridge, the proxy reaching it over that network as it would another
machine, and PostgreSQL through its Unix socket (the machine's server listens on 127.0.0.1 only,
which a namespace cannot reach; a socket file can be). Elsewhere (no root, as on GitHub's
runners; a database with no local socket) every host listens on a port of its own on 127.0.0.1.
`LOCKER_SCALEOUT_NETWORK=netns|loopback` forces one; `Network.why` says which was taken and why.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import httpx
import psycopg
import trustme
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.locker_node.e2e.nodes import free_port

HAPROXY = "/usr/sbin/haproxy"
CARRIER = "acme"
NETWORK_ENV = "LOCKER_SCALEOUT_NETWORK"
SOCKET_DIRS = ("/var/run/postgresql", "/run/postgresql", "/tmp")
HOST_PORT = 8000  # every namespaced host listens on its own address, on the same port
T = TypeVar("T")


def wait_for(attempt: Callable[[], T | None], what: str, timeout_s: float = 60.0) -> T:
    """Retry until `attempt` gives a value; a bound, not a wait: it returns as soon as it can."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = attempt()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


# Test instrumentation in the throw-away database only (the migrated schema is untouched): who
# wrote what, told apart by the connection's application_name (each host's PGAPPNAME), with the
# scheduler lease as that transaction saw it. A leader-only job's transaction holds the lease
# row FOR SHARE, so the holder and token read here are the ones in force when it wrote.
AUDIT_SQL = (
    """CREATE TABLE scaleout_audit (id bigserial PRIMARY KEY, what text NOT NULL,
        app text NOT NULL, lease_holder text, lease_token bigint, row_data jsonb NOT NULL,
        at timestamptz NOT NULL DEFAULT clock_timestamp())""",
    """CREATE FUNCTION scaleout_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO scaleout_audit (what, app, lease_holder, lease_token, row_data)
        SELECT TG_ARGV[0], current_setting('application_name'), l.holder, l.token, to_jsonb(NEW)
        FROM (SELECT 1) AS one LEFT JOIN leases AS l ON l.name = 'scheduler';
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER scaleout_expiries AFTER INSERT ON reservation_events FOR EACH ROW
        WHEN (NEW.type = 'expired' AND NEW.actor = 'system')
        EXECUTE FUNCTION scaleout_audit_row('expiry')""",
    """CREATE TRIGGER scaleout_webhook_attempts AFTER INSERT ON webhook_attempts FOR EACH ROW
        EXECUTE FUNCTION scaleout_audit_row('webhook_attempt')""",
    """CREATE TRIGGER scaleout_leases AFTER INSERT OR UPDATE OF holder, token ON leases
        FOR EACH ROW EXECUTE FUNCTION scaleout_audit_row('lease')""",
)


def install_audit(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in AUDIT_SQL:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def app_name(host: Host) -> str:
    """The application_name of a host's database connections (its PGAPPNAME)."""
    return f"scaleout-{host.name}"


@dataclass
class Network:
    """Where the hosts live: `netns` (a namespace each, on a bridge) or `loopback` (ports)."""

    kind: str
    why: str
    gateway: str  # this machine as the hosts see it: the proxy's source, a receiver's address
    endpoints: list[tuple[str, int]] = field(default_factory=list)
    socket_dir: str | None = None
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    def wrap(self, index: int, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[index], *argv] if self.namespaces else argv

    def host_database_url(self, url: str) -> str:
        if self.socket_dir is None:
            return url
        # libpq takes the socket's directory as `host`; the port names the socket file.
        local = make_url(url).set(host="").update_query_dict({"host": self.socket_dir})
        return local.render_as_string(hide_password=False)

    def close(self) -> None:
        for namespace in self.namespaces:  # takes its end of the veth pair with it
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        for link in reversed(self.links):
            subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
        self.namespaces.clear()
        self.links.clear()


def postgres_socket_dir(url: str) -> str | None:
    """The directory of the local server's Unix socket, when `url` is that server and its
    socket takes this URL's user; None otherwise."""
    parsed = make_url(url)
    if parsed.host not in ("127.0.0.1", "localhost", "::1"):
        return None
    port = parsed.port or 5432
    for directory in SOCKET_DIRS:
        if Path(directory, f".s.PGSQL.{port}").exists():
            where = f"host={directory} port={port} dbname={parsed.database} user={parsed.username}"
            try:
                psycopg.connect(where, password=parsed.password, connect_timeout=5).close()
            except psycopg.Error:
                return None
            return directory
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], capture_output=True, check=True, timeout=30)


def _namespaced(count: int, socket_dir: str) -> Network:
    tag = os.getpid() % 10_000
    subnet = f"10.231.{tag % 200 + 20}"
    network = Network(
        kind="netns",
        why="root and `ip netns` available: each host has a network namespace and an address "
        f"of its own on bridge lksb{tag} ({subnet}.0/24); PostgreSQL through its Unix socket",
        gateway=f"{subnet}.1",
        socket_dir=socket_dir,
    )
    try:
        bridge = f"lksb{tag}"
        _ip("link", "add", bridge, "type", "bridge")
        network.links.append(bridge)
        _ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for n in range(1, count + 1):
            namespace, veth, peer = f"lks{tag}h{n}", f"lks{tag}v{n}", f"lks{tag}p{n}"
            _ip("netns", "add", namespace)
            network.namespaces.append(namespace)
            _ip("netns", "exec", namespace, "true")  # what starting a host in it will need
            _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
            network.links.append(veth)
            _ip("link", "set", peer, "netns", namespace)
            _ip("link", "set", veth, "master", bridge)
            _ip("link", "set", veth, "up")
            _ip("-n", namespace, "addr", "add", f"{subnet}.{10 + n}/24", "dev", peer)
            _ip("-n", namespace, "link", "set", peer, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            network.endpoints.append((f"{subnet}.{10 + n}", HOST_PORT))
    except BaseException:
        network.close()
        raise
    return network


def open_network(count: int, database_url: str) -> Network:
    wanted = os.environ.get(NETWORK_ENV, "auto")
    if wanted not in ("auto", "netns", "loopback"):
        raise ValueError(f"{NETWORK_ENV} must be auto, netns or loopback, not {wanted!r}")
    why = f"{NETWORK_ENV}=loopback"
    if wanted != "loopback":
        socket_dir = postgres_socket_dir(database_url)
        if os.geteuid() != 0:
            why = "not root, so no network namespaces"
        elif socket_dir is None:
            why = "no local PostgreSQL Unix socket, which namespaced hosts would need"
        else:
            try:
                return _namespaced(count, socket_dir)
            except (OSError, subprocess.SubprocessError) as exc:
                stderr = getattr(exc, "stderr", b"") or b""
                why = f"`ip netns` refused: {exc} {stderr.decode(errors='replace').strip()}"
        if wanted == "netns":
            raise RuntimeError(f"{NETWORK_ENV}=netns but {why}")
    endpoints = [("127.0.0.1", free_port()) for _ in range(count)]
    return Network("loopback", f"{why}: hosts on ports of 127.0.0.1", "127.0.0.1", endpoints)


@dataclass(frozen=True)
class Tls:
    """A test CA and the proxy's certificate from it (for 127.0.0.1 and localhost)."""

    ca_path: Path
    pem_path: Path  # the proxy's key and certificate chain in one file, as `crt` wants it

    @classmethod
    def create(cls, directory: Path) -> Tls:
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        tls = cls(ca_path=directory / "ca.pem", pem_path=directory / "proxy.pem")
        ca.cert_pem.write_to_path(str(tls.ca_path))
        leaf.private_key_and_cert_chain_pem.write_to_path(str(tls.pem_path))
        return tls

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))


HAPROXY_CONFIG = """\
global
    maxconn 4000
    stats socket {stats} mode 600 level admin
    log stdout format raw local0

defaults
    mode http
    log global
    option httplog
    option dontlognull
    timeout connect 2s
    timeout http-request 10s
    timeout client 60s
    timeout server 30s
    timeout http-keep-alive 10s
    timeout queue 30s
    # A request whose host could not be reached, or closed with no answer, goes again to
    # another host (twice at most). Safe for what these tests send while hosts die (POST
    # /v1/reservations: one per tracking number), not for every route (a replayed extend moves
    # a deadline twice), hence conn-failure only in deploy/central/haproxy.cfg. A host killed
    # mid-request resets instead, which HAProxy does not retry: it closes a kept-alive client
    # connection without an answer, or answers 502 on a new one (haproxy#2061, #2375).
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response response-timeout

frontend central_https
    bind 127.0.0.1:{port} ssl crt {pem}
    default_backend central

backend central
    balance roundrobin
    option httpchk GET /healthz
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    http-response set-log-level silent if {{ status lt 500 }}
    default-server check inter 500 fall 2 rise 1
{servers}
"""


class Proxy:
    """HAProxy as a child process (`-db`: in the foreground), its runtime API on a Unix socket."""

    def __init__(self, directory: Path, tls: Tls, servers: Sequence[tuple[str, str, int]]) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.stats_path = directory / "haproxy.sock"
        self.log_path = directory / "haproxy.log"
        self.config_path = directory / "haproxy.cfg"
        lines = [f"    server {name} {address}:{port}" for name, address, port in servers]
        self.config_path.write_text(
            HAPROXY_CONFIG.format(
                stats=self.stats_path, port=self.port, pem=tls.pem_path, servers="\n".join(lines)
            )
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [HAPROXY, "-f", str(self.config_path), "-db"], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for(self._stats_ready, "HAProxy's runtime API", 30)
        except BaseException:
            self.close()
            raise

    def _stats_ready(self) -> bool | None:
        if self.process.poll() is not None:
            raise AssertionError(f"HAProxy exited:\n{self.log_path.read_text()}")
        try:
            self.command("show info")
        except OSError:
            return None
        return True

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def _rows(self) -> dict[str, dict[str, str]]:
        """`show stat` for the backend's servers and the BACKEND line, by name."""
        lines = self.command("show stat").splitlines()
        header = lines[0].removeprefix("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {row["svname"]: row for row in rows if row["pxname"] == "central"}

    def servers(self) -> dict[str, dict[str, str]]:
        return {name: row for name, row in self._rows().items() if name != "BACKEND"}

    def retried(self) -> tuple[int, int]:
        """The backend's retries and redispatches so far (`wretr`, `wredis`)."""
        row = self._rows()["BACKEND"]
        return int(row["wretr"] or 0), int(row["wredis"] or 0)

    def answered(self) -> dict[str, int]:
        """Responses each server has given so far."""
        kinds = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")
        return {
            name: sum(int(row[kind] or 0) for kind in kinds) for name, row in self.servers().items()
        }

    def set_rotation(self, names: Sequence[str]) -> None:
        """Only these servers take requests; the others are put in maintenance."""
        for name in self.servers():
            verb = "enable" if name in names else "disable"
            self.command(f"{verb} server central/{name}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Host:
    name: str
    index: int
    address: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)  # every process it has run, latest last

    @property
    def pid(self) -> int:
        if self.process is None:
            raise AssertionError(f"{self.name} was never started")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass(frozen=True)
class Lease:
    holder: str
    token: int
    expires_at: datetime

    @property
    def pid(self) -> int:
        return holder_pid(self.holder)


def holder_pid(holder: str) -> int:
    return int(holder.split(":")[1])  # "hostname:pid:random", see central.scheduler.Jobs


class Cluster:
    """`count` central hosts behind one HAProxy, on one database; a context manager that stops
    every process it started and undoes the network on the way out."""

    def __init__(
        self,
        directory: Path,
        database_url: str,
        secret: str,
        *,
        count: int = 3,
        lease_s: float = 3.0,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.database_url = database_url
        self.network = open_network(count, database_url)
        try:
            self.tls = Tls.create(directory)
            self.hosts = [
                Host(f"h{n + 1}", n, address, port, directory / f"h{n + 1}.log")
                for n, (address, port) in enumerate(self.network.endpoints)
            ]
            self.proxy = Proxy(
                directory, self.tls, [(h.name, h.address, h.port) for h in self.hosts]
            )
        except BaseException:
            self.network.close()
            raise
        self.engine = create_engine(database_url)
        self._env = {
            "LOCKER_DATABASE_URL": self.network.host_database_url(database_url),
            "LOCKER_SECRET_KEY": secret,
            "LOCKER_PUBLIC_URL": self.proxy.url,
            "LOCKER_SCHEDULER_LEASE_S": str(lease_s),
            "LOCKER_SCHEDULER_ENABLED": "true",
            "LOCKER_TRUSTED_PROXIES": self.network.gateway,
            "LOCKER_ALLOW_INSECURE_WEBHOOKS": "true",
        }

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self, host: Host, *, scheduler: bool = True) -> None:
        """`python -m central.cli serve --workers 1` for `host`, in its namespace if it has one;
        its output appended to its log."""
        argv = [sys.executable, "-m", "central.cli", "serve", "--host", host.address,
                "--port", str(host.port), "--workers", "1"]  # fmt: skip
        if not scheduler:
            argv.append("--no-scheduler")
        data_dir = self.directory / host.name
        data_dir.mkdir(exist_ok=True)
        env = (
            os.environ | self._env | {"LOCKER_DATA_DIR": str(data_dir), "PGAPPNAME": app_name(host)}
        )
        with host.log_path.open("ab") as log:
            log.write(f"--- started at {datetime.now(UTC).isoformat()}\n".encode())
            log.flush()
            host.process = subprocess.Popen(
                self.network.wrap(host.index, argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=data_dir,
            )
        host.pids.append(host.process.pid)

    def start_all(self, *, scheduler: bool = True) -> None:
        for host in self.hosts:
            self.start(host, scheduler=scheduler)
        self.wait_in_rotation(self.hosts)

    def in_rotation(self, host: Host) -> bool:
        """The proxy's last health check of `host` passed: it gets requests."""
        row = self.proxy.servers()[host.name]
        return row["status"] == "UP" and row["check_status"] == "L7OK"

    def wait_in_rotation(self, hosts: Sequence[Host], timeout_s: float = 90.0) -> None:
        def ready() -> bool | None:
            for host in hosts:
                if not host.alive():
                    raise AssertionError(f"{host.name} exited:\n{host.log_text()[-3000:]}")
            return all(self.in_rotation(host) for host in hosts) or None

        wait_for(ready, f"{', '.join(h.name for h in hosts)} in the proxy's rotation", timeout_s)

    def kill(self, host: Host, sig: int = signal.SIGKILL) -> None:
        os.kill(host.pid, sig)
        if sig == signal.SIGKILL and host.process is not None:
            host.process.wait(30)

    def stop(self, host: Host) -> None:
        """SIGTERM (after SIGCONT, in case it was stopped), SIGKILL if it does not end."""
        if host.process is None or host.process.poll() is not None:
            return
        host.process.send_signal(signal.SIGCONT)
        host.process.terminate()
        try:
            host.process.wait(20)
        except subprocess.TimeoutExpired:
            host.process.kill()
            host.process.wait(10)

    def restart(self, host: Host, *, scheduler: bool = True) -> None:
        """Start a stopped or dead host again once the proxy has noticed, and wait for it to be
        back in the rotation."""
        self.stop(host)
        wait_for(lambda: (not self.in_rotation(host)) or None, f"{host.name} out of rotation")
        self.start(host, scheduler=scheduler)
        self.wait_in_rotation([host])

    def host_of(self, pid: int) -> Host | None:
        return next((host for host in self.hosts if pid in host.pids), None)

    def lease(self) -> Lease | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                text("SELECT holder, token, expires_at FROM leases WHERE name = 'scheduler'")
            ).first()
        return None if row is None else Lease(row.holder, int(row.token), row.expires_at)

    def client(self) -> httpx.Client:
        """HTTPS to the proxy, trusting the test CA only."""
        return httpx.Client(base_url=self.proxy.url, verify=self.tls.context(), timeout=60)

    def async_client(self, connections: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.proxy.url,
            verify=self.tls.context(),
            timeout=60,
            limits=httpx.Limits(max_connections=connections),
        )

    def close(self) -> None:
        try:
            for host in self.hosts:
                self.stop(host)
            self.proxy.close()
        finally:
            self.network.close()
            self.engine.dispose()


class Receiver:
    """A webhook endpoint on `address`: answers 200 after `delay_s` and records each delivery's
    `X-Locker-Event-Id` with the address it came from."""

    def __init__(self, address: str, *, port: int = 0, delay_s: float = 0.0) -> None:
        self.deliveries: list[tuple[str, str]] = []
        lock = threading.Lock()
        deliveries = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a carrier's endpoint would
            timeout = 5  # an idle kept-alive connection ends its thread

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if delay_s:
                    time.sleep(delay_s)
                event_id = self.headers.get("X-Locker-Event-Id", "")
                with lock:
                    deliveries.append((event_id, self.client_address[0]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((address, port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{address}:{self._server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self._server.serve_forever, name="receiver")
        self._thread.start()

    def received(self) -> list[tuple[str, str]]:
        return list(self.deliveries)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def serve_receiver(address: str, port: int, delay_s: float) -> None:
    """A Receiver in a process of its own (the benchmark's), until it is terminated."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # for sigwait, in every thread
    receiver = Receiver(address, port=port, delay_s=delay_s)
    try:
        signal.sigwait({signal.SIGTERM})
    finally:
        receiver.close()
