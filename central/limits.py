"""Request body limits, enforced before and while a body is read: 413 `payload_too_large`."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central.errors import error_body

NODE_PATHS = "/v1/node/"
# The rest of a refused body is not wanted: the server closes the connection after the answer
# rather than reading it to the end.
_CLOSE = {"Connection": "close"}


class BodyTooLarge(HTTPException):
    """Raised when reading a body passes its limit; central.errors answers 413 `payload_too_large`
    (a starlette HTTPException, so FastAPI's own body reading lets it through as it is)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"the request body is over this route's limit of {limit} bytes", headers=_CLOSE
        )


class BodyLimit:
    """Pure ASGI middleware: no request body is taken in past its route family's limit.

    The node API (`/v1/node/...`) has its own limit, sized for the largest event batch; every
    other route has the carrier API's. A declared Content-Length over the limit is answered at
    once, before the app runs; a body without one (chunked) is counted as the app reads it, and
    the read that passes the limit raises `BodyTooLarge`. A body within its declared length needs
    no counting (the server delivers no more than it declares), so a carrier's request costs one
    look through its headers.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_node_bytes: int) -> None:
        self.app = app
        self._max_bytes = max_bytes
        self._max_node_bytes = max_node_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self._max_node_bytes if path.startswith(NODE_PATHS) else self._max_bytes
        declared = declared_length(scope)
        if declared is None:
            await self.app(scope, _counted(receive, limit), send)
        elif declared > limit:
            refusal = BodyTooLarge(limit)
            response = JSONResponse(
                error_body("payload_too_large", refusal.detail), 413, headers=refusal.headers
            )
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, or None when it has none (or none a server would accept)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _counted(receive: Receive, limit: int) -> Receive:
    taken = 0

    async def receive_within_limit() -> Message:
        nonlocal taken
        message = await receive()
        if message["type"] == "http.request":
            taken += len(message.get("body", b""))
            if taken > limit:
                raise BodyTooLarge(limit)
        return message

    return receive_within_limit
