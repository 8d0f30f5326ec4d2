"""The httpx auth signs what goes on the wire, so the receiver's check passes."""

from __future__ import annotations

import httpx
import pytest

from locker_wire import signing
from locker_wire.auth import NodeRequestSigner

NOW = 1_780_000_000


def test_requests_sent_through_the_signer_verify_as_received() -> None:
    key = signing.generate_private_key()
    seen: list[str] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode("ascii")
        try:
            verified = signing.verify_request(
                key.public_key(), request.headers, request.method, path, request.content, NOW
            )
        except signing.WireError as exc:
            return httpx.Response(401, json={"error": exc.code})
        seen.append(f"{request.method} {path} {verified.node_id}")
        return httpx.Response(200)

    client = httpx.Client(
        base_url="https://central.test",
        transport=httpx.MockTransport(receiver),
        auth=NodeRequestSigner(key, "node_1", clock=lambda: NOW),
    )
    assert client.get("/v1/node/feed", params={"cursor": "a b/c", "limit": 5}).status_code == 200
    assert client.post("/v1/node/events", json={"events": []}).status_code == 200
    assert client.post("/v1/node/heartbeat", content=b"").status_code == 200
    assert seen == [
        "GET /v1/node/feed?cursor=a+b%2Fc&limit=5 node_1",
        "POST /v1/node/events node_1",
        "POST /v1/node/heartbeat node_1",
    ]
    other = httpx.Client(
        transport=httpx.MockTransport(receiver),
        auth=NodeRequestSigner(signing.generate_private_key(), "node_1", clock=lambda: NOW),
    )
    assert other.get("https://central.test/v1/node/feed").json() == {"error": "invalid_signature"}


@pytest.mark.parametrize("skew", [-301, 301])
def test_a_signer_with_a_wrong_clock_is_refused_for_skew(skew: int) -> None:
    key = signing.generate_private_key()
    request = httpx.Request("GET", "https://central.test/v1/node/feed")
    flow = NodeRequestSigner(key, "n", clock=lambda: NOW + skew).auth_flow(request)
    signed = next(flow)
    with pytest.raises(signing.ClockSkew):
        signing.verify_request(key.public_key(), signed.headers, "GET", "/v1/node/feed", b"", NOW)
