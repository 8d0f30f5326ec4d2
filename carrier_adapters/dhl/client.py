"""DHL adapter: the one module that talks to DHL, through the injected httpx client."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from carrier_adapters.adapter import AdapterBase, build_carrier_http, lower_headers
from carrier_adapters.base import Capability, TrackingDetails
from carrier_adapters.dhl import mapping
from carrier_adapters.http import Clock, Sleep, decode_json, try_decode_json
from carrier_adapters.settings import DhlSettings
from carrier_adapters.webhooks import verify_static_token

__all__ = ["DhlAdapter"]


class DhlAdapter(AdapterBase):
    """DHL Shipment Tracking - Unified (one number per call); token-checked pushes."""

    _carrier_id = mapping.CARRIER

    def __init__(
        self,
        settings: DhlSettings,
        http_client: httpx.AsyncClient,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if not settings.configured or settings.api_key is None:
            raise ValueError("DHL API key is not configured")
        self._settings = settings
        self._api_key = settings.api_key
        capabilities = {Capability.TRACKING}
        if settings.webhook_token and settings.webhook_token.get_secret_value():
            capabilities.add(Capability.WEBHOOK_VERIFY)
        self._capabilities = frozenset(capabilities)
        self._http = build_carrier_http(
            mapping.CARRIER, settings, http_client, clock=clock, sleep=sleep
        )

    async def track(self, tracking_number: str) -> TrackingDetails:
        number = self._checked_number(tracking_number)
        request = mapping.build_tracking_request(
            self._settings.url,
            number,
            self._api_key.get_secret_value(),
            service=self._settings.service,
            language=self._settings.language,
        )
        # DHL authenticates by API key, not bearer token: a 401 is final.
        response = await self._http.send(request, authenticated=False)
        if response.status_code != 200:
            raise mapping.parse_error_response(
                response.status_code, try_decode_json(response), number
            )
        return mapping.parse_tracking_response(decode_json(response, mapping.CARRIER), number)

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        token = self._settings.webhook_token
        if Capability.WEBHOOK_VERIFY not in self._capabilities or token is None:
            raise self._unsupported(Capability.WEBHOOK_VERIFY)
        value = lower_headers(headers).get(self._settings.webhook_header.lower())
        return verify_static_token(value, token.get_secret_value())

    def parse_webhook(self, body: bytes) -> list[TrackingDetails]:
        if Capability.WEBHOOK_VERIFY not in self._capabilities:
            raise self._unsupported(Capability.WEBHOOK_VERIFY)
        return mapping.parse_webhook_payload(body)
