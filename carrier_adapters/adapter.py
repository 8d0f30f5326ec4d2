"""What every adapter shares: wiring of the HTTP machinery, number checks, capability defaults."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import anyio
import httpx

from carrier_adapters.base import (
    Capability,
    CarrierError,
    InvalidTrackingNumber,
    MalformedCarrierResponse,
    SubscriptionResult,
    TrackingDetails,
    TrackingNotFound,
    UnsupportedCapability,
)
from carrier_adapters.http import (
    CarrierHttp,
    Clock,
    RateBudget,
    RateWindow,
    RetryPolicy,
    Sleep,
    SystemClock,
)
from carrier_adapters.settings import BaseCarrierSettings
from carrier_adapters.tracking_numbers import is_valid_for_carrier, normalize_tracking_number

__all__ = ["AdapterBase", "build_carrier_http", "lower_headers"]

# Tracking numbers end up in URL paths; anything outside this alphabet is refused before any I/O.
_SAFE_NUMBER = re.compile(r"[A-Z0-9][A-Z0-9-]{3,63}")


def build_carrier_http(
    carrier: str,
    settings: BaseCarrierSettings,
    client: httpx.AsyncClient,
    *,
    clock: Clock | None,
    sleep: Sleep | None,
) -> CarrierHttp:
    """A CarrierHttp with the carrier's retry policy and rate budget from its settings."""
    real_clock = clock or SystemClock()
    real_sleep = sleep or anyio.sleep
    budget = (
        RateBudget(
            [RateWindow(calls=r.calls, period_s=r.period_s) for r in settings.rate_limits],
            clock=real_clock,
            sleep=real_sleep,
            max_wait_s=settings.max_budget_wait_s,
            carrier=carrier,
        )
        if settings.rate_limits
        else None
    )
    return CarrierHttp(
        carrier=carrier,
        client=client,
        clock=real_clock,
        sleep=real_sleep,
        retry=RetryPolicy(
            max_attempts=settings.max_attempts, max_retry_after_s=settings.max_retry_after_s
        ),
        budget=budget,
        timeout_s=settings.timeout_s,
    )


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header lookup that works whatever mapping the web framework hands over."""
    return {key.lower(): value for key, value in headers.items()}


class AdapterBase:
    """Defaults for the CarrierAdapter protocol; subclasses override what they support."""

    _carrier_id: str
    _capabilities: frozenset[Capability]
    _max_batch_size: int = 1

    @property
    def carrier_id(self) -> str:
        return self._carrier_id

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self._capabilities

    @property
    def max_batch_size(self) -> int:
        return self._max_batch_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(capabilities={sorted(self._capabilities)})"

    def recognizes(self, tracking_number: str) -> bool:
        return is_valid_for_carrier(self._carrier_id, tracking_number)

    def _checked_number(self, tracking_number: str) -> str:
        normalized = normalize_tracking_number(tracking_number)
        if not _SAFE_NUMBER.fullmatch(normalized):
            raise InvalidTrackingNumber(
                f"{self._carrier_id}: {tracking_number!r} is not a tracking number",
                carrier=self._carrier_id,
            )
        return normalized

    async def track(self, tracking_number: str) -> TrackingDetails:
        raise NotImplementedError

    async def track_many(
        self, tracking_numbers: Sequence[str]
    ) -> dict[str, TrackingDetails | CarrierError]:
        results: dict[str, TrackingDetails | CarrierError] = {}
        for number in tracking_numbers:
            key = normalize_tracking_number(number)
            if key in results:
                continue
            try:
                results[key] = await self.track(number)
            except (TrackingNotFound, InvalidTrackingNumber, MalformedCarrierResponse) as exc:
                results[key] = exc
        return results

    def _unsupported(self, capability: Capability) -> UnsupportedCapability:
        return UnsupportedCapability(
            f"{self._carrier_id} adapter lacks {capability.value}; check `capabilities` first",
            carrier=self._carrier_id,
        )

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        raise self._unsupported(Capability.WEBHOOK_VERIFY)

    def parse_webhook(self, body: bytes) -> list[TrackingDetails]:
        raise self._unsupported(Capability.WEBHOOK_VERIFY)

    async def subscribe(self, tracking_numbers: Sequence[str]) -> SubscriptionResult:
        raise self._unsupported(Capability.PUSH_SUBSCRIBE)
