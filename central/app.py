"""The one place where central's objects are built and wired together."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
from anyio import CapacityLimiter
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from carrier_adapters.base import CarrierAdapter
from carrier_adapters.registry import build_adapters
from carrier_adapters.settings import CarrierSettings
from central.banks.endpoints import router as banks_router
from central.banks.public import router as public_banks_router
from central.banks.service import BankDirectory
from central.clock import Clock, utcnow
from central.config import CentralSettings
from central.db import (
    READ_POOL_SIZE,
    LaggingReads,
    async_twin,
    make_engine,
    make_read_engine,
    make_sessionmaker,
)
from central.dropoffs.endpoints import router as dropoffs_router
from central.errors import install_error_handlers
from central.keys import ServiceKeys, load_master_key
from central.limits import BodyLimit
from central.metrics import install_metrics
from central.nodes.auth import SeenKeys
from central.nodes.endpoints import add_body_schemas as add_node_body_schemas
from central.nodes.endpoints import router as nodes_router
from central.ops import approvals as ops_approvals
from central.ops import bank_admin as ops_bank_admin
from central.ops import fleet as ops_fleet
from central.ops import pages as ops_pages
from central.ops import paging_api as ops_paging
from central.ops import team as ops_team
from central.ops import updates as ops_updates
from central.ops.endpoints import router as ops_router
from central.ops.insight.endpoints import router as ops_insight_router
from central.parcel_page import endpoints as parcel_page
from central.parcel_page.endpoints import router as parcel_page_router
from central.reservations.endpoints import add_create_route
from central.reservations.endpoints import router as reservations_router
from central.reservations.intake import BATCHES_IN_FLIGHT, ReservationIntake
from central.serving import freeze_startup_heap
from central.tracking.endpoints import router as carrier_webhooks_router
from central.webhooks.endpoints import router as webhooks_router

API_DESCRIPTION = """
Carrier API v1 of the locker network. Authenticate with `Authorization: Bearer <api key>`.
Errors are `{"error": "<code>", "detail": "<text>", ...}` with a 4xx status.
"""


def build_keys(settings: CentralSettings) -> ServiceKeys:
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    return ServiceKeys(load_master_key(secret, settings.data_dir))


def build_carrier_adapters(settings: CarrierSettings | None = None) -> dict[str, CarrierAdapter]:
    """Adapters for the carriers with credentials in `LOCKER_CARRIER_*`; none configured, none.

    They share one AsyncClient for the life of the process, as their token caches and rate
    budgets do; its connections close with the process.
    """
    settings = settings or CarrierSettings()
    sections = (settings.usps, settings.fedex, settings.ups, settings.dhl)
    if not any(section.configured for section in sections):
        return {}
    client = httpx.AsyncClient(
        follow_redirects=False, headers={"User-Agent": "locker-central-tracking/1"}
    )
    return build_adapters(settings, client)


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document of the routes, with the schemas of the node bodies read as bytes."""
    document = FastAPI.openapi(app)  # cached on the app until its routes change
    add_node_body_schemas(document)
    return document


def wire_lagging_reads(app: FastAPI, settings: CentralSettings, engine: Engine) -> None:
    """Reads that may lag (overview, charts, reports, the public finder): on the standby at
    `database_read_url` when set, with a small pool of their own and as many threads as it has
    connections; unset, on the primary's sessions and threads (`central.db.LaggingReads`).
    The read engine lives as long as the process, as the primary's does."""
    state = app.state
    pool_size = min(READ_POOL_SIZE, settings.db_pool_size)
    url = settings.database_read_url
    state.read_engine = make_read_engine(url, engine, pool_size=pool_size) if url else None
    if state.read_engine is None:
        state.read_sessions = state.sessions
        state.read_limiter = state.db_limiter
    else:
        state.read_sessions = make_sessionmaker(state.read_engine)
        state.read_limiter = CapacityLimiter(pool_size)
    state.lagging_reads = LaggingReads(state.read_sessions, state.sessions)


# Node requests (heartbeats, feeds, event batches) at the database at once, per web worker. Each
# is about a millisecond of Python: with ten threads at it a 2-core host's 10,000 nodes saw p99
# latencies of 330-420 ms and 5-8 % more CPU (turns at the GIL), with four 90-110 ms.
NODE_SYNC_THREADS = 4

# In the order routes are tried, after POST /v1/reservations (`add_create_route`).
ROUTERS = (
    reservations_router,
    nodes_router,  # every node's heartbeat and feed: next to reservations in volume
    dropoffs_router,
    banks_router,
    public_banks_router,
    webhooks_router,
    carrier_webhooks_router,
    ops_router,
    ops_insight_router,
    ops_bank_admin.router,
    ops_team.router,
    ops_paging.router,
    ops_approvals.router,
    ops_fleet.router,
    ops_updates.router,
    ops_pages.router,
    ops_bank_admin.pages,
    ops_team.pages,
    ops_paging.pages,
    ops_approvals.pages,
    ops_fleet.pages,
    ops_updates.pages,
)


def create_app(
    settings: CentralSettings | None = None,
    *,
    engine: Engine | None = None,
    clock: Clock = utcnow,
    carrier_adapters: Mapping[str, CarrierAdapter] | None = None,
) -> FastAPI:
    settings = settings or CentralSettings()
    engine = engine or make_engine(settings.database_url, pool_size=settings.db_pool_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.reservation_intake.aclose()

    app = FastAPI(
        lifespan=lifespan,
        title="Locker network central",
        version="1.0.0",
        description=API_DESCRIPTION,
        openapi_url="/openapi.json",
        # Served below from the app's own copy of Swagger UI: FastAPI's page loads it from a CDN,
        # which leaves /docs blank without internet. (No ReDoc page: its npm package brings a
        # hundred more for one page that /docs already covers.)
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_sessionmaker(engine)
    app.state.keys = build_keys(settings)
    app.state.clock = clock
    app.state.bank_directory = BankDirectory()
    app.state.seen_node_keys = SeenKeys()
    # As many database threads as pooled connections: more would only queue for a connection
    # while contending for the GIL; waiting requests cost nothing on the event loop instead.
    app.state.db_limiter = CapacityLimiter(settings.db_pool_size)
    app.state.node_limiter = CapacityLimiter(min(NODE_SYNC_THREADS, settings.db_pool_size))
    wire_lagging_reads(app, settings, engine)
    app.state.reservation_intake = ReservationIntake(
        app.state.sessions,
        app.state.keys,
        clock,
        app.state.bank_directory,
        app.state.db_limiter,
        async_engines=async_twin(engine, pool_size=BATCHES_IN_FLIGHT),
    )
    # The web app only verifies and parses carrier pushes (no carrier I/O); polling runs in
    # the scheduler's process with the adapters given to central.scheduler.Jobs.
    app.state.carrier_adapters = dict(
        build_carrier_adapters() if carrier_adapters is None else carrier_adapters
    )
    install_error_handlers(app)
    add_create_route(app)  # before every router: the first route tried
    for router in ROUTERS:
        app.include_router(router)
    app.mount(ops_pages.STATIC_PATH, ops_pages.static_files(), name="ops-static")
    app.include_router(parcel_page_router)
    app.mount(parcel_page.STATIC_PATH, parcel_page.static_files(), name="parcel-page-static")

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: answers without touching the database."""
        return {"status": "ok"}

    # Inside the metrics (which count its 413s), outside everything that reads a body.
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        max_node_bytes=settings.max_node_body_bytes,
    )
    install_metrics(app, settings)
    app.openapi = partial(build_openapi, app)  # type: ignore[method-assign]
    add_docs_page(app)
    return app


SWAGGER_UI = f"{ops_pages.STATIC_PATH}/vendor/swagger-ui"


def add_docs_page(app: FastAPI) -> None:
    """`/docs`: Swagger UI over `/openapi.json`, its script and style served by the app itself."""

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
            # Swagger UI would otherwise fetch a badge from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )


def app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory central.app:app_from_environment` (multi-worker serving)."""
    app = create_app()
    freeze_startup_heap()
    return app
