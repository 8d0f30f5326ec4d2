"""Drop-offs at the kiosk: a sender's code opens a door; a courier collects."""

from __future__ import annotations

from fastapi import FastAPI

from locker_node.flows.facade import LockerFlows


def add_routes(app: FastAPI, flows: LockerFlows) -> None:
    """Adds this module's routes to the kiosk app."""
