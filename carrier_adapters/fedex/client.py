"""FedEx adapter: the one module that talks to FedEx, through the injected httpx client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx

from carrier_adapters.adapter import AdapterBase, build_carrier_http, lower_headers
from carrier_adapters.auth import IssuedToken, TokenCache, fetch_client_credentials_token
from carrier_adapters.base import (
    Capability,
    CarrierError,
    InvalidTrackingNumber,
    TrackingDetails,
    TrackingNotFound,
)
from carrier_adapters.fedex import mapping
from carrier_adapters.http import Clock, Sleep, decode_json, try_decode_json
from carrier_adapters.settings import FedexSettings
from carrier_adapters.tracking_numbers import normalize_tracking_number
from carrier_adapters.webhooks import verify_fedex_signature

__all__ = ["FedexAdapter"]


class FedexAdapter(AdapterBase):
    """FedEx Track API: batches of up to 30 numbers; signed webhook pushes when configured."""

    _carrier_id = mapping.CARRIER
    _max_batch_size = mapping.MAX_BATCH_SIZE

    def __init__(
        self,
        settings: FedexSettings,
        http_client: httpx.AsyncClient,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if not settings.configured:
            raise ValueError("FedEx client id and secret are not configured")
        self._settings = settings
        capabilities = {Capability.TRACKING, Capability.BATCH_TRACKING}
        if settings.webhook_secret and settings.webhook_secret.get_secret_value():
            capabilities.add(Capability.WEBHOOK_VERIFY)
        self._capabilities = frozenset(capabilities)
        self._http = build_carrier_http(
            mapping.CARRIER, settings, http_client, clock=clock, sleep=sleep
        )
        self._http.tokens = TokenCache(
            self._fetch_token,
            clock=self._http.clock,
            refresh_margin_s=settings.token_refresh_margin_s,
        )

    async def _fetch_token(self) -> IssuedToken:
        request = mapping.build_token_request(self._settings.url, *self._settings.credentials())
        return await fetch_client_credentials_token(self._http, request)

    async def _track_batch(
        self, numbers: Sequence[str]
    ) -> dict[str, TrackingDetails | CarrierError]:
        request = mapping.build_tracking_request(self._settings.url, numbers, self._settings.locale)
        response = await self._http.send(request)
        if response.status_code != 200:
            raise mapping.parse_error_response(response.status_code, try_decode_json(response))
        return mapping.parse_tracking_response(decode_json(response, mapping.CARRIER))

    async def track(self, tracking_number: str) -> TrackingDetails:
        number = self._checked_number(tracking_number)
        result = (await self.track_many([number]))[number]
        if isinstance(result, CarrierError):
            raise result
        return result

    async def track_many(
        self, tracking_numbers: Sequence[str]
    ) -> dict[str, TrackingDetails | CarrierError]:
        order: list[str] = []
        refused: dict[str, CarrierError] = {}
        pending: list[str] = []
        for raw in tracking_numbers:
            key = normalize_tracking_number(raw)
            if key in order:
                continue
            order.append(key)
            try:
                pending.append(self._checked_number(raw))
            except InvalidTrackingNumber as exc:
                refused[key] = exc
        answered: dict[str, TrackingDetails | CarrierError] = dict(refused)
        for batch in mapping.split_batches(pending):
            answered.update(await self._track_batch(batch))
        return {
            key: answered.get(key)
            or TrackingNotFound(f"fedex: no result for {key}", carrier=mapping.CARRIER)
            for key in order
        }

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        secret = self._settings.webhook_secret
        if Capability.WEBHOOK_VERIFY not in self._capabilities or secret is None:
            raise self._unsupported(Capability.WEBHOOK_VERIFY)
        signature = lower_headers(headers).get("fdx-signature")
        return verify_fedex_signature(body, signature, secret.get_secret_value())

    def parse_webhook(self, body: bytes) -> list[TrackingDetails]:
        if Capability.WEBHOOK_VERIFY not in self._capabilities:
            raise self._unsupported(Capability.WEBHOOK_VERIFY)
        return mapping.parse_webhook_payload(body)
