"""The parcel page's routes: `/p/<token>`, its QR image and the recipient's three actions.

HTML for people, not API: outside the OpenAPI document, and every answer is a page (errors
included, in the visitor's language), never JSON. The token in the URL is the credential, so
every answer carries `Referrer-Policy: no-referrer` and `Cache-Control: no-store`; the forms
need no CSRF token of their own, since a request that can name the token holds the credential
already (and `form-action 'self'` keeps the page's forms on this site).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, quote, urlencode

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException

from central.context import Ctx
from central.errors import ApiError
from central.keys import ServiceKeys
from central.models import Reservation, ReservationStatus
from central.notices.content import qr_png
from central.notices.hours import Language
from central.notices.pickup import open_pickup
from central.notices.tokens import PageToken, TokenProblem, read_page_token
from central.parcel_page import view
from central.parcel_page.words import LANGUAGE_NAMES, LANGUAGES, WORDS, as_language
from central.parcel_page.words import choose_language as choose
from central.ratelimit import TokenBuckets, client_address
from central.reservations import repository as reservations_repository

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
STATIC_PATH = "/p/static"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    # No script at all, nothing from another origin, no framing.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}
# A recipient opens the page a few times and presses a button or two: this is plenty for one
# person, and slows down anyone trying tokens (which could not be guessed anyway).
REQUESTS_PER_MINUTE = 60
BURST = 20
_MAX_FORM_FIELDS = 10
# Refusals of the services called, as the page words them (`words.Words.messages`).
_REFUSALS = {
    "not_ready": "not_ready",
    "no_contact": "no_contact",
    "resend_limit": "resend_limit",
    "not_extendable": "not_ready",
    "extension_limit": "extension_unavailable",
    "concurrent_update": "busy",
}

templates = Jinja2Templates(directory=HERE / "templates")
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True


def static_files() -> StaticFiles:
    """The page's stylesheet, mounted at `STATIC_PATH`."""
    return StaticFiles(directory=HERE / "static")


def buckets_of(app: FastAPI) -> TokenBuckets:
    """The app's per-client buckets for these pages, made on first use (a test may put its own
    on `app.state.parcel_page_buckets` first)."""
    buckets: TokenBuckets | None = getattr(app.state, "parcel_page_buckets", None)
    if buckets is None:
        clock = app.state.clock
        buckets = TokenBuckets(
            rate_per_s=REQUESTS_PER_MINUTE / 60,
            burst=BURST,
            clock=lambda: clock().timestamp(),
        )
        app.state.parcel_page_buckets = buckets
    return buckets


def asked_language(request: Request) -> Language | None:
    return as_language(request.query_params.get("lang"))


def fallback_language(request: Request) -> Language:
    """The language of a page about no parcel: `?lang=`, else the browser's, else English."""
    return choose(request.query_params.get("lang"), None, request.headers.get("accept-language"))


class PageRoute(APIRoute):
    """A parcel page route: the client's token taken first, the page's headers on every answer,
    and anything FastAPI would answer in JSON (a request it cannot read) answered as a page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            wait_s = buckets_of(request.app).take(client_address(request))
            if wait_s is not None:
                retry = str(max(1, math.ceil(wait_s)))
                response = error_page(request, "too_many", 429, headers={"Retry-After": retry})
            else:
                try:
                    response = await handler(request)
                except (RequestValidationError, HTTPException):
                    response = error_page(request, "not_found", 404)
            response.headers.update(PAGE_HEADERS)
            return response

        return handle


router = APIRouter(include_in_schema=False, route_class=PageRoute)


# Rendering ----------------------------------------------------------------------------------------


class LanguageLink(NamedTuple):
    code: Language
    name: str
    href: str
    current: bool


def _languages(language: Language, href: Callable[[Language], str]) -> list[LanguageLink]:
    return [
        LanguageLink(code, LANGUAGE_NAMES[code], href(code), code == language) for code in LANGUAGES
    ]


def error_page(
    request: Request, kind: str, status: int, *, headers: dict[str, str] | None = None
) -> Response:
    """A page that says what went wrong and what to do, and nothing about any parcel."""
    language = fallback_language(request)
    words = WORDS[language]
    return templates.TemplateResponse(
        request,
        "error.html",
        {
            "w": words,
            "lang": language,
            "static": STATIC_PATH,
            "kind": kind,
            "error": words.errors[kind],
            "languages": _languages(language, lambda code: "?" + urlencode({"lang": code})),
        },
        status_code=status,
        headers=headers,
    )


def page_url(token: str, language: Language | None = None, message: str | None = None) -> str:
    query = {k: v for k, v in (("lang", language), ("msg", message)) if v}
    return f"/p/{quote(token, safe='')}" + (f"?{urlencode(query)}" if query else "")


def render_parcel(
    request: Request,
    token: str,
    facts: view.ParcelFacts,
    *,
    asked: Language | None,
    message: str | None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    language = choose(asked, facts.recipient_language, request.headers.get("accept-language"))
    base = page_url(token)
    return templates.TemplateResponse(
        request,
        "parcel.html",
        {
            "w": WORDS[language],
            "lang": language,
            "static": STATIC_PATH,
            "view": view.build_view(facts, language, message),
            "base": base,
            "qr_url": f"{base}/qr.png",
            "languages": _languages(language, lambda code: page_url(token, code)),
        },
        status_code=status,
        headers=headers,
    )


# Units of work ------------------------------------------------------------------------------------


def _in_transaction(
    sessions: sessionmaker[Session], keys: ServiceKeys, now: datetime, work: Callable[[Ctx], T]
) -> T:
    with sessions() as session, session.begin():
        return work(Ctx(session=session, keys=keys, now=now))


async def run_unit(request: Request, work: Callable[[Ctx], T]) -> T:
    """`work` in one transaction and one worker-thread hop (see `central.deps.CarrierWork`)."""
    state = request.app.state
    return await anyio.to_thread.run_sync(
        _in_transaction, state.sessions, state.keys, state.clock(), work, limiter=state.db_limiter
    )


def read_token(request: Request, token: str) -> PageToken | Response:
    """The token's reservation, or the page saying what is wrong with the token."""
    found = read_page_token(request.app.state.keys, token, request.app.state.clock())
    if found is TokenProblem.EXPIRED:
        return error_page(request, "expired", 410)
    if isinstance(found, TokenProblem):
        return error_page(request, "not_found", 404)
    return found


# Routes -------------------------------------------------------------------------------------------


@router.get("/p/{token}")
async def parcel_page(request: Request, token: str) -> Response:
    found = read_token(request, token)
    if isinstance(found, Response):
        return found
    facts = await run_unit(request, lambda ctx: view.read_facts(ctx, found.reservation_id))
    if facts is None:
        return error_page(request, "not_found", 404)
    message = request.query_params.get("msg")
    return render_parcel(request, token, facts, asked=asked_language(request), message=message)


@router.get("/p/{token}/qr.png")
async def qr_image(request: Request, token: str) -> Response:
    """The pickup QR code, while the parcel waits in the locker; a 404 page otherwise."""
    found = read_token(request, token)
    if isinstance(found, Response):
        return found

    def payload(ctx: Ctx) -> str | None:
        reservation = reservations_repository.get(ctx.session, found.reservation_id)
        if reservation is None or reservation.status != ReservationStatus.DEPOSITED:
            return None
        secret = open_pickup(ctx.keys, reservation.pickup_secret_sealed)
        return secret.qr_payload if secret is not None else None

    qr_payload = await run_unit(request, payload)
    if qr_payload is None:
        return error_page(request, "not_found", 404)
    image = await anyio.to_thread.run_sync(qr_png, qr_payload)
    return Response(image, media_type="image/png")


@router.post("/p/{token}/resend")
async def resend(request: Request, token: str) -> Response:
    return await act(request, token, view.resend, await read_form(request))


@router.post("/p/{token}/extend")
async def extend(request: Request, token: str) -> Response:
    return await act(request, token, view.extend_once, await read_form(request))


@router.post("/p/{token}/problem")
async def report_problem(request: Request, token: str) -> Response:
    form = await read_form(request)
    message = view.clean_message(form.get("message", ""))
    reason = form.get("reason", "")
    if len(message) > view.MAX_PROBLEM_MESSAGE:
        return await act(request, token, lambda ctx, r: view.Outcome("problem_too_long"), form)
    return await act(
        request, token, lambda ctx, r: view.report_problem(ctx, r, reason, message), form
    )


@router.get("/p/{token}/resend")
@router.get("/p/{token}/extend")
@router.get("/p/{token}/problem")
async def action_by_get(request: Request, token: str) -> Response:
    """An action's address opened as a link (a reload after a refusal, a bookmark): the page."""
    return RedirectResponse(page_url(token, asked_language(request)), status_code=303)


# Actions ------------------------------------------------------------------------------------------


async def read_form(request: Request) -> dict[str, str]:
    """The fields of the page's forms; anything else (another encoding, junk) is no fields."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}
    try:
        pairs = parse_qsl(
            (await request.body()).decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=_MAX_FORM_FIELDS,
        )
    except ValueError:  # UnicodeDecodeError is one, and so are too many fields
        return {}
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


async def act(
    request: Request,
    token: str,
    work: Callable[[Ctx, Reservation], view.Outcome],
    form: dict[str, str],
) -> Response:
    """Run an action on the token's reservation and go back to the page with its outcome.

    Post/redirect/get (303) with the outcome's message in the page's language; a refusal that
    passes with time (too many resends or reports) is the page itself, 429 with Retry-After.
    """
    found = read_token(request, token)
    if isinstance(found, Response):
        return found
    language = as_language(form.get("lang")) or asked_language(request)

    def unit(ctx: Ctx) -> view.Outcome | None:
        reservation = reservations_repository.get(
            ctx.session, found.reservation_id, for_update=True
        )
        return None if reservation is None else work(ctx, reservation)

    try:
        outcome = await run_unit(request, unit)
    except ApiError as exc:  # the transaction rolled back
        retry = (exc.headers or {}).get("Retry-After")
        outcome = view.Outcome(
            _REFUSALS.get(exc.code, "unavailable"), int(retry) if retry else None
        )
    if outcome is None:
        return error_page(request, "not_found", 404)
    if outcome.retry_after_s is None:
        return RedirectResponse(page_url(token, language, outcome.message), status_code=303)
    facts = await run_unit(request, lambda ctx: view.read_facts(ctx, found.reservation_id))
    if facts is None:
        return error_page(request, "not_found", 404)
    return render_parcel(
        request,
        token,
        facts,
        asked=language,
        message=outcome.message,
        status=429,
        headers={"Retry-After": str(outcome.retry_after_s)},
    )
