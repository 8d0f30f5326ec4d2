"""OAuth2 client-credentials tokens, cached until shortly before they expire."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator

from carrier_adapters.base import CarrierAuthError, MalformedCarrierResponse
from carrier_adapters.http import CarrierHttp, CarrierRequest, Clock, decode_json

__all__ = ["IssuedToken", "TokenCache", "fetch_client_credentials_token", "parse_token_response"]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: SecretStr
    expires_in_s: float


class _TokenResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    access_token: SecretStr
    # USPS and FedEx send a number, UPS a string of digits.
    expires_in: float

    @field_validator("access_token")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("empty access_token")
        return value


def parse_token_response(data: object, carrier: str) -> IssuedToken:
    """The token and its lifetime from an OAuth2 token response body."""
    try:
        parsed = _TokenResponse.model_validate(data)
    except ValidationError as exc:
        raise MalformedCarrierResponse(
            f"{carrier}: token response lacks access_token/expires_in", carrier=carrier
        ) from exc
    return IssuedToken(access_token=parsed.access_token, expires_in_s=parsed.expires_in)


async def fetch_client_credentials_token(http: CarrierHttp, request: CarrierRequest) -> IssuedToken:
    """Send a client-credentials grant; a refusal of the credentials is CarrierAuthError."""
    # Token calls stay outside the tracking budget: carriers meter them as a separate API.
    response = await http.send(request, authenticated=False, budgeted=False)
    if response.status_code >= 400:
        # Token endpoints answer 400 for an unknown client or grant as well as 401.
        raise CarrierAuthError(
            f"{http.carrier}: token request refused with HTTP {response.status_code}",
            carrier=http.carrier,
        )
    return parse_token_response(decode_json(response, http.carrier), http.carrier)


class TokenCache:
    """Holds one bearer token and fetches a new one when it is about to expire.

    Concurrent callers share one fetch. `invalidate` drops the token after a 401 so that the next
    `get` fetches a fresh one.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[IssuedToken]],
        *,
        clock: Clock,
        refresh_margin_s: float = 60.0,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._refresh_margin_s = refresh_margin_s
        self._token: SecretStr | None = None
        self._refresh_at = 0.0
        self._lock = anyio.Lock()

    async def get(self) -> str:
        async with self._lock:
            if self._token is None or self._clock.monotonic() >= self._refresh_at:
                issued = await self._fetch()
                lifetime = issued.expires_in_s
                # Short-lived tokens would otherwise be refreshed on every call.
                usable = max(lifetime - self._refresh_margin_s, lifetime / 2)
                self._token = issued.access_token
                self._refresh_at = self._clock.monotonic() + usable
            return self._token.get_secret_value()

    def invalidate(self, token: str) -> None:
        # Only the token that failed: another caller may already hold a fresh one.
        if self._token is not None and self._token.get_secret_value() == token:
            self._token = None

    def __repr__(self) -> str:
        return f"TokenCache(cached={self._token is not None})"
