"""Request signing as an httpx auth: every request the node sends is signed exactly as sent."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from locker_wire.signing import sign_request


class NodeRequestSigner(httpx.Auth):
    """Signs method, path with query (as it goes on the wire), timestamp, nonce and body."""

    requires_request_body = True

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        node_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = private_key
        self._node_id = node_id
        self._clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        headers = sign_request(
            self._key,
            self._node_id,
            request.method,
            request.url.raw_path.decode("ascii"),
            request.content,
            int(self._clock()),
        )
        request.headers.update(headers)
        yield request
