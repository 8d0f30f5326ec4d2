"""The node's HTTP client for central's /v1/node API: signed requests, wire models back."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH: a certificate from a
# trusted CA, but for another name, which no CA bundle fixes.
_WRONG_HOST_CODES = frozenset({62, 64})


class CentralError(Exception):
    """Base of the client's errors."""


class CentralUnavailable(CentralError):
    """Central did not answer, or answered with a server error: worth trying again later."""


class CentralUntrusted(CentralUnavailable):
    """Central's TLS certificate did not verify. Unavailable, so that sync retries as usual: it
    recovers once the CA bundle or central's certificate is put right."""

    def __init__(
        self, url: str, error: ssl.SSLCertVerificationError, ca_bundle: Path | None
    ) -> None:
        self.reason = str(error.verify_message or error.reason or error).rstrip(".")
        self.wrong_host = error.verify_code in _WRONG_HOST_CODES
        self.ca_bundle = ca_bundle
        trusted = f"the CA bundle {ca_bundle}" if ca_bundle else "the system's CA store"
        super().__init__(
            f"central's certificate is not trusted: {self.reason} "
            f"({url}, checked against {trusted})"
        )


class CentralRefused(CentralError):
    """Central answered with a 4xx: the same request would be refused again."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


def tls_context(ca_bundle: Path | None = None) -> ssl.SSLContext:
    """How central's certificate is checked: against `ca_bundle` alone when given (a network
    with its own CA), else against the system's CA store. There is no way to switch it off."""
    if ca_bundle is None:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=ca_bundle)


def _verification_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate error under httpx's ConnectError (httpx wraps httpcore wraps ssl)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _send(
    client: httpx.Client, ca_bundle: Path | None, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        untrusted = _verification_error(exc)
        if untrusted is not None:
            raise CentralUntrusted(str(client.base_url).rstrip("/"), untrusted, ca_bundle) from exc
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
    ca_bundle: Path | None = None,
) -> EnrollmentResponse:
    """`POST /v1/node/enroll`: not signed, the one-time token is the proof."""
    with httpx.Client(
        base_url=central_url, transport=transport, timeout=timeout_s, verify=tls_context(ca_bundle)
    ) as client:
        response = _send(
            client,
            ca_bundle,
            "POST",
            "/v1/node/enroll",
            content=request.model_dump_json(exclude_none=True),
            headers={"Content-Type": "application/json"},
        )
        return _parse(EnrollmentResponse, response)


class CentralClient:
    """Signed calls to central as one enrolled node; close it (or use `with`).

    Its TLS context is built once, here, from `ca_bundle` (see `tls_context`)."""

    def __init__(
        self,
        central_url: str,
        identity: NodeIdentity,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        ca_bundle: Path | None = None,
    ) -> None:
        self.ca_bundle = ca_bundle
        self._client = httpx.Client(
            base_url=central_url,
            transport=transport,
            timeout=timeout_s,
            verify=tls_context(ca_bundle),
            auth=NodeRequestSigner(identity.key, identity.node_id, clock=clock),
            headers={"Content-Type": "application/json"},
        )

    def post_events(self, events: list[dict[str, Any]]) -> EventBatchResult:
        body = httpx_json({"events": events})
        return _parse(
            EventBatchResult,
            _send(self._client, self.ca_bundle, "POST", "/v1/node/events", content=body),
        )

    def feed(
        self,
        cursor: str | None,
        *,
        limit: int = 200,
        courier_codes: bool = True,
        settings_version: int | None = None,
    ) -> FeedResponse:
        """The feed after `cursor`, unconditionally."""
        answer = self.feed_since(
            cursor, limit=limit, courier_codes=courier_codes, settings_version=settings_version
        )
        if answer.page is None:
            raise CentralUnavailable("central answered 304 to a feed request without a condition")
        return answer.page

    def feed_since(
        self,
        cursor: str | None,
        *,
        known: str | None = None,
        limit: int = 200,
        courier_codes: bool = True,
        settings_version: int | None = None,
    ) -> FeedAnswer:
        """The feed after `cursor`; with `known` (the tag of the answer the node has for this
        cursor and these options) central answers 304 when nothing changed: no page then."""
        params: dict[str, str | int] = {
            "limit": limit,
            "courier_codes": "true" if courier_codes else "false",
        }
        if cursor:
            params["cursor"] = cursor
        if settings_version is not None:
            # The bank settings the node has: central sends `bank` only when its differ.
            params["settings_version"] = settings_version
        if known is not None:
            # In the query, so that the signature covers it (If-None-Match would not be).
            params["known"] = known
        response = _send(self._client, self.ca_bundle, "GET", "/v1/node/feed", params=params)
        tag = _etag(response)
        if response.status_code == 304:
            return FeedAnswer(None, tag)
        return FeedAnswer(_parse(FeedResponse, response), tag)

    def ack(self, command_id: str, ack: CommandAck) -> CommandAckResult:
        response = _send(
            self._client,
            self.ca_bundle,
            "POST",
            f"/v1/node/commands/{command_id}/ack",
            content=ack.model_dump_json(exclude_none=True),
        )
        return _parse(CommandAckResult, response)

    def heartbeat(self, beat: Heartbeat) -> HeartbeatResult:
        response = _send(
            self._client,
            self.ca_bundle,
            "POST",
            "/v1/node/heartbeat",
            content=beat.model_dump_json(),
        )
        return _parse(HeartbeatResult, response)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CentralClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class FeedAnswer:
    """A feed answer: its page, or None when central said nothing changed since the answer
    whose tag the node sent; and the tag of this answer (None: it has none)."""

    page: FeedResponse | None
    tag: str | None


def _etag(response: httpx.Response) -> str | None:
    value = response.headers.get("etag")
    if not value:
        return None
    tag = value.removeprefix("W/").strip('"')
    return tag or None


def httpx_json(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), default=str).encode()
