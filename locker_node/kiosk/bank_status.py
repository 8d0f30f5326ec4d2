"""What `/api/status` tells the kiosk of central's bank settings: maintenance and policy."""

from __future__ import annotations

from locker_node.flows.bank_settings import BankSettings
from locker_node.kiosk import schemas


def maintenance_out(settings: BankSettings | None) -> schemas.MaintenanceOut | None:
    if settings is None or settings.maintenance is None:
        return None
    maintenance = settings.maintenance
    return schemas.MaintenanceOut(
        reason=maintenance.reason,
        since=maintenance.since,
        until=maintenance.until,
        nearby=[
            schemas.MaintenanceNearbyOut(
                bank_id=n.bank_id, name=n.name, address=n.address, distance_km=n.distance_km
            )
            for n in sorted(maintenance.nearby, key=lambda n: n.distance_km)
        ],
    )


def settings_out(settings: BankSettings | None) -> schemas.SettingsOut | None:
    if settings is None:
        return None
    return schemas.SettingsOut(
        version=settings.version,
        hold_hours=settings.hold_hours,
        pickup_hours=settings.pickup_hours,
        allow_walk_up=settings.allow_walk_up,
        allow_upsize=settings.allow_upsize,
        max_extensions=settings.max_extensions,
        opening_hours=settings.opening_hours,
        timezone=settings.timezone,
        compartments_in_maintenance=[
            schemas.CompartmentMaintenanceOut(label=c.label, reason=c.reason, until=c.until)
            for c in settings.compartments_in_maintenance
        ],
    )
