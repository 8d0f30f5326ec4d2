"""Bank administration in the dashboard: maintenance of a bank or a compartment, and the bank's
policy (hold hours, extensions, walk-ups, upsizing, opening hours). Admin only, audited."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.exc import DBAPIError

from central.banks import settings
from central.banks.service import BankDirectory
from central.banks.settings import (
    BankSettingsOut,
    Changed,
    MaintenanceEndIn,
    MaintenanceIn,
    PolicyIn,
)
from central.context import Ctx
from central.ops.auth import Operator, OperatorRoute, run_unit
from central.ops.endpoints import BankId, Label, OperatorDep, _audited

# The JSON API (every call needs a signed-in operator) and the HTML pages.
router = APIRouter(prefix="/ops/api", include_in_schema=False, route_class=OperatorRoute)
pages = APIRouter(prefix="/ops", include_in_schema=False)
DEADLOCK_RETRIES = 1


async def _change(
    request: Request,
    operator: Operator,
    bank_id: str,
    *,
    action: str,
    label: str | None,
    reason: str | None,
    work: Callable[[Ctx], Changed],
) -> BankSettingsOut:
    """Run one settings change as an audited admin action; the bank's cached facts are dropped
    so that this process allocates by the new settings at once."""

    def unit(ctx: Ctx) -> tuple[BankSettingsOut, dict[str, Any]]:
        changed = work(ctx)
        return changed.settings, changed.detail

    try:
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                return await _audited(
                    request,
                    operator,
                    action=action,
                    target_type="bank" if label is None else "compartment",
                    target_id=bank_id if label is None else f"{bank_id}/{label}",
                    reason=reason,
                    work=unit,
                )
            except DBAPIError as exc:
                # A compartment's change takes its capacity and compartment rows, which a batch
                # of its node's events may take in the other order at that very moment: the
                # database breaks the tie by failing one of them, and this one tries again.
                if attempt == DEADLOCK_RETRIES or getattr(exc.orig, "sqlstate", None) != "40P01":
                    raise
        raise RuntimeError("unreachable: the last attempt returns or raises")
    finally:
        directory = getattr(request.app.state, "bank_directory", None)
        if isinstance(directory, BankDirectory):
            directory.forget(bank_id)


@router.get("/banks/{bank_id}/settings")
async def get_settings(request: Request, operator: OperatorDep, bank_id: BankId) -> BankSettingsOut:
    """The bank's policy and maintenance, for every operator (only admins change them)."""
    return await run_unit(request, lambda ctx: settings.settings_of(ctx.session, bank_id, ctx.now))


@router.put("/banks/{bank_id}/policy")
async def put_policy(
    request: Request, operator: OperatorDep, bank_id: BankId, body: PolicyIn
) -> BankSettingsOut:
    """Change the fields given; the bank's node hears of it through its feed."""
    return await _change(
        request,
        operator,
        bank_id,
        action="bank_policy",
        label=None,
        reason=None,
        work=lambda ctx: settings.update_policy(ctx, bank_id, body),
    )


@router.post("/banks/{bank_id}/maintenance")
async def start_bank_maintenance(
    request: Request, operator: OperatorDep, bank_id: BankId, body: MaintenanceIn
) -> BankSettingsOut:
    return await _change(
        request,
        operator,
        bank_id,
        action="bank_maintenance",
        label=None,
        reason=body.reason,
        work=lambda ctx: settings.start_maintenance(ctx, bank_id, body.reason, body.until),
    )


@router.delete("/banks/{bank_id}/maintenance")
async def end_bank_maintenance(
    request: Request,
    operator: OperatorDep,
    bank_id: BankId,
    body: MaintenanceEndIn | None = None,
) -> BankSettingsOut:
    return await _change(
        request,
        operator,
        bank_id,
        action="bank_maintenance_end",
        label=None,
        reason=body.reason if body else None,
        work=lambda ctx: settings.end_maintenance(ctx, bank_id),
    )


@router.post("/banks/{bank_id}/compartments/{label}/maintenance")
async def start_compartment_maintenance(
    request: Request, operator: OperatorDep, bank_id: BankId, label: Label, body: MaintenanceIn
) -> BankSettingsOut:
    return await _change(
        request,
        operator,
        bank_id,
        action="compartment_maintenance",
        label=label,
        reason=body.reason,
        work=lambda ctx: settings.start_maintenance(ctx, bank_id, body.reason, body.until, label),
    )


@router.delete("/banks/{bank_id}/compartments/{label}/maintenance")
async def end_compartment_maintenance(
    request: Request,
    operator: OperatorDep,
    bank_id: BankId,
    label: Label,
    body: MaintenanceEndIn | None = None,
) -> BankSettingsOut:
    return await _change(
        request,
        operator,
        bank_id,
        action="compartment_maintenance_end",
        label=label,
        reason=body.reason if body else None,
        work=lambda ctx: settings.end_maintenance(ctx, bank_id, label),
    )
