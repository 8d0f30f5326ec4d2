"""Fleet health in the dashboard: each bank's node health and the fleet's version spread."""

from __future__ import annotations

from fastapi import APIRouter

from central.ops.auth import OperatorRoute

# The JSON API (every call needs a signed-in operator) and the HTML pages.
router = APIRouter(prefix="/ops/api", include_in_schema=False, route_class=OperatorRoute)
pages = APIRouter(prefix="/ops", include_in_schema=False)
