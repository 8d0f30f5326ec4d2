"""Builds one adapter per carrier that has credentials configured."""

from __future__ import annotations

import httpx

from carrier_adapters.base import CarrierAdapter
from carrier_adapters.dhl import DhlAdapter
from carrier_adapters.fedex import FedexAdapter
from carrier_adapters.http import Clock, Sleep
from carrier_adapters.settings import CarrierSettings
from carrier_adapters.ups import UpsAdapter
from carrier_adapters.usps import UspsAdapter

__all__ = ["build_adapters"]


def build_adapters(
    settings: CarrierSettings,
    http_client: httpx.AsyncClient,
    *,
    clock: Clock | None = None,
    sleep: Sleep | None = None,
) -> dict[str, CarrierAdapter]:
    """Adapters keyed by carrier id, for the carriers with credentials in `settings`.

    Build once per process and keep the result: token caches and rate budgets live in the
    adapters, so rebuilding them per request would defeat both.
    """
    adapters: dict[str, CarrierAdapter] = {}
    if settings.usps.configured:
        adapters["usps"] = UspsAdapter(settings.usps, http_client, clock=clock, sleep=sleep)
    if settings.fedex.configured:
        adapters["fedex"] = FedexAdapter(settings.fedex, http_client, clock=clock, sleep=sleep)
    if settings.ups.configured:
        adapters["ups"] = UpsAdapter(settings.ups, http_client, clock=clock, sleep=sleep)
    if settings.dhl.configured:
        adapters["dhl"] = DhlAdapter(settings.dhl, http_client, clock=clock, sleep=sleep)
    return adapters
