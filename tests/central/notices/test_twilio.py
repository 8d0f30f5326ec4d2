"""SMS notices through Twilio's Messages API, played by `httpx.MockTransport` with the payloads
Twilio documents; and phone numbers to E.164."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qs

import httpx
import pytest

from central.notices.errors import PermanentSendError, TransientSendError
from central.notices.sms import SmsSender, TwilioSms, normalize_phone

ACCOUNT_SID = "AC" + "a1b2c3d4e5f6" * 2 + "a1b2c3d4"
AUTH_TOKEN = "tok-7f3c9e1d2b4a6f8e0c1d3b5a7f9e2c4d"
FROM = "+15017122661"
SERVICE_SID = "MG" + "9f8e7d6c5b4a" * 2 + "9f8e7d6c"
MESSAGE_SID = "SM" + "3f2e1d0c9b8a" * 2 + "3f2e1d0c"
TO = "+1 (212) 555-0143"
TO_E164 = "+12125550143"
BODY = "Your parcel is in locker 12 at Main St. Code 482913. Details: https://lk.example/p/abc"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"

Handler = Callable[[httpx.Request], httpx.Response]


def created(request: httpx.Request) -> httpx.Response:
    """Twilio's 201 for a new Message, as its Messages resource documents it."""
    form = parse_qs(request.content.decode())
    return httpx.Response(
        201,
        json={
            "account_sid": ACCOUNT_SID,
            "api_version": "2010-04-01",
            "body": form["Body"][0],
            "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
            "date_sent": None,
            "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form["From"][0] if "From" in form else None,
            "messaging_service_sid": form["MessagingServiceSid"][0]
            if "MessagingServiceSid" in form
            else None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": MESSAGE_SID,
            "status": "queued",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{MESSAGE_SID}/Media.json"
            },
            "to": form["To"][0],
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{MESSAGE_SID}.json",
        },
    )


def twilio_error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> Handler:
    """Twilio's error body: `code`, `message`, `more_info`, `status`."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            headers=headers,
            json={
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
        )

    return handler


def twilio(
    handler: Handler, *, from_: str = FROM, default_country_code: str | None = None
) -> TwilioSms:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return TwilioSms(
        ACCOUNT_SID, AUTH_TOKEN, from_, client, default_country_code=default_country_code
    )


def never_shows_secrets(error: Exception) -> None:
    text = str(error)
    assert AUTH_TOKEN not in text
    assert BODY not in text
    assert "482913" not in text
    assert "5550143" not in text
    assert "2125550143" not in text


def test_twilio_is_an_sms_sender() -> None:
    sender: SmsSender = twilio(created)
    assert sender.send(TO, BODY) == MESSAGE_SID


def test_the_request_is_the_documented_one() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return created(request)

    sid = twilio(handler).send(TO, BODY)

    assert sid == MESSAGE_SID
    [request] = seen
    assert request.method == "POST"
    assert request.url.scheme == "https"
    assert request.url.host == "api.twilio.com"
    assert request.url.path == MESSAGES_PATH
    expected_auth = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected_auth}"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode(), strict_parsing=True) == {
        "To": [TO_E164],
        "From": [FROM],
        "Body": [BODY],
    }


def test_a_messaging_service_goes_as_messaging_service_sid() -> None:
    forms: list[dict[str, list[str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        forms.append(parse_qs(request.content.decode()))
        return created(request)

    twilio(handler, from_=SERVICE_SID).send(TO, BODY)

    assert forms == [{"To": [TO_E164], "MessagingServiceSid": [SERVICE_SID], "Body": [BODY]}]


def test_another_base_url_is_used_as_given() -> None:
    urls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return created(request)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    TwilioSms(ACCOUNT_SID, AUTH_TOKEN, FROM, client, base_url="http://127.0.0.1:9/").send(TO, BODY)

    assert urls == [f"http://127.0.0.1:9{MESSAGES_PATH}"]


def test_accepted_is_enough_delivery_comes_later() -> None:
    # Twilio says failed/undelivered only in status callbacks: a 201 is a sent notice.
    def handler(request: httpx.Request) -> httpx.Response:
        response = created(request)
        payload = json.loads(response.content) | {"status": "accepted"}
        return httpx.Response(201, json=payload)

    assert twilio(handler).send(TO, BODY) == MESSAGE_SID


def test_an_accepted_message_without_a_sid_is_not_sent_twice() -> None:
    sender = twilio(lambda request: httpx.Response(201, text="<html>ok</html>"))

    with pytest.raises(PermanentSendError) as failed:
        sender.send(TO, BODY)

    assert "duplicate" in failed.value.detail
    never_shows_secrets(failed.value)


@pytest.mark.parametrize(
    ("headers", "retry_after_s"),
    [({"Retry-After": "30"}, 30.0), ({}, None), ({"Retry-After": "soon"}, None)],
)
def test_too_many_requests_is_transient_with_twilios_wait(
    headers: dict[str, str], retry_after_s: float | None
) -> None:
    sender = twilio(twilio_error(429, 20429, "Too Many Requests", headers))

    with pytest.raises(TransientSendError) as limited:
        sender.send(TO, BODY)

    assert limited.value.retry_after_s == retry_after_s
    assert "20429" in limited.value.detail
    never_shows_secrets(limited.value)


def test_retry_after_as_an_http_date() -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    header = {"Retry-After": format_datetime(later, usegmt=True)}
    sender = twilio(twilio_error(429, 20429, "Too Many Requests", header))

    with pytest.raises(TransientSendError) as limited:
        sender.send(TO, BODY)

    assert limited.value.retry_after_s is not None
    assert 3000 < limited.value.retry_after_s <= 3600


@pytest.mark.parametrize("status", [500, 502, 503])
def test_twilio_failing_is_transient(status: int) -> None:
    sender = twilio(twilio_error(status, 20500, "Internal Server Error", {"Retry-After": "5"}))

    with pytest.raises(TransientSendError) as failed:
        sender.send(TO, BODY)

    assert f"HTTP {status}" in failed.value.detail
    assert failed.value.retry_after_s == 5.0


def test_a_gateway_error_page_is_transient() -> None:
    sender = twilio(lambda request: httpx.Response(503, text="<html>Service Unavailable</html>"))

    with pytest.raises(TransientSendError) as failed:
        sender.send(TO, BODY)

    assert "HTTP 503" in failed.value.detail


def test_an_invalid_number_is_permanent_with_twilios_code() -> None:
    message = f"The 'To' number {TO_E164} is not a valid phone number."
    sender = twilio(twilio_error(400, 21211, message))

    with pytest.raises(PermanentSendError) as refused:
        sender.send(TO, BODY)

    detail = refused.value.detail
    assert "21211" in detail
    assert "is not a valid phone number" in detail
    assert "https://www.twilio.com/docs/errors/21211" in detail
    assert "***43" in detail  # the number, masked
    never_shows_secrets(refused.value)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (21610, "Attempt to send to unsubscribed recipient"),
        (21614, "'To' number is not a valid mobile number"),
        (21408, "Permission to send an SMS has not been enabled for the region indicated"),
        (21617, "The concatenated message body exceeds the 1600 character limit"),
    ],
)
def test_refusals_of_this_message_are_permanent(code: int, message: str) -> None:
    with pytest.raises(PermanentSendError) as refused:
        twilio(twilio_error(400, code, message)).send(TO, BODY)

    assert str(code) in refused.value.detail


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_a_configuration_problem_that_waits(status: int) -> None:
    code = 20003 if status == 401 else 20403
    sender = twilio(twilio_error(status, code, "Authenticate"))

    with pytest.raises(TransientSendError) as refused:
        sender.send(TO, BODY)

    assert "LOCKER_TWILIO_" in refused.value.detail
    assert "configuration" in refused.value.detail
    assert str(code) in refused.value.detail
    never_shows_secrets(refused.value)


@pytest.mark.parametrize("code", [21606, 21660])
def test_a_sender_of_another_account_is_a_configuration_problem_that_waits(code: int) -> None:
    message = f"The From phone number {FROM} is not a valid, SMS-capable inbound phone number"
    sender = twilio(twilio_error(400, code, message))

    with pytest.raises(TransientSendError) as refused:
        sender.send(TO, BODY)

    assert "LOCKER_TWILIO_FROM" in refused.value.detail
    assert str(code) in refused.value.detail


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
def test_network_failures_are_transient(failure: httpx.HTTPError) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    with pytest.raises(TransientSendError) as failed:
        twilio(handler).send(TO, BODY)

    assert failed.value.__cause__ is failure
    assert failed.value.retry_after_s is None
    never_shows_secrets(failed.value)


def test_a_number_that_cannot_be_made_e164_never_reaches_twilio() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("Twilio was called")

    with pytest.raises(PermanentSendError) as refused:
        twilio(handler).send("212 555 0143", BODY)

    assert "country code" in refused.value.detail
    never_shows_secrets(refused.value)


def test_the_default_country_code_completes_a_national_number() -> None:
    forms: list[dict[str, list[str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        forms.append(parse_qs(request.content.decode()))
        return created(request)

    twilio(handler, default_country_code="+1").send("(212) 555-0143", BODY)

    assert forms[0]["To"] == [TO_E164]


def test_the_auth_token_is_not_in_the_repr() -> None:
    sender = twilio(created)
    assert AUTH_TOKEN not in repr(sender)
    assert AUTH_TOKEN not in str(sender)


@pytest.mark.parametrize(
    ("raw", "default_country_code", "expected"),
    [
        ("+12125550143", None, "+12125550143"),
        ("+1 (212) 555-0143", None, "+12125550143"),
        (" +44 20 7946 0958 ", None, "+442079460958"),
        ("+49-30-901820", None, "+4930901820"),
        ("2125550143", "+1", "+12125550143"),
        ("(212) 555-0143", "+1", "+12125550143"),
        ("+34 612 345 678", "+1", "+34612345678"),  # a + number keeps its own country
        ("+861234567890123", None, "+861234567890123"),  # 15 digits, the most E.164 allows
    ],
)
def test_normalize_phone_makes_e164(
    raw: str, default_country_code: str | None, expected: str
) -> None:
    assert normalize_phone(raw, default_country_code) == expected


@pytest.mark.parametrize(
    ("raw", "default_country_code", "says"),
    [
        ("2125550143", None, "no country code"),
        ("+1 212 555 0143 ext 5", None, "not a number"),
        ("212.555.0143", "+1", "not a number"),
        ("+1 212+555", None, "not a number"),
        ("1234", None, "not a number"),  # shorter than carriers may send
        ("+1234567", None, "E.164"),  # 7 digits
        ("+8612345678901234", None, "E.164"),  # 16 digits
        ("+0123456789", None, "E.164"),  # no country code starts with 0
        ("12345678901234", "+44", "E.164"),  # too long once the country code is on
    ],
)
def test_normalize_phone_refuses_what_is_not_a_number_for_good(
    raw: str, default_country_code: str | None, says: str
) -> None:
    with pytest.raises(PermanentSendError, match=says) as refused:
        normalize_phone(raw, default_country_code)

    digits = "".join(character for character in raw if character.isdigit())
    assert digits[:-2] not in refused.value.detail


@pytest.mark.parametrize("code", ["1", "44", "+", "+0", "+1234", "+1 "])
def test_a_malformed_default_country_code_is_a_configuration_error(code: str) -> None:
    with pytest.raises(ValueError, match="country code"):
        normalize_phone("2125550143", code)
    with pytest.raises(ValueError, match="country code"):
        twilio(created, default_country_code=code)
