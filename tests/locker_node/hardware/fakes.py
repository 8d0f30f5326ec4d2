"""A scripted stand-in for a pyserial port, for byte-exact framing tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

Responder = Callable[[bytes], Sequence[bytes]]


class ScriptedPort:
    """Answers each written command with the chunks `respond` returns, one chunk per read.

    `read` waits out its timeout when nothing is queued, like pyserial; `fail_on` makes a method
    raise, to check how the driver translates port errors.
    """

    def __init__(self, respond: Responder | None = None, *, stale: bytes = b"") -> None:
        self.respond = respond or (lambda command: [])
        self.timeout: float | None = None
        self.written: list[bytes] = []
        self._chunks: list[bytes] = [stale] if stale else []
        self.closed = False
        self.fail_on: dict[str, BaseException] = {}

    def _maybe_fail(self, method: str) -> None:
        error = self.fail_on.get(method)
        if error is not None:
            raise error

    @property
    def in_waiting(self) -> int:
        self._maybe_fail("in_waiting")
        return len(self._chunks[0]) if self._chunks else 0

    def read(self, size: int = 1, /) -> bytes:
        self._maybe_fail("read")
        if not self._chunks:
            time.sleep(self.timeout or 0)
            return b""
        chunk = self._chunks[0]
        head, rest = chunk[:size], chunk[size:]
        if rest:
            self._chunks[0] = rest
        else:
            self._chunks.pop(0)
        return head

    def write(self, data: bytes, /) -> int:
        self._maybe_fail("write")
        self.written.append(bytes(data))
        self._chunks.extend(chunk for chunk in self.respond(bytes(data)) if chunk)
        return len(data)

    def flush(self) -> None:
        self._maybe_fail("flush")

    def reset_input_buffer(self) -> None:
        self._maybe_fail("reset_input_buffer")
        self._chunks.clear()

    def close(self) -> None:
        self.closed = True
