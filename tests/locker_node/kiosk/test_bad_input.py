"""Bad input to every kiosk call: a clear 4xx with an error code, and nothing changes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.locker_node.kiosk.rig import COURIER_CODE, Rig, build_rig

UNKNOWN_ID = "0" * 32

PICKUP_BODIES: list[Any] = [
    {},
    {"code": ""},
    {"code": "1234"},
    {"code": "123456789"},
    {"code": "1" * 33},
    {"code": "abcdefgh"},
    {"code": "1234 678"},
    {"code": "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18"},
    {"code": 12345678},
    {"code": None},
    {"code": "12345678", "extra": 1},
    [],
    "12345678",
]
QR_BODIES: list[Any] = [
    {},
    {"token": ""},
    {"token": "short"},
    {"token": "x" * 129},
    {"token": "not a token at all!!"},
    {"token": ["abc"]},
]
LOGIN_BODIES: list[Any] = [
    {},
    {"carrier": "ups"},
    {"pin": COURIER_CODE},
    {"carrier": "", "pin": COURIER_CODE},
    {"carrier": "ups", "pin": ""},
    {"carrier": "ups", "pin": "12ab5678"},
    {"carrier": "ups", "pin": "123"},
    {"carrier": "ups", "pin": "1" * 13},
    {"carrier": "ups", "pin": "1" * 40},
    {"carrier": "u p s", "pin": COURIER_CODE},
    {"carrier": "x" * 65, "pin": COURIER_CODE},
    {"carrier": "ups", "pin": COURIER_CODE, "role": "admin"},
]
DEPOSIT_BODIES: list[Any] = [
    {},
    {"tracking_number": ""},
    {"tracking_number": "1Z"},
    {"tracking_number": "1" * 65},
    {"tracking_number": "1Z<script>"},
    {"tracking_number": "1Z0001", "size": "XXL"},
    {"tracking_number": "1Z0001", "size": "s"},
    {"tracking_number": 1234567},
]
DEPOSIT_ACTIONS = ["confirm", "too-small", "door-problem", "cancel"]
RETURN_ACTIONS = ["open", "confirm"]


@dataclass
class Busy:
    rig: Rig
    deposit_id: str
    sessions: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory, schema_template: Path) -> Iterator[Busy]:
    """One node for every case (a case that changes anything fails on its own snapshot): a
    parcel in, a deposit open, a live courier session and one idle too long."""
    rig = build_rig(tmp_path_factory.mktemp("busy"), schema_template)
    try:
        rig.add_courier()
        stale = rig.login()
        rig.clock.advance(minutes=6)
        headers = rig.login()
        rig.add_reservation("1Z0001")
        rig.add_reservation("1Z0002")
        rig.deposit("1Z0001", headers)
        opened = rig.client.post(
            "/api/courier/deposit", json={"tracking_number": "1Z0002"}, headers=headers
        )
        assert opened.status_code == 200
        rig.client.cookies.clear()
        sessions = {
            "good": headers,
            "none": {},
            "bogus": {"Authorization": "Bearer nope"},
            "stale": stale,
        }
        yield Busy(rig, opened.json()["deposit_id"], sessions)
    finally:
        rig.close()


def cases() -> list[tuple[str, str, Any, str, int, str]]:
    """(method, path, body, who, status, error); who is the session: good, none, bogus, stale."""
    found: list[tuple[str, str, Any, str, int, str]] = []
    found += [("POST", "/api/pickup", b, "none", 422, "bad_input") for b in PICKUP_BODIES]
    found += [("POST", "/api/pickup/qr", b, "none", 422, "bad_input") for b in QR_BODIES]
    found += [("POST", "/api/courier/login", b, "none", 422, "bad_input") for b in LOGIN_BODIES]
    found += [("POST", "/api/courier/deposit", b, "good", 422, "bad_input") for b in DEPOSIT_BODIES]
    for action in DEPOSIT_ACTIONS:
        path = f"/api/courier/deposit/{{deposit}}/{action}"
        found += [
            ("POST", path.format(deposit=UNKNOWN_ID), None, "good", 404, "unknown_deposit"),
            ("POST", path.format(deposit="not-an-id"), None, "good", 422, "bad_input"),
            ("POST", path.format(deposit="f" * 300), None, "good", 422, "bad_input"),
            ("POST", path, None, "none", 401, "not_logged_in"),
            ("POST", path, None, "bogus", 401, "not_logged_in"),
            ("POST", path, None, "stale", 401, "session_expired"),
        ]
    for action in RETURN_ACTIONS:
        path = f"/api/courier/returns/{{parcel}}/{action}"
        found += [
            ("POST", path.format(parcel=UNKNOWN_ID), None, "good", 404, "unknown_parcel"),
            ("POST", path.format(parcel="nope"), None, "good", 422, "bad_input"),
            ("POST", path.format(parcel=UNKNOWN_ID), None, "none", 401, "not_logged_in"),
        ]
    for method, path in [
        ("POST", "/api/courier/deposit"),
        ("GET", "/api/courier/returns"),
        ("GET", "/api/courier/session"),
        ("POST", "/api/courier/logout"),
    ]:
        body = {"tracking_number": "1Z0002"} if path.endswith("deposit") else None
        found += [
            (method, path, body, "none", 401, "not_logged_in"),
            (method, path, body, "bogus", 401, "not_logged_in"),
            (method, path, body, "stale", 401, "session_expired"),
        ]
    found += [("GET", "/api/pickup", None, "none", 405, "method_not_allowed")]
    found += [("POST", "/api/nothing-here", {}, "none", 404, "not_found")]
    return found


@pytest.mark.parametrize(
    ("method", "path", "body", "who", "status", "error"),
    cases(),
    ids=lambda value: str(value)[:40] if not isinstance(value, int) else str(value),
)
def test_bad_input_is_refused_and_changes_nothing(
    busy: Busy, method: str, path: str, body: Any, who: str, status: int, error: str
) -> None:
    rig = busy.rig
    path = path.replace("{deposit}", busy.deposit_id)
    fired = [rig.board.fired(lock) for lock in range(1, 17)]
    before = rig.snapshot()

    answer = rig.client.request(method, path, json=body, headers=busy.sessions[who])

    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error
    assert isinstance(answer.json()["detail"], str) and answer.json()["detail"]
    assert rig.snapshot() == before
    assert [rig.board.fired(lock) for lock in range(1, 17)] == fired
    assert "set-cookie" not in answer.headers


def test_a_body_that_is_not_json_is_refused(rig: Rig) -> None:
    before = rig.snapshot()

    answer = rig.client.post(
        "/api/pickup", content=b"\xff\x00 not json", headers={"Content-Type": "application/json"}
    )

    assert answer.status_code == 400 and answer.json()["error"] == "bad_input"
    assert rig.snapshot() == before


def test_an_oversized_body_is_refused(rig: Rig) -> None:
    before = rig.snapshot()

    answer = rig.client.post("/api/pickup", json={"code": "1" * 100_000})

    assert answer.status_code == 422
    assert rig.snapshot() == before
