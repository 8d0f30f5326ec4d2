"""The flows' line to central for questions someone at the kiosk waits on (overflow): which
nearby banks have room, and moving a reservation to one. Signed like the sync loop's calls, on a
client of its own with short timeouts; every failure is translated here, once, into the flows'
errors (`flows.ports.CentralLink`)."""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from locker_node.flows.errors import BadInput, CentralUnreachable, Conflict, FlowError, NotFound
from locker_node.flows.ports import NearbyBank, Redirected
from locker_node.sync.client import (
    CentralClient,
    CentralRefused,
    CentralUnavailable,
    _parse,
    _send,
)

M = TypeVar("M", bound=BaseModel)
# A courier stands at the kiosk meanwhile: an answer comes within seconds, or not at all.
LINK_TIMEOUT_S = 5.0
NEARBY_LIMIT = 5


class _Bank(BaseModel):
    id: str
    name: str
    address: str
    distance_km: float
    free: int


class _Nearby(BaseModel):
    banks: list[_Bank]


class _Redirected(BaseModel):
    reservation_id: str
    bank_id: str
    name: str
    address: str
    size: str


class HttpCentralLink(CentralClient):
    """`CentralLink` over central's node API (`/v1/node/nearby`, `.../redirect`)."""

    def nearby(self, size: str, accessible: bool) -> list[NearbyBank]:
        params = {
            "size": size,
            "accessible": "true" if accessible else "false",
            "limit": NEARBY_LIMIT,
        }
        found = self._ask(_Nearby, "GET", "/v1/node/nearby", params=params)
        return [
            NearbyBank(
                bank_id=bank.id,
                name=bank.name,
                address=bank.address,
                distance_km=bank.distance_km,
                free=bank.free,
            )
            for bank in found.banks
        ]

    def redirect(self, reservation_id: str, bank_id: str, size: str | None) -> Redirected:
        body: dict[str, str] = {"bank_id": bank_id}
        if size is not None:
            body["size"] = size
        moved = self._ask(
            _Redirected,
            "POST",
            f"/v1/node/reservations/{quote(reservation_id, safe='')}/redirect",
            json=body,
        )
        if moved.reservation_id != reservation_id:
            raise CentralUnreachable("central answered about another reservation")
        return Redirected(
            reservation_id=moved.reservation_id,
            bank_id=moved.bank_id,
            name=moved.name,
            address=moved.address,
            size=moved.size,
        )

    def _ask(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        # The sync client's own request and parsing, so both speak to central alike.
        try:
            return _parse(model, _send(self._client, self.ca_bundle, method, path, **kwargs))
        except CentralRefused as exc:
            raise _refusal(exc) from exc
        except CentralUnavailable as exc:
            raise CentralUnreachable(f"central did not answer: {exc}") from exc


def _refusal(exc: CentralRefused) -> FlowError:
    """Central's answer as the flows' refusal, with central's code: the kiosk says why."""
    if exc.status == 404:
        return NotFound(exc.detail, code=exc.code)
    if exc.status == 409:
        return Conflict(exc.detail, code=exc.code)
    if exc.status in (400, 422):
        return BadInput(exc.detail, code=exc.code)
    # 401 (a clock too far off, a revoked node), 403, 413...: central will not hear this node.
    return CentralUnreachable(f"central refused the node: {exc.code}: {exc.detail}")
