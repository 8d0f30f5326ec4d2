"""The kiosk web app: the touchscreen page, its static files and the local JSON API."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from locker_node.flows import errors, groups
from locker_node.flows.deposit import DepositView
from locker_node.flows.facade import LockerFlows
from locker_node.flows.pickup import DoorResult
from locker_node.kiosk import bank_status, dropoff_routes, overflow_routes, schemas
from locker_node.kiosk.deps import SESSION_COOKIE, CourierDep
from locker_node.kiosk.i18n import STRINGS
from locker_node.kiosk.layout import bank_columns

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent

# Every refusal of a flow, as the kiosk answers it: the one place a flow error meets HTTP.
FLOW_ERROR_STATUS: dict[type[errors.FlowError], int] = {
    errors.BadInput: 422,
    errors.InvalidCode: 401,
    errors.InvalidQr: 401,
    errors.InvalidCredentials: 401,
    errors.NotLoggedIn: 401,
    errors.SessionExpired: 401,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.AlreadyCollected: 409,
    errors.Refused: 409,
    errors.LockedOut: 429,
    errors.DoorFault: 503,
    errors.CommandRefused: 403,  # central's commands never come through the kiosk
    errors.CentralUnreachable: 503,  # asked of central while the courier waits: try later
}

# What the carrier picker shows; a carrier not listed here is shown by its id.
CARRIER_NAMES = {"usps": "USPS", "fedex": "FedEx", "ups": "UPS", "dhl": "DHL"}

_ERROR_CODES = {
    400: "bad_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


@dataclass(frozen=True)
class KioskUi:
    bank_id: str
    idle_timeout_s: int = 60
    language: str = "en"
    code_digits: int = 10
    # Size class of each compartment label, for the door map; a label missing here is drawn
    # as a small door.
    compartment_sizes: Mapping[str, str] = field(default_factory=dict)
    # Labels of the doors within reach from a wheelchair, marked as such on the door map.
    accessible_doors: frozenset[str] = frozenset()


class SecurityHeaders:
    """Headers for every answer: nothing cached, nothing framed, scripts only from the node."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = (
                    "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                    "frame-ancestors 'none'; base-uri 'none'"
                )
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail, **extra}


def flow_error_status(exc: errors.FlowError) -> int:
    for kind in type(exc).__mro__:
        if kind in FLOW_ERROR_STATUS:
            return FLOW_ERROR_STATUS[kind]
    return 400


def create_kiosk_app(flows: LockerFlows, ui: KioskUi) -> FastAPI:
    app = FastAPI(
        title="Locker node kiosk",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.flows = flows
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _install_error_handlers(app)
    _add_page(app, ui)
    _add_recipient_routes(app, flows, ui)
    _add_courier_routes(app, flows)
    dropoff_routes.add_routes(app, flows)
    overflow_routes.add_routes(app, flows)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.FlowError)
    async def _flow_error(request: Request, exc: errors.FlowError) -> JSONResponse:
        headers = {}
        if "retry_after_s" in exc.extra:
            headers["Retry-After"] = str(exc.extra["retry_after_s"])
        return JSONResponse(
            error_body(exc.code, exc.detail, **exc.extra),
            status_code=flow_error_status(exc),
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
            problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
        return JSONResponse(
            error_body("bad_input", "; ".join(problems) or "invalid request body"),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _ERROR_CODES.get(exc.status_code, "error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("kiosk request failed: %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal", "internal error"), status_code=500)


def _add_page(app: FastAPI, ui: KioskUi) -> None:
    templates = Jinja2Templates(directory=HERE / "templates")
    page_config = json.dumps(
        {
            "bankId": ui.bank_id,
            "idleTimeoutS": ui.idle_timeout_s,
            "language": ui.language,
            "codeDigits": ui.code_digits,
            "carrierNames": CARRIER_NAMES,
        }
    )
    page_strings = json.dumps(STRINGS, ensure_ascii=False)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request) -> Response:
        return templates.TemplateResponse(
            request,
            "kiosk.html",
            {
                "bank_id": ui.bank_id,
                "strings": STRINGS[ui.language],
                "language": ui.language,
                "config_json": page_config,
                "strings_json": page_strings,
                "code_digits": ui.code_digits,
            },
        )


def _add_recipient_routes(app: FastAPI, flows: LockerFlows, ui: KioskUi) -> None:
    @app.get("/api/status")
    def status(door: Annotated[str | None, Query(max_length=16)] = None) -> schemas.StatusOut:
        keypad = flows.keypad_status()
        settings = flows.bank_settings()
        return schemas.StatusOut(
            bank_id=ui.bank_id,
            kiosk_id=flows.policy.kiosk_id,
            code_digits=flows.policy.code_digits,
            keypad=schemas.KeypadOut(locked=keypad.locked, retry_after_s=keypad.retry_after_s),
            door=None if door is None else _door_state(flows, door),
            maintenance=bank_status.maintenance_out(settings),
            settings=bank_status.settings_out(settings),
        )

    @app.post(
        "/api/pickup",
        responses={401: {}, 422: {}, 429: {}, 503: {}},
    )
    def pickup(body: schemas.PickupIn) -> schemas.DoorOut:
        return _door_out(flows.pickup_with_code(body.code))

    @app.post("/api/pickup/qr", responses={401: {}, 422: {}, 503: {}})
    def pickup_qr(body: schemas.QrPickupIn) -> schemas.DoorOut:
        return _door_out(flows.pickup_with_qr(body.token))

    @app.get("/api/layout")
    def layout() -> schemas.LayoutOut:
        """The bank's columns and doors, for the door map: labels, sizes and which doors are
        within reach from a wheelchair, nothing else."""
        labels = [status.label for status in flows.ports.doors.statuses()]
        return schemas.LayoutOut(
            bank_id=ui.bank_id,
            columns=[
                schemas.LayoutColumnOut(
                    name=column.name,
                    compartments=[
                        schemas.LayoutDoorOut(
                            label=door.label,
                            size=door.size,
                            height=door.height,
                            accessible=door.label in ui.accessible_doors,
                        )
                        for door in column.doors
                    ],
                )
                for column in bank_columns(labels, ui.compartment_sizes)
            ],
        )


def _door_state(flows: LockerFlows, label: str) -> schemas.DoorStateOut | None:
    state = flows.door_state(label)
    return None if state is None else schemas.DoorStateOut(compartment=label, state=state)


def _add_courier_routes(app: FastAPI, flows: LockerFlows) -> None:
    _add_session_routes(app, flows)
    _add_deposit_routes(app, flows)
    _add_return_routes(app, flows)


def _add_session_routes(app: FastAPI, flows: LockerFlows) -> None:
    @app.get("/api/courier/carriers")
    def carriers() -> schemas.CarriersOut:
        return schemas.CarriersOut(carriers=flows.carriers())

    @app.post("/api/courier/login", responses={401: {}, 422: {}, 429: {}})
    def login(body: schemas.LoginIn, response: Response) -> schemas.LoginOut:
        result = flows.login(body.carrier, body.pin)
        response.set_cookie(
            SESSION_COOKIE,
            result.token,
            httponly=True,
            samesite="strict",
            path="/api/courier",
        )
        return schemas.LoginOut(
            token=result.token, carrier=result.carrier, expires_in_s=result.expires_in_s
        )

    @app.get("/api/courier/session", responses={401: {}})
    def session(who: CourierDep) -> schemas.SessionOut:
        return schemas.SessionOut(
            carrier=who.carrier_id,
            expires_in_s=int(flows.policy.session_idle.total_seconds()),
        )

    @app.post("/api/courier/logout", status_code=204, responses={401: {}})
    def logout(who: CourierDep) -> Response:
        flows.logout(who)
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/api/courier")
        return response


def _add_deposit_routes(app: FastAPI, flows: LockerFlows) -> None:
    @app.post("/api/courier/deposit", responses={401: {}, 404: {}, 409: {}, 422: {}, 503: {}})
    def deposit(body: schemas.DepositIn, who: CourierDep) -> schemas.DepositOut:
        if body.compartment is not None:  # in with a group-mate's parcel (`flows.groups`)
            view = groups.start_shared_deposit(
                flows.ports, who, body.tracking_number, body.compartment, size=body.size
            )
        else:
            view = flows.start_deposit(who, body.tracking_number, body.size)
        return _deposit_out(view, shared_doors=groups.shared_doors(flows.ports, view.deposit_id))

    @app.post("/api/courier/deposit/{deposit_id}/confirm", responses={401: {}, 404: {}, 409: {}})
    def confirm(deposit_id: str, who: CourierDep) -> schemas.ConfirmOut:
        result = flows.confirm_deposit(who, deposit_id)
        return schemas.ConfirmOut(
            deposit_id=result.deposit_id,
            parcel_id=result.parcel_id,
            compartment=result.compartment,
            status="confirmed",
            pickup_deadline=result.pickup_deadline,
        )

    @app.post(
        "/api/courier/deposit/{deposit_id}/too-small",
        responses={401: {}, 404: {}, 409: {}, 503: {}},
    )
    def too_small(deposit_id: str, who: CourierDep) -> schemas.DepositOut:
        return _deposit_out(flows.too_small(who, deposit_id))

    @app.post(
        "/api/courier/deposit/{deposit_id}/door-problem",
        responses={401: {}, 404: {}, 409: {}, 503: {}},
    )
    def door_problem(deposit_id: str, who: CourierDep) -> schemas.DepositOut:
        return _deposit_out(flows.report_door_problem(who, deposit_id))

    @app.post(
        "/api/courier/deposit/{deposit_id}/cancel",
        responses={401: {}, 404: {}, 409: {}, 503: {}},
    )
    def cancel(deposit_id: str, who: CourierDep) -> schemas.CancelOut:
        result = flows.cancel_deposit(who, deposit_id)
        return schemas.CancelOut(
            deposit_id=result.deposit_id,
            status=str(result.status),
            compartment=result.compartment,
            door=result.door,
        )


def _add_return_routes(app: FastAPI, flows: LockerFlows) -> None:
    @app.get("/api/courier/returns", responses={401: {}})
    def returns(who: CourierDep) -> schemas.ReturnsOut:
        return schemas.ReturnsOut(
            returns=[
                schemas.ReturnOut(
                    parcel_id=item.parcel_id,
                    tracking_number=item.tracking_number,
                    compartment=item.compartment,
                    pickup_deadline=item.pickup_deadline,
                )
                for item in flows.list_returns(who)
            ]
        )

    @app.post(
        "/api/courier/returns/{parcel_id}/open", responses={401: {}, 404: {}, 409: {}, 503: {}}
    )
    def open_return(parcel_id: str, who: CourierDep) -> schemas.ReturnDoorOut:
        result = flows.open_return(who, parcel_id)
        return schemas.ReturnDoorOut(
            parcel_id=parcel_id, compartment=result.compartment, door="open", status="expired"
        )

    @app.post("/api/courier/returns/{parcel_id}/confirm", responses={401: {}, 404: {}, 409: {}})
    def confirm_return(parcel_id: str, who: CourierDep) -> schemas.ReturnDoorOut:
        result = flows.confirm_return(who, parcel_id)
        return schemas.ReturnDoorOut(
            parcel_id=parcel_id, compartment=result.compartment, door="closed", status="returned"
        )


def _door_out(result: DoorResult) -> schemas.DoorOut:
    return schemas.DoorOut(
        compartment=result.compartment,
        door=result.door,
        compartments=list(result.compartments) or [result.compartment],
        failed=list(result.failed),
    )


def _deposit_out(view: DepositView, *, shared_doors: list[str] | None = None) -> schemas.DepositOut:
    return schemas.DepositOut(
        deposit_id=view.deposit_id,
        compartment=view.compartment,
        size=view.size,
        door=view.door,
        status=str(view.status),
        moved_from=list(view.moved_from),
        shared_doors=shared_doors or [],
    )
