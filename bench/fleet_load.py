"""The fleet benchmark's load generator: simulated nodes in a few processes, kept across steps.

Each process holds its share of the nodes (every `step`-th one) with what a node remembers
between pulls (its cursor and the tag of its last whole feed answer), and runs one step at a
time when told: every node's requests of the step at their due times, each one signed, on a
small HTTP/1.1 keep-alive pool of plain asyncio streams (lighter than a full client library,
so that the generator takes as little as it can of the cores it shares with the server).

A node's requests in a 30 s period, spread evenly over the fleet by node number, as the node's
defaults make them: its heartbeat, carrying the cursor and tag of the feed answer it holds, and
at once a conditional feed pull when the heartbeat's answer says a pull would bring news; for
one node in ten an event batch with one door event, a quarter period after the heartbeat; for
one node in twenty its regular pull with the courier codes (every 600 s), three quarters of a
period after it. A heartbeat-only fleet sends bare heartbeats alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import resource
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.banks.service import compartment_labels
from central.models import SizeClass
from locker_wire.signing import sign_request

PERIOD_S = 30.0
EVENT_EVERY = 10  # one node in ten sends an event batch in a period
CODES_EVERY = 20  # its regular pull, with the courier codes: every 600 s, one in twenty a period
FEED_PATH = "/v1/node/feed?limit=200&courier_codes=false&settings_version=1"
COMPARTMENTS = {SizeClass.S: 4, SizeClass.M: 4, SizeClass.L: 2}
LABELS = [label for label, _ in compartment_labels(COMPARTMENTS)]


def node_key(n: int) -> Ed25519PrivateKey:
    """Node n's key, derived from n: every generator process can make it without being sent it."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"fleet-node-{n}".encode()).digest())


def node_id(n: int) -> str:
    return f"node_fleet{n:06d}"


@dataclass(frozen=True, slots=True)
class Sample:
    kind: str  # heartbeat, feed, events; feed304 for a feed answered 304
    lag_s: float  # how late the generator started the request
    latency_s: float
    ok: bool
    in_window: bool
    failure: str = ""  # an HTTP status or an error's name, for a request not ok
    news: bool = False  # a heartbeat answered that a feed pull would bring news


@dataclass(frozen=True, slots=True)
class Step:
    nodes: int  # the step's N: nodes 0..N-1 take part
    start_at: float  # time.time() of the step's start
    duration_s: float
    warmup_s: float
    heartbeat_only: bool
    concurrency: int = 64
    prime: bool = False  # instead of the schedule: one feed pull per node, as fast as it goes
    codes: bool = False  # priming pulls ask for courier codes (the restart measurement)


@dataclass(slots=True)
class StepOutcome:
    samples: list[Sample] = field(default_factory=list)
    cpu_s: float = 0.0


# HTTP ---------------------------------------------------------------------------------------------


class HttpPool:
    """HTTP/1.1 requests on up to `size` keep-alive connections to one server."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self._address = (host, port)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(size)

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self._address[0]}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        async with self._slots:
            while self._idle:
                # A kept connection the server closed meanwhile (its keep-alive timeout) fails
                # before any answer: the request goes again on another, as HTTP clients do.
                reader, writer = self._idle.pop()
                try:
                    return await self._exchange(reader, writer, message)
                except _Closed:
                    continue
            reader, writer = await asyncio.open_connection(*self._address)
            try:
                return await self._exchange(reader, writer, message)
            except _Closed as exc:
                raise ConnectionError("the server closed a new connection") from exc

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            writer.write(message)
            status_line = await reader.readline()
        except (ConnectionResetError, BrokenPipeError) as exc:
            writer.close()
            raise _Closed from exc
        if not status_line:
            writer.close()
            raise _Closed
        try:
            answer = await _read_response(status_line, reader)
        except BaseException:
            writer.close()
            raise
        self._idle.append((reader, writer))
        return answer

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()


class _Closed(Exception):
    """The connection was closed before any of the answer came."""


async def _read_response(
    status_line: bytes, reader: asyncio.StreamReader
) -> tuple[int, dict[str, str], bytes]:
    status = int(status_line.split(b" ", 2)[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if status in (204, 304):
        return status, headers, b""
    if "content-length" not in headers:
        raise ConnectionError("an answer without Content-Length")
    return status, headers, await reader.readexactly(int(headers["content-length"]))


# A node -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SimNode:
    """What a node keeps between requests: its cursor and, by whether it held courier codes,
    the tag of its last whole answer for a cursor (as `locker_node.sync.service` keeps them)."""

    n: int
    key: Ed25519PrivateKey
    cursor: str | None = None
    tags: dict[bool, tuple[str, str]] = field(default_factory=dict)

    def feed_path(self, codes: bool = False) -> str:
        path = (
            FEED_PATH
            if not codes
            else FEED_PATH.replace("courier_codes=false", "courier_codes=true")
        )
        if self.cursor is not None:
            path += f"&cursor={quote(self.cursor)}"
            held = self.tags.get(codes)
            if held is not None and held[0] == self.cursor:
                path += f"&known={quote(held[1])}"
        return path

    def held(self) -> dict[str, Any] | None:
        for codes in (True, False):
            held = self.tags.get(codes)
            if held is not None and held[0] == self.cursor:
                return {
                    "cursor": held[0],
                    "tag": held[1],
                    "courier_codes": codes,
                    "settings_version": 1,
                }
        return None

    def beat(self, bare: bool) -> bytes:
        held = None if bare else self.held()
        if held is None:
            return _BEAT
        return _BEAT[:-1] + b',"feed":' + json.dumps(held).encode() + b"}"


_BEAT = json.dumps(
    {
        "doors": dict.fromkeys(LABELS, "closed"),
        "boards": {"main": "ok"},
        "outbox_depth": 0,
        "version": "fleet-bench",
    }
).encode()


def _event_body(n: int) -> bytes:
    event = {
        "id": str(uuid.uuid4()),
        "type": "door.left_open",
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": {"compartment": LABELS[n % len(LABELS)], "detail": {"open_for_s": 75}},
    }
    return json.dumps({"events": [event]}).encode()


async def _visit(
    pool: HttpPool, node: SimNode, kind: str, due: float, in_window: bool, bare: bool
) -> list[Sample]:
    """One scheduled request, and the feed pull a heartbeat's answer asks for."""
    if kind != "heartbeat":
        return [await _send(pool, node, kind, due, in_window, codes=kind == "codes")]
    beat = await _send(pool, node, kind, due, in_window, bare=bare)
    if not beat.news:
        return [beat]
    return [beat, await _send(pool, node, "feed", time.time(), in_window)]


async def _send(
    pool: HttpPool,
    node: SimNode,
    kind: str,
    due: float,
    in_window: bool,
    codes: bool = False,
    bare: bool = True,
) -> Sample:
    lag = time.time() - due
    if kind == "heartbeat":
        method, path, body = "POST", "/v1/node/heartbeat", node.beat(bare)
    elif kind == "events":
        method, path, body = "POST", "/v1/node/events", _event_body(node.n)
    else:
        method, path, body = "GET", node.feed_path(codes), b""
    headers = sign_request(node.key, node_id(node.n), method, path, body, int(time.time()))
    headers["Content-Type"] = "application/json"
    began = time.perf_counter()
    try:
        status, answer_headers, content = await pool.request(method, path, headers, body)
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
        return Sample(kind, lag, time.perf_counter() - began, False, in_window, type(exc).__name__)
    latency = time.perf_counter() - began
    news = False
    if kind == "heartbeat" and status == 200:
        news = bool(json.loads(content).get("feed_news")) or (not bare and node.held() is None)
    if kind in ("feed", "codes") and status == 200:
        node.cursor = json.loads(content)["cursor"]
        tag = answer_headers.get("etag", "").strip('"')
        if tag:
            node.tags[codes] = (node.cursor, tag)
        else:
            node.tags.pop(codes, None)
    kind = "feed" if kind == "codes" else kind
    if kind == "feed" and status == 304:
        kind = "feed304"
    ok = status in (200, 304)
    return Sample(kind, lag, latency, ok, in_window, "" if ok else str(status), news)


# A generator process ------------------------------------------------------------------------------


def _schedule(step: Step, nodes: list[SimNode]) -> list[tuple[float, str, SimNode]]:
    """(due offset, kind, node) of every request of the step, in due order."""
    plan: list[tuple[float, str, SimNode]] = []
    for node in nodes:
        beat = node.n / step.nodes * PERIOD_S
        offsets = [(beat, "heartbeat")]
        if not step.heartbeat_only:
            if node.n % EVENT_EVERY == 0:
                offsets.append(((beat + PERIOD_S / 4) % PERIOD_S, "events"))
            if node.n % CODES_EVERY == CODES_EVERY // 4:
                offsets.append(((beat + PERIOD_S * 3 / 4) % PERIOD_S, "codes"))
        plan += [(at, kind, node) for at, kind in offsets if at < step.duration_s]
    return sorted(plan, key=lambda item: item[0])


async def _run_step(port: int, step: Step, nodes: list[SimNode]) -> list[Sample]:
    pool = HttpPool("127.0.0.1", port, step.concurrency)
    try:
        if step.prime:
            return list(
                await asyncio.gather(
                    *(_send(pool, node, "feed", time.time(), True, step.codes) for node in nodes)
                )
            )
        tasks = []
        for at, kind, node in _schedule(step, nodes):
            due = step.start_at + at
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            in_window = at >= step.warmup_s
            visit = _visit(pool, node, kind, due, in_window, step.heartbeat_only)
            tasks.append(asyncio.create_task(visit))
        return [sample for samples in await asyncio.gather(*tasks) for sample in samples]
    finally:
        pool.close()


def _generator(port: int, first: int, every: int, total: int, pipe: Connection) -> None:
    """One generator process: its nodes, stepped as the pipe says until it says None."""
    nodes = [SimNode(n, node_key(n)) for n in range(first, total, every)]
    while (step := pipe.recv()) is not None:
        before = resource.getrusage(resource.RUSAGE_SELF)
        samples = asyncio.run(_run_step(port, step, [s for s in nodes if s.n < step.nodes]))
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        pipe.send(StepOutcome(samples, cpu))


class LoadGenerator:
    """`processes` generator processes for nodes 0..total-1, kept for the whole run."""

    def __init__(self, port: int, total: int, processes: int) -> None:
        context = multiprocessing.get_context("fork")
        self._pipes: list[Connection] = []
        self._processes: list[Any] = []
        for first in range(processes):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_generator, args=(port, first, processes, total, theirs), daemon=True
            )
            process.start()
            self._pipes.append(ours)
            self._processes.append(process)

    def run(self, step: Step) -> list[StepOutcome]:
        for pipe in self._pipes:
            pipe.send(step)
        return [pipe.recv() for pipe in self._pipes]

    def close(self) -> None:
        for pipe in self._pipes:
            pipe.send(None)
        for process in self._processes:
            process.join(30)
