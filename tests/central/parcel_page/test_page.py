"""The recipient's parcel page `/p/<token>` against a real database: what each state shows, the
actions, the languages, and the answers to bad tokens and odd requests."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from central.context import Ctx
from central.models import (
    Actor,
    Alert,
    Bank,
    NodeCommand,
    Notice,
    Reservation,
    ReservationEvent,
    ReservationStatus,
)
from central.notices.hours import format_deadline
from central.notices.pickup import seal_pickup
from central.notices.tokens import make_page_token
from central.parcel_page.view import group_code
from central.parcel_page.words import choose_language, from_accept_language
from central.ratelimit import TokenBuckets
from central.reservations import transitions
from tests.central.conftest import World
from tests.central.nodes.support import enroll
from tests.clock import FakeClock

CODE = "1234567890"
QR_PAYLOAD = "LKR1:qr-payload-for-tests"
RECIPIENT = {
    "name": "Ana Pérez",
    "email": "ana.perez@example.com",
    "phone": "+1 555 010 0199",
}
PERSONAL = ("Ana", "ana.perez", "555", "0199")
CSP = (
    "default-src 'self'; img-src 'self'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


# Setting the scene --------------------------------------------------------------------------------


def reserve(
    client: TestClient,
    world: World,
    number: str = "ACME-PAGE-1",
    recipient: dict[str, Any] | None = None,
) -> str:
    body: dict[str, Any] = {"tracking_number": number, "bank_id": "NYC-1", "size": "S"}
    if recipient is not None:
        body["recipient"] = recipient
    response = client.post("/v1/reservations", json=body, headers=world.auth("acme"))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def deposit(app: FastAPI, sessions: sessionmaker[Session], rid: str, now: datetime) -> None:
    """The columns a node's `parcel.deposited` event sets, the code sealed as central keeps it."""
    with sessions.begin() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        reservation.status = ReservationStatus.DEPOSITED
        reservation.deposited_at = now
        reservation.pickup_deadline = now + timedelta(hours=72)
        reservation.compartment_label = "A01"
        reservation.pickup_secret_sealed = seal_pickup(app.state.keys, CODE, QR_PAYLOAD)
        reservation.updated_at = now


def move(
    app: FastAPI,
    sessions: sessionmaker[Session],
    rid: str,
    target: ReservationStatus,
    now: datetime,
) -> None:
    """A lifecycle transition as central makes it (wiping what it wipes)."""
    with sessions.begin() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        ctx = Ctx(session=session, keys=app.state.keys, now=now)
        transitions.transition(ctx, reservation, target, actor=Actor.SYSTEM)


def parcel(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    *,
    status: ReservationStatus = ReservationStatus.DEPOSITED,
    recipient: dict[str, Any] | None = None,
    number: str = "ACME-PAGE-1",
) -> tuple[str, str]:
    """A reservation in `status`; returns its id and its page's token."""
    rid = reserve(client, world, number, RECIPIENT if recipient is None else recipient)
    if status == ReservationStatus.CANCELLED:
        assert client.delete(f"/v1/reservations/{rid}", headers=world.auth("acme")).status_code
    elif status != ReservationStatus.RESERVED:
        deposit(app, sessions, rid, clock())
        steps = {
            ReservationStatus.PICKED_UP: [ReservationStatus.PICKED_UP],
            ReservationStatus.EXPIRED: [ReservationStatus.EXPIRED],
            ReservationStatus.RETURNED: [ReservationStatus.EXPIRED, ReservationStatus.RETURNED],
        }
        for step in steps.get(status, []):
            move(app, sessions, rid, step, clock())
    return rid, make_page_token(app.state.keys, rid, clock())


@pytest.fixture
def ready(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> tuple[str, str]:
    return parcel(app, client, world, sessions, clock)


def deadline_of(sessions: sessionmaker[Session], rid: str) -> datetime:
    with sessions() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None and reservation.pickup_deadline is not None
        return reservation.pickup_deadline


def count(sessions: sessionmaker[Session], model: Any, *where: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def history(sessions: sessionmaker[Session], rid: str, kind: str) -> list[ReservationEvent]:
    with sessions() as session:
        return list(
            session.scalars(
                select(ReservationEvent).where(
                    ReservationEvent.reservation_id == rid, ReservationEvent.type == kind
                )
            )
        )


def message_of(response: Any) -> str | None:
    """The outcome a redirect after an action carries (`msg`), checking it goes to the page."""
    assert response.status_code == 303, response.text
    location = urlsplit(response.headers["location"])
    assert re.fullmatch(r"/p/[A-Za-z0-9_-]+", location.path)
    return parse_qs(location.query).get("msg", [None])[0]


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def assert_page_headers(response: Any) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-robots-tag"] == "noindex"
    assert response.headers["content-security-policy"] == CSP


# What each state shows ----------------------------------------------------------------------------


def test_a_ready_parcel_shows_its_code_qr_deadline_and_locker(
    client: TestClient, ready: tuple[str, str], sessions: sessionmaker[Session]
) -> None:
    rid, token = ready
    response = client.get(f"/p/{token}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<html lang="en">' in html
    assert 'data-state="deposited"' in html
    assert "Ready for pickup" in html
    assert ">12345 67890<" in html and f"Pickup code: {CODE}" in html
    assert f'src="/p/{token}/qr.png"' in html
    deadline = format_deadline(deadline_of(sessions, rid), "America/New_York", "en")
    assert f'<strong id="deadline">{deadline}</strong>' in html
    assert "EDT" in deadline or "EST" in deadline
    for shown in ("ACME", "ACME-PAGE-1", "Bank NYC-1", "NYC-1 Street", "Open 24 hours"):
        assert shown in html
    link = re.search(r'<a [^>]*id="map-link"[^>]*>', html)
    assert link is not None
    assert 'href="https://www.openstreetmap.org/?mlat=40.7506&amp;mlon=-73.9935' in link[0]
    assert 'target="_blank"' in link[0] and 'rel="noopener noreferrer"' in link[0]
    assert 'id="resend"' in html and 'id="extend"' in html and 'id="problem-form"' in html
    for personal in PERSONAL:
        assert personal not in html


@pytest.mark.parametrize(
    ("status", "title", "words"),
    [
        (ReservationStatus.RESERVED, "On its way", "we will send you a message"),
        (ReservationStatus.PICKED_UP, "Collected", "has been collected from the locker Bank"),
        (ReservationStatus.EXPIRED, "Returned to the carrier", "is going back to ACME"),
        (ReservationStatus.RETURNED, "Returned to the carrier", "has gone back to ACME"),
        (ReservationStatus.CANCELLED, "Cancelled", "was cancelled"),
    ],
)
def test_every_other_state_is_told_in_words_without_code_or_qr(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    status: ReservationStatus,
    title: str,
    words: str,
) -> None:
    _, token = parcel(app, client, world, sessions, clock, status=status)
    response = client.get(f"/p/{token}")
    assert response.status_code == 200
    html = response.text
    assert f'data-state="{status.value}"' in html
    assert f'<span id="state-name">{title}</span>' in html
    assert words in text_of(html)
    assert "ACME-PAGE-1" in html  # the carrier's tracking number, to ask them about it
    assert CODE not in html and "12345 67890" not in html
    assert "qr.png" not in html and 'id="deadline"' not in html
    assert 'id="resend"' not in html and 'id="extend"' not in html
    assert client.get(f"/p/{token}/qr.png").status_code == 404


def test_nothing_personal_is_left_after_collection(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    _, token = parcel(app, client, world, sessions, clock, status=ReservationStatus.PICKED_UP)
    html = client.get(f"/p/{token}").text
    for secret in (CODE, "12345 67890", QR_PAYLOAD, *PERSONAL):
        assert secret not in html
    assert "Collected" in html
    # The "collected" notice sends whoever did not collect it here, to report it.
    assert 'id="problem-form"' in html and 'value="not_me"' in html
    assert 'value="door_did_not_open"' not in html
    assert "Open the map" not in html


def test_a_parcel_without_its_sealed_code_points_to_the_message(
    app: FastAPI, client: TestClient, ready: tuple[str, str], sessions: sessionmaker[Session]
) -> None:
    rid, token = ready
    with sessions.begin() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        reservation.pickup_secret_sealed = None
    html = client.get(f"/p/{token}").text
    assert "Use the pickup code from the message we sent you." in html
    assert "qr.png" not in html
    assert client.get(f"/p/{token}/qr.png").status_code == 404


def test_the_qr_image_is_a_png_not_kept_by_caches(
    client: TestClient, ready: tuple[str, str]
) -> None:
    _, token = ready
    response = client.get(f"/p/{token}/qr.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert_page_headers(response)


def test_every_answer_carries_the_pages_headers(client: TestClient, ready: tuple[str, str]) -> None:
    _, token = ready
    answers = [
        client.get(f"/p/{token}"),
        client.get(f"/p/{token}/qr.png"),
        client.get("/p/not-a-token-at-all"),
        client.post(f"/p/{token}/resend", follow_redirects=False),
        client.get(f"/p/{token}/extend", follow_redirects=False),
    ]
    for response in answers:
        assert_page_headers(response)
    assert "script" not in answers[0].text.lower()


def test_the_stylesheet_is_served_by_central_itself(client: TestClient) -> None:
    response = client.get("/p/static/page.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert "http" not in response.text  # nothing loaded from another origin


# Tokens that lead nowhere -------------------------------------------------------------------------


def flip(token: str, index: int) -> str:
    replacement = "A" if token[index] != "A" else "B"
    return token[:index] + replacement + token[index + 1 :]


def assert_no_data(html: str) -> None:
    for shown in ("ACME-PAGE-1", "Bank NYC-1", "NYC-1 Street", CODE, "12345 67890", "ACME"):
        assert shown not in html


def test_wrong_and_altered_tokens_get_a_404_page_without_any_data(
    client: TestClient, ready: tuple[str, str]
) -> None:
    _, token = ready
    for bad in ("x", "not-a-token-at-all", flip(token, 3), flip(token, len(token) - 2)):
        for path in (f"/p/{bad}", f"/p/{bad}/qr.png"):
            response = client.get(path)
            assert response.status_code == 404, (bad, path)
            assert 'data-error="not_found"' in response.text
            assert "This link does not work" in response.text
            assert "newest message" in response.text
            assert_no_data(response.text)
            assert_page_headers(response)


def test_an_expired_token_gets_a_410_page_without_any_data(
    client: TestClient, ready: tuple[str, str], clock: FakeClock
) -> None:
    _, token = ready
    clock.advance(days=22)
    response = client.get(f"/p/{token}")
    assert response.status_code == 410
    assert "This link has expired" in response.text
    assert "contact the carrier" in response.text
    assert_no_data(response.text)
    action = client.post(f"/p/{token}/resend", follow_redirects=False)
    assert action.status_code == 410


def test_a_valid_token_for_no_reservation_gets_the_404_page(
    app: FastAPI, client: TestClient, clock: FakeClock, world: World
) -> None:
    token = make_page_token(app.state.keys, "rsv_doesnotexist0000000000000", clock())
    assert client.get(f"/p/{token}").status_code == 404
    assert client.get(f"/p/{token}/qr.png").status_code == 404
    assert client.post(f"/p/{token}/extend", follow_redirects=False).status_code == 404


def test_error_pages_speak_the_browsers_language_or_the_one_asked_for(
    client: TestClient,
) -> None:
    spanish = client.get("/p/not-a-token-at-all", headers={"Accept-Language": "es-MX,es;q=0.9"})
    assert '<html lang="es">' in spanish.text and "Este enlace no funciona" in spanish.text
    asked = client.get("/p/not-a-token-at-all?lang=es")
    assert "Este enlace no funciona" in asked.text
    english = client.get("/p/not-a-token-at-all?lang=en", headers={"Accept-Language": "es"})
    assert '<html lang="en">' in english.text


# Sending the code again ---------------------------------------------------------------------------


def test_send_my_code_again_queues_notices_and_is_limited(
    client: TestClient, ready: tuple[str, str], sessions: sessionmaker[Session]
) -> None:
    rid, token = ready
    before = count(sessions, Notice, Notice.reservation_id == rid)
    response = client.post(f"/p/{token}/resend", data={"lang": "en"}, follow_redirects=False)
    assert message_of(response) == "resent"
    assert count(sessions, Notice, Notice.reservation_id == rid) == before + 2  # email and SMS
    page = client.get(response.headers["location"])
    assert "We have sent your code again." in page.text
    assert 'role="status"' in page.text
    for _ in range(2):
        again = client.post(f"/p/{token}/resend", data={"lang": "en"}, follow_redirects=False)
        assert message_of(again) == "resent"
    refused = client.post(f"/p/{token}/resend", data={"lang": "en"}, follow_redirects=False)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert "You have asked for your code several times today." in refused.text
    assert 'role="alert"' in refused.text and "12345 67890" in refused.text
    assert_page_headers(refused)
    assert count(sessions, Notice, Notice.reservation_id == rid) == before + 6


def test_without_contact_details_there_is_no_resend_button(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    _, token = parcel(app, client, world, sessions, clock, recipient={})
    html = client.get(f"/p/{token}").text
    assert 'id="resend"' not in html
    assert "We have no email address or phone number" in html
    response = client.post(f"/p/{token}/resend", follow_redirects=False)
    assert message_of(response) == "no_contact"


def test_resend_in_the_wrong_state_is_a_friendly_message(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    _, token = parcel(app, client, world, sessions, clock, status=ReservationStatus.RESERVED)
    response = client.post(f"/p/{token}/resend", follow_redirects=False)
    assert message_of(response) == "not_ready"
    page = client.get(response.headers["location"])
    assert "only possible while your parcel is waiting" in page.text


# Extending the pickup time ------------------------------------------------------------------------


def test_extend_moves_the_deadline_once_and_tells_the_node(
    client: TestClient, ready: tuple[str, str], sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    rid, token = ready
    enroll(client, sessions, clock)
    before = deadline_of(sessions, rid)
    assert "Gives you 24 more hours." in client.get(f"/p/{token}").text
    response = client.post(f"/p/{token}/extend", data={"lang": "en"}, follow_redirects=False)
    assert message_of(response) == "extended"
    assert deadline_of(sessions, rid) == before + timedelta(hours=24)
    [entry] = history(sessions, rid, "extended")
    assert (entry.actor, entry.actor_id) == ("recipient", None)
    assert count(sessions, NodeCommand, NodeCommand.type == "extend_deadline") == 1
    assert count(sessions, Notice, Notice.kind == "extended") == 2
    page = client.get(response.headers["location"]).text
    assert "you have more time to collect your parcel" in page
    assert 'id="extend"' not in page and "You have already extended" in page
    new = format_deadline(before + timedelta(hours=24), "America/New_York", "en")
    assert f'<strong id="deadline">{new}</strong>' in page

    twice = client.post(f"/p/{token}/extend", data={"lang": "en"}, follow_redirects=False)
    assert message_of(twice) == "extension_used"
    assert deadline_of(sessions, rid) == before + timedelta(hours=24)
    assert len(history(sessions, rid, "extended")) == 1


def test_extend_without_a_node_to_tell_changes_nothing(
    client: TestClient, ready: tuple[str, str], sessions: sessionmaker[Session]
) -> None:
    rid, token = ready  # no node enrolled: it would expire the parcel at the old deadline
    before = deadline_of(sessions, rid)
    response = client.post(f"/p/{token}/extend", follow_redirects=False)
    assert message_of(response) == "unavailable"
    assert deadline_of(sessions, rid) == before
    assert history(sessions, rid, "extended") == []
    assert 'id="extend"' in client.get(response.headers["location"]).text


def test_extend_is_not_offered_when_the_bank_allows_none(
    client: TestClient, ready: tuple[str, str], sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    rid, token = ready
    enroll(client, sessions, clock)
    with sessions.begin() as session:
        bank = session.get(Bank, "NYC-1")
        assert bank is not None
        bank.max_extension_hours = 0
    before = deadline_of(sessions, rid)
    assert 'id="extend"' not in client.get(f"/p/{token}").text
    response = client.post(f"/p/{token}/extend", follow_redirects=False)
    assert message_of(response) == "extension_unavailable"
    assert deadline_of(sessions, rid) == before


def test_extend_gives_what_the_bank_still_allows_and_no_more(
    client: TestClient, ready: tuple[str, str], sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    rid, token = ready
    enroll(client, sessions, clock)
    with sessions.begin() as session:
        bank = session.get(Bank, "NYC-1")
        assert bank is not None
        bank.max_extension_hours = 10
    before = deadline_of(sessions, rid)
    assert "Gives you 10 more hours." in client.get(f"/p/{token}").text
    assert message_of(client.post(f"/p/{token}/extend", follow_redirects=False)) == "extended"
    assert deadline_of(sessions, rid) == before + timedelta(hours=10)


def test_extend_after_an_operators_extension_to_the_ceiling_is_not_offered(
    app: FastAPI, client: TestClient, ready: tuple[str, str], sessions: sessionmaker[Session]
) -> None:
    rid, token = ready
    with sessions.begin() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None and reservation.pickup_deadline is not None
        reservation.pickup_deadline += timedelta(hours=72)  # the default ceiling
    assert 'id="extend"' not in client.get(f"/p/{token}").text
    response = client.post(f"/p/{token}/extend", follow_redirects=False)
    assert message_of(response) == "extension_unavailable"


# Reporting a problem ------------------------------------------------------------------------------


def test_a_problem_report_raises_an_alert_and_is_limited_to_one_an_hour(
    client: TestClient, ready: tuple[str, str], sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    rid, token = ready
    form = {"lang": "en", "reason": "door_did_not_open", "message": f"Typed {CODE}, no luck"}
    response = client.post(f"/p/{token}/problem", data=form, follow_redirects=False)
    assert message_of(response) == "reported"
    with sessions() as session:
        [alert] = session.scalars(select(Alert).where(Alert.type == "recipient_problem")).all()
        assert (alert.bank_id, alert.subject) == ("NYC-1", rid)
        assert alert.detail == {
            "reason": "door_did_not_open",
            "message": "Typed [code removed], no luck",
            "reported_at": clock().isoformat(),
            "reservation_id": rid,
            "tracking_number": "ACME-PAGE-1",
            "compartment": "A01",
        }
    [entry] = history(sessions, rid, "problem_reported")
    assert entry.actor == "recipient"
    assert "operators have your report" in client.get(response.headers["location"]).text

    again = client.post(f"/p/{token}/problem", data=form, follow_redirects=False)
    assert again.status_code == 429
    assert 0 < int(again.headers["retry-after"]) <= 3600
    assert "You reported a problem less than an hour ago." in again.text
    assert len(history(sessions, rid, "problem_reported")) == 1

    first_at = clock()
    clock.advance(minutes=61)
    form |= {"reason": "other", "message": "Still shut."}
    later = client.post(f"/p/{token}/problem", data=form, follow_redirects=False)
    assert message_of(later) == "reported"
    assert len(history(sessions, rid, "problem_reported")) == 2
    with sessions() as session:  # the alert was still open: the first report stays in it
        [alert] = session.scalars(select(Alert).where(Alert.type == "recipient_problem")).all()
        assert alert.detail is not None
        assert (alert.detail["reason"], alert.detail["message"]) == ("other", "Still shut.")
        assert alert.detail["earlier_reports"] == [
            {
                "reason": "door_did_not_open",
                "message": "Typed [code removed], no luck",
                "reported_at": first_at.isoformat(),
            }
        ]


def test_a_problem_report_needs_a_reason_from_the_list_and_a_short_message(
    client: TestClient, ready: tuple[str, str], sessions: sessionmaker[Session]
) -> None:
    _, token = ready
    for form, expected in (
        ({}, "problem_reason"),
        ({"reason": "give me the code"}, "problem_reason"),
        ({"reason": "not_me"}, "problem_reason"),  # offered after collection only
        ({"reason": "other", "message": "x" * 501}, "problem_too_long"),
    ):
        response = client.post(f"/p/{token}/problem", data=form, follow_redirects=False)
        assert message_of(response) == expected
    assert count(sessions, Alert, Alert.type == "recipient_problem") == 0
    crlf = "line one\r\n" * 50  # 500 characters once line breaks are one each
    response = client.post(
        f"/p/{token}/problem", data={"reason": "other", "message": crlf}, follow_redirects=False
    )
    assert message_of(response) == "reported"


def test_problems_cannot_be_reported_before_the_parcel_arrives(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    _, token = parcel(app, client, world, sessions, clock, status=ReservationStatus.RESERVED)
    assert 'id="problem-form"' not in client.get(f"/p/{token}").text
    response = client.post(f"/p/{token}/problem", data={"reason": "other"}, follow_redirects=False)
    assert message_of(response) == "problem_unavailable"


def test_after_collection_someone_else_collecting_can_be_reported(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    rid, token = parcel(app, client, world, sessions, clock, status=ReservationStatus.PICKED_UP)
    response = client.post(f"/p/{token}/problem", data={"reason": "not_me"}, follow_redirects=False)
    assert message_of(response) == "reported"
    with sessions() as session:
        alert = session.scalars(select(Alert).where(Alert.subject == rid)).one()
        assert alert.detail is not None and alert.detail["reason"] == "not_me"
        assert alert.detail["message"] is None


# Languages ----------------------------------------------------------------------------------------


def test_the_language_asked_for_wins_and_is_kept_across_an_action(
    client: TestClient, ready: tuple[str, str]
) -> None:
    _, token = ready
    page = client.get(f"/p/{token}?lang=es", headers={"Accept-Language": "en"})
    assert '<html lang="es">' in page.text
    assert "Listo para recoger" in page.text and "Su código de recogida" in page.text
    assert 'name="lang" value="es"' in page.text
    assert f'href="/p/{token}?lang=en"' in page.text  # the switch back
    response = client.post(f"/p/{token}/resend", data={"lang": "es"}, follow_redirects=False)
    assert parse_qs(urlsplit(response.headers["location"]).query)["lang"] == ["es"]
    after = client.get(response.headers["location"])
    assert "Le hemos enviado el código otra vez." in after.text


def test_the_recipients_language_then_the_browsers_then_english(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    _, spanish = parcel(
        app, client, world, sessions, clock, recipient=RECIPIENT | {"language": "es"}
    )
    _, unsaid = parcel(app, client, world, sessions, clock, number="ACME-PAGE-2")
    assert '<html lang="es">' in client.get(f"/p/{spanish}").text
    told = client.get(f"/p/{spanish}", headers={"Accept-Language": "en-US"})
    assert '<html lang="es">' in told.text  # the carrier's word for the recipient comes first
    assert '<html lang="en">' in client.get(f"/p/{spanish}?lang=en").text
    browser = client.get(f"/p/{unsaid}", headers={"Accept-Language": "fr, es;q=0.8, en;q=0.5"})
    assert '<html lang="es">' in browser.text
    assert '<html lang="en">' in client.get(f"/p/{unsaid}").text


def test_reading_accept_language() -> None:
    assert from_accept_language("es-ES,es;q=0.9,en;q=0.8") == "es"
    assert from_accept_language("en;q=0.5, es;q=0.6") == "es"
    assert from_accept_language("fr, de") is None
    assert from_accept_language("es;q=0, en;q=nan") is None
    assert from_accept_language(";;;,,q=,es;q=x") is None
    assert from_accept_language(None) is None
    assert choose_language("ES", "en", "en") == "es"
    assert choose_language("fr", None, None) == "en"


def test_codes_are_grouped_for_reading() -> None:
    assert group_code("1234567890") == "12345 67890"
    assert group_code("123456") == "123 456"
    assert group_code("1234567") == "1234 567"
    assert group_code("12345") == "12345"


# Whatever a visitor sends -------------------------------------------------------------------------


def test_odd_requests_get_pages_never_errors_of_the_server(
    client: TestClient, ready: tuple[str, str]
) -> None:
    _, token = ready
    odd = [
        ("GET", f"/p/{token}?lang=xx&msg=<script>alert(1)</script>&lang=es", 200),
        ("GET", f"/p/{token}?msg=%FF%FE", 200),
        ("GET", "/p/" + "A" * 400, 404),
        ("GET", "/p/%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9", 404),
        ("GET", "/p/AAAAAAAA%00AAAAAAAA", 404),
        ("GET", f"/p/{token}/resend", 303),
        ("POST", f"/p/{token}/qr.png", 405),  # the router's answer, before any route's
    ]
    for method, path, status in odd:
        response = client.request(method, path, follow_redirects=False)
        assert response.status_code == status, (method, path, response.text)
        assert "<script>" not in response.text
    bodies: list[dict[str, Any]] = [
        {
            "content": b"\xff\xfe\x00",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
        {"json": {"reason": "other"}},
        {
            "content": b"&".join([b"a=b"] * 50),
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
        {"files": {"reason": ("x", b"other")}},
    ]
    for body in bodies:
        response = client.post(f"/p/{token}/problem", follow_redirects=False, **body)
        assert message_of(response) == "problem_reason"


def test_double_submits_of_every_action_are_answered_politely(
    client: TestClient, ready: tuple[str, str], sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    _, token = ready
    enroll(client, sessions, clock)
    for action, form in (
        ("resend", {}),
        ("extend", {}),
        ("problem", {"reason": "parcel_damaged"}),
    ):
        first = client.post(f"/p/{token}/{action}", data=form, follow_redirects=False)
        second = client.post(f"/p/{token}/{action}", data=form, follow_redirects=False)
        assert first.status_code == 303 and second.status_code in (303, 429), action


def test_too_many_requests_from_one_client_get_a_429_page(
    app: FastAPI, client: TestClient, clock: FakeClock, ready: tuple[str, str]
) -> None:
    _, token = ready
    app.state.parcel_page_buckets = TokenBuckets(
        rate_per_s=1.0, burst=2, clock=lambda: clock().timestamp()
    )
    assert client.get(f"/p/{token}").status_code == 200
    assert client.get(f"/p/{token}/qr.png").status_code == 200
    refused = client.get(f"/p/{token}", headers={"Accept-Language": "es"})
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert "Demasiadas solicitudes" in refused.text
    assert_no_data(refused.text)
    assert_page_headers(refused)
    clock.advance(seconds=1)
    assert client.get(f"/p/{token}").status_code == 200
