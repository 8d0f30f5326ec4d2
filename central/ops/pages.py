"""The dashboard's HTML pages: server-rendered shells whose scripts poll the /ops/api JSON API."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from central.config import map_tile_origin
from central.ops.auth import Operator, operator_or_none, settings_of
from central.paging.words import ALERT_KINDS

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
STATIC_PATH = "/ops/static"


def security_headers(*, image_origins: tuple[str, ...] = ()) -> dict[str, str]:
    """Everything the pages load comes from central itself: no CDN, no inline script, no
    framing; images also from `image_origins` (the overview's map tiles). Chart.js, Leaflet and
    the scripts set element styles through the CSSOM, which `style-src` does not cover."""
    images = " ".join(("'self'", "data:", *image_origins))
    return {
        "Content-Security-Policy": (
            f"default-src 'self'; img-src {images}; object-src 'none'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


SECURITY_HEADERS = security_headers()

templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/ops", include_in_schema=False)

# (path, label) of the navigation, in order; the bank page is reached from the overview.
NAVIGATION = (
    ("/ops", "Overview"),
    ("/ops/parcels", "Parcels"),
    ("/ops/alerts", "Alerts"),
    ("/ops/charts", "Charts"),
    ("/ops/reports", "Reports"),
    ("/ops/fleet", "Fleet"),
    ("/ops/approvals", "Approvals"),
    ("/ops/team", "Team"),
    ("/ops/paging", "Paging"),
    ("/ops/audit", "Audit"),
)


def static_files() -> StaticFiles:
    """The dashboard's CSS, scripts and npm vendor files, mounted at `STATIC_PATH`."""
    return StaticFiles(directory=STATIC_DIR, check_dir=False)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this dashboard only, never another site."""
    if not target:
        return "/ops"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target or not target.isprintable():
        return "/ops"
    if parts.path != "/ops" and not parts.path.startswith("/ops/"):
        return "/ops"
    if parts.path.startswith(("/ops/api", "/ops/static", "/ops/login")):
        return "/ops"
    return target


def _login_redirect(request: Request) -> RedirectResponse:
    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(
        f"/ops/login?next={quote(wanted, safe='/')}", status_code=303, headers=SECURITY_HEADERS
    )


def _render(
    request: Request,
    template: str,
    operator: Operator | None,
    *,
    headers: Mapping[str, str] = SECURITY_HEADERS,
    **context: Any,
) -> Response:
    return templates.TemplateResponse(
        request,
        template,
        {
            "operator": operator,
            "is_admin": operator is not None and operator.role == "admin",
            "navigation": NAVIGATION,
            "static": STATIC_PATH,
            **context,
        },
        headers=dict(headers),
    )


async def _page(
    request: Request,
    template: str,
    active: str,
    *,
    headers: Mapping[str, str] = SECURITY_HEADERS,
    **context: Any,
) -> Response:
    operator = await operator_or_none(request)
    if operator is None:
        return _login_redirect(request)
    return _render(request, template, operator, headers=headers, active=active, **context)


@router.get("/login", response_class=HTMLResponse)
async def login_page(
    request: Request, next_path: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    target = safe_next(next_path)
    if await operator_or_none(request) is not None:
        return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    return _render(request, "login.html", None, active="", next=target)


@router.get("", response_class=HTMLResponse)
async def overview_page(request: Request) -> Response:
    # The map's tiles come from the tile server's origin: only this page lets images come from it.
    settings = settings_of(request)
    origin = map_tile_origin(settings.map_tile_url)
    return await _page(
        request,
        "overview.html",
        "/ops",
        headers=security_headers(image_origins=(origin,) if origin else ()),
        map_tile_url=settings.map_tile_url,
        map_attribution=settings.map_attribution,
    )


@router.get("/banks/{bank_id}", response_class=HTMLResponse)
async def bank_page(request: Request, bank_id: str) -> Response:
    return await _page(request, "bank.html", "/ops", bank_id=bank_id)


@router.get("/parcels", response_class=HTMLResponse)
async def parcels_page(request: Request) -> Response:
    return await _page(request, "parcels.html", "/ops/parcels")


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(request: Request) -> Response:
    return await _page(request, "alerts.html", "/ops/alerts", alert_kinds=ALERT_KINDS)


@router.get("/charts", response_class=HTMLResponse)
async def charts_page(request: Request) -> Response:
    return await _page(request, "charts.html", "/ops/charts")


@router.get("/reports", response_class=HTMLResponse)
async def reports_page(request: Request) -> Response:
    return await _page(request, "reports.html", "/ops/reports")


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(request: Request) -> Response:
    return await _page(request, "audit.html", "/ops/audit")
