"""Overflow: a parcel with no usable door here goes to a nearby bank, asked of central."""

from __future__ import annotations

from fastapi import FastAPI

from locker_node.flows.facade import LockerFlows


def add_routes(app: FastAPI, flows: LockerFlows) -> None:
    """Adds this module's routes to the kiosk app."""
