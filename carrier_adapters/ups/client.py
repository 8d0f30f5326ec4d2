"""UPS adapter: the one module that talks to UPS, through the injected httpx client."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence

import httpx

from carrier_adapters.adapter import AdapterBase, build_carrier_http, lower_headers
from carrier_adapters.auth import IssuedToken, TokenCache, fetch_client_credentials_token
from carrier_adapters.base import Capability, SubscriptionResult, TrackingDetails
from carrier_adapters.http import Clock, Sleep, decode_json, try_decode_json
from carrier_adapters.settings import UpsSettings
from carrier_adapters.ups import mapping
from carrier_adapters.webhooks import verify_bearer_credential

__all__ = ["UpsAdapter"]


def _new_transaction_id() -> str:
    # UPS caps transId at 32 characters.
    return uuid.uuid4().hex


class UpsAdapter(AdapterBase):
    """UPS Track API v1; Track Alert subscriptions and callbacks."""

    _carrier_id = mapping.CARRIER

    def __init__(
        self,
        settings: UpsSettings,
        http_client: httpx.AsyncClient,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        transaction_ids: Callable[[], str] = _new_transaction_id,
    ) -> None:
        if not settings.configured:
            raise ValueError("UPS client id and secret are not configured")
        self._settings = settings
        self._transaction_ids = transaction_ids
        capabilities = {Capability.TRACKING, Capability.PUSH_SUBSCRIBE}
        if settings.webhook_credential and settings.webhook_credential.get_secret_value():
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
        client_id, client_secret = self._settings.credentials()
        request = mapping.build_token_request(
            self._settings.url, client_id, client_secret, self._settings.merchant_id
        )
        return await fetch_client_credentials_token(self._http, request)

    async def track(self, tracking_number: str) -> TrackingDetails:
        number = self._checked_number(tracking_number)
        request = mapping.build_tracking_request(
            self._settings.url,
            number,
            transaction_id=self._transaction_ids(),
            transaction_src=self._settings.transaction_src,
            locale=self._settings.locale,
        )
        response = await self._http.send(request)
        if response.status_code != 200:
            raise mapping.parse_error_response(
                response.status_code, try_decode_json(response), number
            )
        return mapping.parse_tracking_response(decode_json(response, mapping.CARRIER), number)

    async def subscribe(self, tracking_numbers: Sequence[str]) -> SubscriptionResult:
        numbers = list(dict.fromkeys(self._checked_number(n) for n in tracking_numbers))
        accepted: list[str] = []
        rejected: list[str] = []
        for start in range(0, len(numbers), mapping.MAX_SUBSCRIPTION_SIZE):
            request = mapping.build_subscription_request(
                self._settings.url,
                numbers[start : start + mapping.MAX_SUBSCRIPTION_SIZE],
                transaction_id=self._transaction_ids(),
                transaction_src=self._settings.transaction_src,
                locale=self._settings.locale,
                country_code=self._settings.subscription_country_code,
            )
            response = await self._http.send(request)
            if response.status_code != 200:
                # A 400 rejects the whole request (the reason is in response.errors).
                raise mapping.parse_error_response(
                    response.status_code, try_decode_json(response), "subscription"
                )
            result = mapping.parse_subscription_response(decode_json(response, mapping.CARRIER))
            accepted.extend(result.accepted)
            rejected.extend(result.rejected)
        return SubscriptionResult(accepted=tuple(accepted), rejected=tuple(rejected))

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        credential = self._settings.webhook_credential
        if Capability.WEBHOOK_VERIFY not in self._capabilities or credential is None:
            raise self._unsupported(Capability.WEBHOOK_VERIFY)
        authorization = lower_headers(headers).get("authorization")
        return verify_bearer_credential(authorization, credential.get_secret_value())

    def parse_webhook(self, body: bytes) -> list[TrackingDetails]:
        if Capability.WEBHOOK_VERIFY not in self._capabilities:
            raise self._unsupported(Capability.WEBHOOK_VERIFY)
        return mapping.parse_webhook_payload(body)
