"""USPS adapter: the one module that talks to USPS, through the injected httpx client."""

from __future__ import annotations

import httpx

from carrier_adapters.adapter import AdapterBase, build_carrier_http
from carrier_adapters.auth import IssuedToken, TokenCache, fetch_client_credentials_token
from carrier_adapters.base import Capability, TrackingDetails
from carrier_adapters.http import Clock, Sleep, decode_json, try_decode_json
from carrier_adapters.settings import UspsSettings
from carrier_adapters.usps import mapping

__all__ = ["UspsAdapter"]


class UspsAdapter(AdapterBase):
    """USPS Tracking 3.x. USPS offers e-mail notifications only, so no webhooks."""

    _carrier_id = mapping.CARRIER

    def __init__(
        self,
        settings: UspsSettings,
        http_client: httpx.AsyncClient,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if not settings.configured:
            raise ValueError("USPS client id and secret are not configured")
        self._settings = settings
        self._capabilities = frozenset({Capability.TRACKING})
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

    async def track(self, tracking_number: str) -> TrackingDetails:
        number = self._checked_number(tracking_number)
        response = await self._http.send(mapping.build_tracking_request(self._settings.url, number))
        if response.status_code != 200:
            raise mapping.parse_error_response(
                response.status_code, try_decode_json(response), number
            )
        return mapping.parse_tracking_response(decode_json(response, mapping.CARRIER))
