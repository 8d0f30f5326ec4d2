"""Central's bank settings for node tests, as the feed carries them (`FeedBank`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from locker_node.flows.facade import LockerFlows
from locker_wire.schemas import (
    BankMaintenance,
    CompartmentMaintenance,
    FeedBank,
    FeedResponse,
    NearbyBankInfo,
    NodePolicy,
)

NEARBY = [
    NearbyBankInfo(bank_id="TEST-3", name="Market Street", address="3 Market St", distance_km=2.5),
    NearbyBankInfo(bank_id="TEST-2", name="Station", address="1 Station Rd", distance_km=0.8),
]


def feed_bank(
    version: int,
    *,
    pickup_hours: int = 72,
    allow_upsize: bool = True,
    allow_walk_up: bool = False,
    maintenance: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    compartments: dict[str, str] | None = None,
    **fields: Any,
) -> FeedBank:
    """Settings of version `version`; `maintenance`: the bank's reason, if it is in it;
    `compartments`: label -> reason of the compartments in maintenance."""
    return FeedBank(
        version=version,
        policy=NodePolicy(
            hold_hours=48,
            pickup_hours=pickup_hours,
            reminder_hours=24,
            max_extension_hours=48,
            allow_upsize=allow_upsize,
        ),
        allow_walk_up=allow_walk_up,
        maintenance=None
        if maintenance is None
        else BankMaintenance(
            reason=maintenance,
            since=since or datetime.fromisoformat("2026-03-01T08:00:00+00:00"),
            until=until,
            nearby=NEARBY,
        ),
        compartments_in_maintenance=[
            CompartmentMaintenance(label=label, reason=reason)
            for label, reason in (compartments or {}).items()
        ],
        **fields,
    )


def settings_page(bank: FeedBank) -> FeedResponse:
    return FeedResponse(
        reservations=[], commands=[], courier_codes=[], cursor="c1", more=False, bank=bank
    )


def send_settings(flows: LockerFlows, version: int, **options: Any) -> FeedBank:
    """Central's settings through the node's feed step, as the sync loop applies them."""
    bank = feed_bank(version, **options)
    flows.apply_feed_page(settings_page(bank))
    return bank
