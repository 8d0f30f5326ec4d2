"""Insight JSON API under /ops/api: overview, bank, parcels and their notices, charts, reports
(any operator; read only).

Where each reads (the operator's session is always checked on the primary: checking writes):

- on the read standby, data that may be a few seconds behind (`run_lagging`): the overview and
  its notice health, the charts, the daily reports. Figures over the whole network or over days,
  the heaviest reads of the dashboard, that nobody acts on within seconds.
- on the primary, exact (`run_read`): the bank page (its live compartment grid and alerts are
  what an operator opens doors and resolves alerts from), the parcel search and a parcel's
  notices (looked up for a recipient on the phone, right after something happened, and what a
  resend or an action is decided on).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from central.ops.auth import current_operator, run_lagging_read, run_unit
from central.ops.insight import charts, notices, reports, service

T = TypeVar("T")
router = APIRouter(
    prefix="/ops/api", include_in_schema=False, dependencies=[Depends(current_operator)]
)
BankParam = Annotated[str | None, Query(max_length=64)]
ReservationId = Annotated[str, Path(min_length=1, max_length=64)]
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


async def run_read(request: Request, work: Callable[[Session, datetime], T]) -> T:
    """The request's database work in one transaction and one worker-thread hop (`run_unit`);
    the JSON is encoded afterwards, on the event loop."""
    return await run_unit(request, lambda ctx: work(ctx.session, ctx.now))


async def run_lagging(request: Request, work: Callable[[Session, datetime], T]) -> T:
    """As `run_read`, on the read standby: for figures that may be a little behind."""
    return await run_lagging_read(request, lambda ctx: work(ctx.session, ctx.now))


def _json(content: Any) -> JSONResponse:
    # Already JSON-shaped: skipping FastAPI's encoder matters for 2,000 banks.
    return JSONResponse(content)


@router.get("/overview")
async def get_overview(
    request: Request,
    q: Annotated[str | None, Query(max_length=200)] = None,
    status: service.StatusFilter = "all",
    sort: service.SortKey = "name",
    order: service.Order = "asc",
) -> JSONResponse:
    return _json(
        await run_lagging(
            request,
            lambda session, now: service.overview(
                session, now, q=q, status=status, sort=sort, order=order
            ),
        )
    )


@router.get("/overview/notices")
async def get_notice_health(request: Request) -> JSONResponse:
    """Notices failed in the last 24 h and those waiting after an attempt, network-wide: apart
    from /overview, whose totals cover only the banks a filter shows."""
    return _json(await run_lagging(request, notices.health))


@router.get("/banks/{bank_id}")
async def get_bank(request: Request, bank_id: str) -> JSONResponse:
    return _json(
        await run_read(request, lambda session, now: service.bank_detail(session, now, bank_id))
    )


@router.get("/parcels")
async def get_parcels(
    request: Request,
    tracking_number: Annotated[str, Query(min_length=1, max_length=64)],
) -> JSONResponse:
    number = tracking_number.strip()
    return _json(
        await run_read(request, lambda session, _now: service.search_parcels(session, number))
    )


@router.get("/parcels/{reservation_id}/notices")
async def get_parcel_notices(request: Request, reservation_id: ReservationId) -> JSONResponse:
    return _json(
        await run_read(
            request, lambda session, _now: notices.parcel_notices(session, reservation_id)
        )
    )


@router.get("/charts/occupancy")
async def get_occupancy_chart(
    request: Request,
    bank_id: BankParam = None,
    hours: Annotated[int, Query(ge=1, le=24 * 90)] = 24,
) -> JSONResponse:
    return _json(
        await run_lagging(
            request, lambda session, now: charts.occupancy(session, now, bank_id, hours)
        )
    )


@router.get("/charts/dwell")
async def get_dwell_chart(
    request: Request,
    bank_id: BankParam = None,
    days: Annotated[int, Query(ge=1, le=365)] = 30,
) -> JSONResponse:
    return _json(
        await run_lagging(request, lambda session, now: charts.dwell(session, now, bank_id, days))
    )


@router.get("/charts/throughput")
async def get_throughput_chart(
    request: Request,
    bank_id: BankParam = None,
    hours: Annotated[int, Query(ge=1, le=24 * 14)] = 48,
) -> JSONResponse:
    return _json(
        await run_lagging(
            request, lambda session, now: charts.throughput(session, now, bank_id, hours)
        )
    )


@router.get("/charts/faults")
async def get_faults_chart(
    request: Request,
    bank_id: BankParam = None,
    days: Annotated[int, Query(ge=1, le=365)] = 14,
) -> JSONResponse:
    return _json(
        await run_lagging(request, lambda session, now: charts.faults(session, now, bank_id, days))
    )


def _report(bank_id: str | None, day: date | None) -> Callable[[Session, datetime], dict[str, Any]]:
    def work(session: Session, now: datetime) -> dict[str, Any]:
        # Without a date: yesterday by the UTC calendar, a day that is over in most places.
        return reports.daily(session, now, day or (now.date() - timedelta(days=1)), bank_id)

    return work


@router.get("/reports/daily")
async def get_daily_report(
    request: Request, bank_id: BankParam = None, date: date | None = None
) -> JSONResponse:
    return _json(await run_lagging(request, _report(bank_id, date)))


@router.get("/reports/daily.csv")
async def get_daily_report_csv(
    request: Request, bank_id: BankParam = None, date: date | None = None
) -> Response:
    report = await run_lagging(request, _report(bank_id, date))
    name = f"daily-report-{report['date']}"
    if bank_id is not None and _SAFE_NAME.fullmatch(bank_id):
        name += f"-{bank_id}"
    return Response(
        reports.to_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )
