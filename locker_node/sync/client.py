"""The node's HTTP client for central's /v1/node API: signed requests, wire models back."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from locker_node.sync.identity import NodeIdentity
from locker_wire.auth import NodeRequestSigner
from locker_wire.schemas import (
    CommandAck,
    CommandAckResult,
    EnrollmentRequest,
    EnrollmentResponse,
    EventBatchResult,
    FeedResponse,
    Heartbeat,
    HeartbeatResult,
)

M = TypeVar("M", bound=BaseModel)
DEFAULT_TIMEOUT_S = 10.0


class CentralError(Exception):
    """Base of the client's errors."""


class CentralUnavailable(CentralError):
    """Central did not answer, or answered with a server error: worth trying again later."""


class CentralRefused(CentralError):
    """Central answered with a 4xx: the same request would be refused again."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


def _send(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise CentralUnavailable(f"{method} {path}: {exc!r}") from exc
    if response.status_code >= 500:
        raise CentralUnavailable(f"{method} {path}: HTTP {response.status_code}")
    if response.status_code >= 400:
        code, detail = "error", response.text[:500]
        try:
            body = response.json()
            code, detail = str(body.get("error", code)), str(body.get("detail", detail))
        except (ValueError, AttributeError):
            pass
        raise CentralRefused(response.status_code, code, detail)
    return response


def _parse(model: type[M], response: httpx.Response) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise CentralUnavailable(f"central answered something unexpected: {exc}") from exc


def enroll(
    central_url: str,
    request: EnrollmentRequest,
    *,
    transport: httpx.BaseTransport | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> EnrollmentResponse:
    """`POST /v1/node/enroll`: not signed, the one-time token is the proof."""
    with httpx.Client(base_url=central_url, transport=transport, timeout=timeout_s) as client:
        response = _send(
            client,
            "POST",
            "/v1/node/enroll",
            content=request.model_dump_json(exclude_none=True),
            headers={"Content-Type": "application/json"},
        )
        return _parse(EnrollmentResponse, response)


class CentralClient:
    """Signed calls to central as one enrolled node; close it (or use `with`)."""

    def __init__(
        self,
        central_url: str,
        identity: NodeIdentity,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._client = httpx.Client(
            base_url=central_url,
            transport=transport,
            timeout=timeout_s,
            auth=NodeRequestSigner(identity.key, identity.node_id, clock=clock),
            headers={"Content-Type": "application/json"},
        )

    def post_events(self, events: list[dict[str, Any]]) -> EventBatchResult:
        body = httpx_json({"events": events})
        return _parse(
            EventBatchResult, _send(self._client, "POST", "/v1/node/events", content=body)
        )

    def feed(
        self, cursor: str | None, *, limit: int = 200, courier_codes: bool = True
    ) -> FeedResponse:
        params: dict[str, str | int] = {
            "limit": limit,
            "courier_codes": "true" if courier_codes else "false",
        }
        if cursor:
            params["cursor"] = cursor
        return _parse(FeedResponse, _send(self._client, "GET", "/v1/node/feed", params=params))

    def ack(self, command_id: str, ack: CommandAck) -> CommandAckResult:
        response = _send(
            self._client,
            "POST",
            f"/v1/node/commands/{command_id}/ack",
            content=ack.model_dump_json(exclude_none=True),
        )
        return _parse(CommandAckResult, response)

    def heartbeat(self, beat: Heartbeat) -> HeartbeatResult:
        response = _send(self._client, "POST", "/v1/node/heartbeat", content=beat.model_dump_json())
        return _parse(HeartbeatResult, response)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CentralClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def httpx_json(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), default=str).encode()
