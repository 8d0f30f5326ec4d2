"""The operator JSON API under /ops/api: session, audit log, alerts and remote actions.

Every call needs a signed-in operator; state-changing calls need an admin and the CSRF header.
Each action and alert change is audited with the operator, the reason and the outcome, refusals
included. Not part of the carrier API's OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from central.context import Ctx
from central.errors import ApiError
from central.ops import accounts, actions, alerts
from central.ops import repository as repo
from central.ops.auth import (
    Forbidden,
    NotSignedIn,
    Operator,
    OperatorRoute,
    clear_session_cookie,
    client_address,
    csrf_for,
    current_operator,
    hashing_limiter,
    passwords_of,
    run_unit,
    set_session_cookie,
    settings_of,
    signed_in,
)
from central.ops.schemas import (
    ActionIn,
    AlertCreate,
    AlertList,
    AlertOut,
    AlertStatus,
    AlertUpdate,
    AuditEntryOut,
    AuditOut,
    CommandAccepted,
    CommandOut,
    ExtendIn,
    ExtendOut,
    LoginIn,
    OperatorOut,
    SessionOut,
)

T = TypeVar("T")
router = APIRouter(prefix="/ops/api", include_in_schema=False, route_class=OperatorRoute)
OperatorDep = Annotated[Operator, Depends(current_operator)]
BankId = Annotated[str, Path(min_length=1, max_length=64)]
Label = Annotated[str, Path(min_length=1, max_length=16)]
ReservationId = Annotated[str, Path(min_length=1, max_length=64)]
CommandId = Annotated[str, Path(min_length=1, max_length=36)]


# Auditing -----------------------------------------------------------------------------------------


async def _audited(
    request: Request,
    operator: Operator,
    *,
    action: str,
    target_type: str,
    target_id: str,
    reason: str | None,
    work: Callable[[Ctx], tuple[T, dict[str, Any]]],
    admin_only: bool = True,
) -> T:
    """Run an admin's state change and audit it in the same transaction; audit a refusal (not an
    admin, or the change refused) in a transaction of its own, since the change rolls back.
    `admin_only=False`: a change any operator may make to what is theirs (their paging)."""

    def record(ctx: Ctx, outcome: str, detail: dict[str, Any] | None) -> None:
        accounts.audit(
            ctx.session,
            now=ctx.now,
            operator_id=operator.id,
            action=action,
            outcome=outcome,
            target_type=target_type,
            target_id=target_id,
            reason=reason,
            detail=detail,
        )

    def unit(ctx: Ctx) -> T:
        if admin_only and operator.role != "admin":
            raise Forbidden()
        result, detail = work(ctx)
        record(ctx, "ok", detail or None)
        return result

    try:
        return await run_unit(request, unit)
    except ApiError as exc:
        code, refusal = exc.code, {"status": exc.status, "detail": exc.detail}
        await run_unit(request, lambda ctx: record(ctx, code, refusal))
        raise


# Session ------------------------------------------------------------------------------------------


def _too_many(retry_after_s: int) -> ApiError:
    return ApiError(
        429,
        "too_many_attempts",
        "too many failed sign-ins; try again later",
        headers={"Retry-After": str(retry_after_s)},
        retry_after_s=retry_after_s,
    )


def _invalid_credentials() -> ApiError:
    return ApiError(401, "invalid_credentials", "the email or the password is wrong")


@router.post("/session")
async def login(request: Request, body: LoginIn) -> JSONResponse:
    settings = settings_of(request)
    limiter = hashing_limiter(request)
    # Made on first use, with a hash of its own: not on the event loop.
    passwords = await anyio.to_thread.run_sync(passwords_of, request, limiter=limiter)
    client = client_address(request)
    candidate = await run_unit(
        request,
        lambda ctx: accounts.begin_login(ctx.session, body.email, client, ctx.now, settings),
    )
    if candidate.retry_after_s is not None:
        retry = candidate.retry_after_s
        await run_unit(
            request,
            lambda ctx: accounts.audit(
                ctx.session,
                now=ctx.now,
                operator_id=None,
                action="login",
                outcome="too_many_attempts",
            ),
        )
        raise _too_many(retry)
    # The hash is checked outside any transaction: argon2 takes a while by design, and no
    # connection or lock should wait for it.
    valid = await anyio.to_thread.run_sync(
        passwords.verify, candidate.password_hash, body.password, limiter=limiter
    )
    if not valid or candidate.password_hash is None:
        await run_unit(
            request, lambda ctx: accounts.fail_login(ctx.session, candidate, ctx.now, settings)
        )
        raise _invalid_credentials()
    stored = candidate.password_hash
    new_hash = (
        await anyio.to_thread.run_sync(passwords.hash, body.password, limiter=limiter)
        if passwords.needs_rehash(stored)
        else None
    )
    try:
        opened = await run_unit(
            request,
            lambda ctx: accounts.finish_login(ctx.session, candidate, ctx.now, settings, new_hash),
        )
    except accounts.AccountError as exc:
        raise _invalid_credentials() from exc
    who = opened.signed_in
    out = SessionOut(
        operator=OperatorOut(email=who.email, role=who.role),
        csrf_token=accounts.csrf_token(request.app.state.keys, opened.token),
    )
    response = JSONResponse(out.model_dump(mode="json"))
    max_age = int(settings.ops_session_max_hours * 3600)
    set_session_cookie(request, response, opened.token, max_age)
    return response


@router.get("/session")
async def get_session(request: Request, operator: OperatorDep) -> SessionOut:
    return SessionOut(
        operator=OperatorOut(email=operator.email, role=operator.role),
        csrf_token=csrf_for(request),
    )


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
async def logout(request: Request, operator: OperatorDep) -> Response:
    found = await signed_in(request)
    if found is None:  # cannot be: `current_operator` found this same, cached, session
        raise NotSignedIn()
    await run_unit(request, lambda ctx: accounts.end_session(ctx.session, found, ctx.now))
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookie(request, response)
    return response


@router.get("/audit")
async def audit_log(
    request: Request,
    operator: OperatorDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditOut:
    def work(ctx: Ctx) -> AuditOut:
        return AuditOut(
            entries=[
                AuditEntryOut(
                    at=entry.at,
                    operator=email,
                    action=entry.action,
                    target=f"{entry.target_type}:{entry.target_id}" if entry.target_type else None,
                    reason=entry.reason,
                    outcome=entry.outcome,
                )
                for entry, email in repo.recent_audit(ctx.session, limit)
            ]
        )

    return await run_unit(request, work)


# Alerts -------------------------------------------------------------------------------------------


@router.get("/alerts")
async def list_alerts(
    request: Request,
    operator: OperatorDep,
    status: AlertStatus = "open",
    bank_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    type: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> AlertList:
    return await run_unit(
        request,
        lambda ctx: alerts.list_alerts(
            ctx.session, status=status, bank_id=bank_id, alert_type=type, limit=limit
        ),
    )


@router.post("/alerts", status_code=status.HTTP_201_CREATED)
async def raise_alert(request: Request, operator: OperatorDep, body: AlertCreate) -> AlertOut:
    def work(ctx: Ctx) -> tuple[AlertOut, dict[str, Any]]:
        out = alerts.create_manual(ctx.session, operator.email, body, ctx.now)
        return out, {"alert_id": out.id}

    return await _audited(
        request,
        operator,
        action="raise_alert",
        target_type="bank",
        target_id=body.bank_id,
        reason=body.detail.note,
        work=work,
    )


async def _change_alert(
    request: Request,
    operator: Operator,
    alert_id: int,
    body: AlertUpdate | None,
    action: str,
    change: Callable[..., AlertOut],
) -> AlertOut:
    reason = body.reason if body else None
    return await _audited(
        request,
        operator,
        action=action,
        target_type="alert",
        target_id=str(alert_id),
        reason=reason,
        work=lambda ctx: (change(ctx.session, alert_id, operator.id, reason, ctx.now), {}),
    )


@router.post("/alerts/{alert_id}/acknowledge")
async def acknowledge_alert(
    request: Request, operator: OperatorDep, alert_id: int, body: AlertUpdate | None = None
) -> AlertOut:
    return await _change_alert(
        request, operator, alert_id, body, "acknowledge_alert", alerts.acknowledge
    )


@router.post("/alerts/{alert_id}/resolve")
async def resolve_alert(
    request: Request, operator: OperatorDep, alert_id: int, body: AlertUpdate | None = None
) -> AlertOut:
    return await _change_alert(request, operator, alert_id, body, "resolve_alert", alerts.resolve)


# Actions ------------------------------------------------------------------------------------------


async def _compartment_action(
    request: Request,
    operator: Operator,
    bank_id: str,
    label: str,
    body: ActionIn,
    command_type: actions.CompartmentAction,
) -> CommandAccepted:
    settings = settings_of(request)
    budget = actions.OpenBudget(
        opens=settings.remote_open_budget,
        window=timedelta(minutes=settings.remote_open_window_minutes),
    )

    def work(ctx: Ctx) -> tuple[CommandAccepted, dict[str, Any]]:
        out = actions.compartment_command(
            ctx, bank_id, label, command_type, body.reason, budget=budget
        )
        return out, {"command_id": out.command_id, "bank_id": bank_id}

    return await _audited(
        request,
        operator,
        action=command_type,
        target_type="compartment",
        target_id=f"{bank_id}/{label}",
        reason=body.reason,
        work=work,
    )


@router.post("/banks/{bank_id}/compartments/{label}/open", status_code=status.HTTP_202_ACCEPTED)
async def open_compartment(
    request: Request, operator: OperatorDep, bank_id: BankId, label: Label, body: ActionIn
) -> CommandAccepted:
    """Open a door remotely, within the fleet's budget of remote opens (429 beyond it, with an
    alert for whoever watches the dashboard)."""
    try:
        return await _compartment_action(
            request, operator, bank_id, label, body, "open_compartment"
        )
    except ApiError as exc:
        if exc.code == actions.OPEN_BUDGET_EXHAUSTED:
            await run_unit(
                request, lambda ctx: actions.alert_open_budget(ctx, operator, bank_id, label)
            )
        raise


@router.post("/banks/{bank_id}/compartments/{label}/disable", status_code=status.HTTP_202_ACCEPTED)
async def disable_compartment(
    request: Request, operator: OperatorDep, bank_id: BankId, label: Label, body: ActionIn
) -> CommandAccepted:
    return await _compartment_action(request, operator, bank_id, label, body, "disable_compartment")


@router.post("/banks/{bank_id}/compartments/{label}/enable", status_code=status.HTTP_202_ACCEPTED)
async def enable_compartment(
    request: Request, operator: OperatorDep, bank_id: BankId, label: Label, body: ActionIn
) -> CommandAccepted:
    return await _compartment_action(request, operator, bank_id, label, body, "enable_compartment")


@router.post("/reservations/{reservation_id}/extend")
async def extend_reservation(
    request: Request, operator: OperatorDep, reservation_id: ReservationId, body: ExtendIn
) -> ExtendOut:
    def work(ctx: Ctx) -> tuple[ExtendOut, dict[str, Any]]:
        out, bank_id = actions.extend_deadline(ctx, operator, reservation_id, body.hours)
        return out, {"hours": body.hours, "bank_id": bank_id, "command_id": out.command_id}

    return await _audited(
        request,
        operator,
        action="extend_deadline",
        target_type="reservation",
        target_id=reservation_id,
        reason=body.reason,
        work=work,
    )


@router.post("/reservations/{reservation_id}/reissue-code", status_code=status.HTTP_202_ACCEPTED)
async def reissue_code(
    request: Request, operator: OperatorDep, reservation_id: ReservationId, body: ActionIn
) -> CommandAccepted:
    def work(ctx: Ctx) -> tuple[CommandAccepted, dict[str, Any]]:
        out, bank_id = actions.reissue_code(ctx, reservation_id, body.reason)
        return out, {"bank_id": bank_id, "command_id": out.command_id}

    return await _audited(
        request,
        operator,
        action="reissue_code",
        target_type="reservation",
        target_id=reservation_id,
        reason=body.reason,
        work=work,
    )


@router.get("/commands/{command_id}")
async def get_command(request: Request, operator: OperatorDep, command_id: CommandId) -> CommandOut:
    return await run_unit(request, lambda ctx: actions.command_status(ctx, command_id))
