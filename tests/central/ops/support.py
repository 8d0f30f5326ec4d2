"""Helpers for the operator API tests: accounts, signing in, an enrolled node, a parcel."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralSettings
from central.context import Ctx
from central.models import Actor, ReservationStatus
from central.nodes.enrollment import enroll, issue_enrollment_token
from central.ops.accounts import Passwords, add_operator
from central.reservations import repository as reservations_repository
from central.reservations.schemas import ReservationCreate
from central.reservations.service import create
from central.reservations.transitions import transition
from locker_wire import signing
from locker_wire.schemas import EnrollmentRequest
from tests.clock import FakeClock

PASSWORD = "correct horse battery staple"
# argon2id at its cheapest: the tests check behaviour, not cost.
FAST_ARGON2: dict[str, Any] = {
    "ops_argon2_time_cost": 1,
    "ops_argon2_memory_kib": 64,
    "ops_argon2_parallelism": 1,
}
ADMIN = "admin@ops.test"
VIEWER = "viewer@ops.test"


def fast(settings: CentralSettings) -> CentralSettings:
    return settings.model_copy(update=FAST_ARGON2)


def sessions_of(app: FastAPI) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = app.state.sessions
    return factory


def passwords_of(app: FastAPI) -> Passwords:
    passwords: Passwords | None = getattr(app.state, "ops_passwords", None)
    if passwords is None:
        passwords = Passwords.from_settings(app.state.settings)
        app.state.ops_passwords = passwords
    return passwords


def make_operator(
    app: FastAPI, clock: FakeClock, email: str, role: str, password: str = PASSWORD
) -> int:
    with sessions_of(app).begin() as session:
        return add_operator(session, passwords_of(app), email, role, password, clock()).id


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> str:
    """Sign in (the client keeps the cookie) and return the CSRF token."""
    response = client.post("/ops/api/session", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["csrf_token"]
    return token


def session_hash(client: TestClient) -> str:
    return hashlib.sha256(client.cookies["locker_ops"].encode()).hexdigest()


def enroll_node(app: FastAPI, clock: FakeClock, bank_id: str = "NYC-1") -> str:
    key = signing.generate_private_key()
    with sessions_of(app).begin() as session:
        token = issue_enrollment_token(session, bank_id, clock())
        response = enroll(
            session,
            app.state.keys,
            EnrollmentRequest(token=token, public_key=signing.public_key_text(key)),
            clock(),
        )
    return response.node_id


def reserve(
    app: FastAPI,
    clock: FakeClock,
    tracking_number: str,
    *,
    bank_id: str = "NYC-1",
    size: str = "S",
    deposit_into: str | None = None,
) -> str:
    """A reservation of carrier acme; deposited into `deposit_into` when given."""
    with sessions_of(app).begin() as session:
        ctx = Ctx(session=session, keys=app.state.keys, now=clock())
        out, _ = create(
            ctx,
            "acme",
            ReservationCreate.model_validate(
                {"tracking_number": tracking_number, "bank_id": bank_id, "size": size}
            ),
        )
        if deposit_into is not None:
            reservation = reservations_repository.get(session, out.id)
            assert reservation is not None
            transition(
                ctx,
                reservation,
                ReservationStatus.DEPOSITED,
                actor=Actor.COURIER,
                changes={
                    "compartment_label": deposit_into,
                    "deposited_at": ctx.now,
                    "pickup_deadline": ctx.now + timedelta(hours=72),
                },
            )
        return out.id
