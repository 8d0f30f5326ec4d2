"""Carrier API for drop-offs under /v1/dropoffs."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/dropoffs", tags=["drop-offs"])
