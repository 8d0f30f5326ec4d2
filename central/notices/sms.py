"""SMS notices: the sender protocol, phone numbers to E.164, and Twilio's Messages API."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote

import httpx

from carrier_adapters.http import parse_retry_after
from central.notices.errors import PermanentSendError, SendError, TransientSendError

__all__ = ["SmsSender", "TwilioSms", "mask_phone", "normalize_phone"]

# What carriers may send as a recipient's number (the carrier API's schema says so).
_CARRIER_PHONE = re.compile(r"\+?[0-9 ()-]{5,32}")
_SEPARATORS = re.compile(r"[ ()-]")
# E.164: "+", a country code (never starting with 0), at most 15 digits in all.
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_COUNTRY_CODE = re.compile(r"\+[1-9][0-9]{0,2}")
# Runs of digits long enough to be a phone number (Twilio's codes have five): masked in
# Twilio's messages, which quote the number they refused.
_NUMBER_IN_TEXT = re.compile(r"\+?[0-9]{6,}")

_API_VERSION = "2010-04-01"
_CHECK_CREDENTIALS = (
    "a configuration problem: check LOCKER_TWILIO_ACCOUNT_SID and LOCKER_TWILIO_AUTH_TOKEN "
    "(or the account is suspended); notices wait until then"
)
_CHECK_SENDER = (
    "a configuration problem: check LOCKER_TWILIO_FROM (a number, sender id or messaging "
    "service of this account); notices wait until then"
)
_TOO_MANY_REQUESTS = 20429
# Twilio error codes (https://www.twilio.com/docs/api/errors/<code>) on creating a Message.
# About the sender or the account, the same for every message: an operator fixes the
# configuration and the waiting notices go, so they are transient:
#   21601 From is not an SMS-capable number of this account, 21603 From or MessagingServiceSid
#   missing, 21606 From not a message-capable Twilio number for this destination/account,
#   21659 From not a Twilio number, 21660 From belongs to another account, 21661 From not
#   SMS-capable, 21705 invalid Messaging Service.
_SENDER_CODES = frozenset({21601, 21603, 21606, 21659, 21660, 21661, 21705})
# Every other 4xx is about this message and is permanent, among them: 21211 invalid To,
# 21408 no permission to send to the To number's region, 21610 recipient unsubscribed (replied
# STOP), 21612 To unroutable from this sender, 21614 To not a mobile number, 21617 body too
# long, 21635 To is a landline. 20429 (HTTP 429, too many requests) and 5xx are transient;
# 401 (20003, wrong credentials) and 403 (20403, account suspended) are configuration.


class SmsSender(Protocol):
    """Sends one text message; the channel the notices' job holds."""

    def send(self, to: str, body: str) -> str:
        """Send `body` to the number `to`, return the provider's message id.

        Raises TransientSendError (try again later) or PermanentSendError (never goes).
        """
        ...


def mask_phone(number: str) -> str:
    """A number as details and logs may show it: its last two digits only."""
    digits = re.sub(r"[^0-9]", "", number)
    return f"***{digits[-2:]}" if len(digits) > 2 else "***"


def normalize_phone(raw: str, default_country_code: str | None = None) -> str:
    """`raw` as E.164 (`+` and 8 to 15 digits), or PermanentSendError saying why not.

    Spaces, parentheses and dashes go; a number without a leading `+` gets
    `default_country_code` ("+1", "+44") in front when one is given. No national prefix is
    guessed away: "0..." numbers need their `+` from the carrier.
    """
    if default_country_code is not None and not _COUNTRY_CODE.fullmatch(default_country_code):
        raise ValueError(f"default country code {default_country_code!r} is not like +1 or +44")
    text = raw.strip()
    if not _CARRIER_PHONE.fullmatch(text):
        raise PermanentSendError(
            f"phone number {mask_phone(text)} is not a number: only digits, a leading +, "
            "spaces, parentheses and dashes"
        )
    number = _SEPARATORS.sub("", text)
    if not number.startswith("+"):
        if default_country_code is None:
            raise PermanentSendError(
                f"phone number {mask_phone(number)} has no country code (+...) and no default "
                "country code is configured"
            )
        number = default_country_code + number
    if not _E164.fullmatch(number):
        raise PermanentSendError(
            f"phone number {mask_phone(number)} is not an international number "
            "(E.164: + and 8 to 15 digits)"
        )
    return number


class TwilioSms:
    """`SmsSender` through Twilio's Programmable Messaging REST API (Messages resource).

    `from_` is the sender: a number, an alphanumeric sender id, or a Messaging Service SID
    ("MG...", sent as MessagingServiceSid). A 201 means Twilio accepted the message; whether
    it was delivered comes later, in status callbacks. The auth token and the message body
    never appear in errors; the destination number only masked.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_: str,
        client: httpx.Client,
        *,
        base_url: str = "https://api.twilio.com",
        default_country_code: str | None = None,
    ) -> None:
        if not account_sid or not auth_token or not from_:
            raise ValueError("Twilio account SID, auth token and sender (From) are all needed")
        if default_country_code is not None and not _COUNTRY_CODE.fullmatch(default_country_code):
            raise ValueError(f"default country code {default_country_code!r} is not like +1 or +44")
        self._account_sid = account_sid
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self._sender = ("MessagingServiceSid" if from_.startswith("MG") else "From", from_)
        self._client = client
        self._url = (
            f"{base_url.rstrip('/')}/{_API_VERSION}/Accounts/{quote(account_sid, safe='')}"
            "/Messages.json"
        )
        self._default_country_code = default_country_code

    def __repr__(self) -> str:
        return (
            f"TwilioSms(account_sid={self._account_sid!r}, {self._sender[0]}={self._sender[1]!r})"
        )

    def send(self, to: str, body: str) -> str:
        number = normalize_phone(to, self._default_country_code)
        form = {"To": number, self._sender[0]: self._sender[1], "Body": body}
        try:
            response = self._client.post(self._url, data=form, auth=self._auth)
        except httpx.TimeoutException as exc:
            raise TransientSendError(
                f"Twilio did not answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise TransientSendError(f"Twilio unreachable: {type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return _accepted_sid(response, number)
        raise _refusal(response, number)


def _json_object(response: httpx.Response) -> dict[str, object]:
    """The JSON object in a response, or {} (gateways answer errors in HTML too)."""
    try:
        payload = json.loads(response.content) if response.content else None
    except (ValueError, UnicodeDecodeError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _accepted_sid(response: httpx.Response, number: str) -> str:
    sid = _json_object(response).get("sid")
    if isinstance(sid, str) and sid:
        return sid
    # Twilio took the message: sending it again would text the recipient twice.
    raise PermanentSendError(
        f"Twilio accepted the message to {mask_phone(number)} (HTTP {response.status_code}) "
        "without a message sid in its answer; not sent again, to avoid a duplicate"
    )


def _refusal(response: httpx.Response, number: str) -> SendError:
    """Twilio's error answer (`code`, `message`, `more_info`, `status`) as the notices' error."""
    status = response.status_code
    payload = _json_object(response)
    raw_code = payload.get("code")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    said = _twilio_said(status, code, payload)
    if status == 429 or code == _TOO_MANY_REQUESTS:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
        return TransientSendError(f"Twilio is rate limiting: {said}", retry_after_s=retry_after)
    if status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
        return TransientSendError(f"Twilio failed: {said}", retry_after_s=retry_after)
    if status in (401, 403):
        return TransientSendError(f"Twilio refused the credentials: {said}: {_CHECK_CREDENTIALS}")
    if status == 404:
        # The only resource in the URL is the account: nothing in the message makes it missing.
        return TransientSendError(f"Twilio has no such account: {said}: {_CHECK_CREDENTIALS}")
    if code in _SENDER_CODES:
        return TransientSendError(f"Twilio refused the sender: {said}: {_CHECK_SENDER}")
    return PermanentSendError(f"Twilio refused the message to {mask_phone(number)}: {said}")


def _twilio_said(status: int, code: int | None, payload: dict[str, object]) -> str:
    message = payload.get("message")
    text = f"HTTP {status}"
    if code is not None:
        text += f", code {code}"
    if isinstance(message, str) and message:
        # Twilio quotes the number it refused: masked like everywhere else.
        shown = _NUMBER_IN_TEXT.sub(lambda match: mask_phone(match.group()), message)
        text += f": {' '.join(shown.split())}"
    more_info = payload.get("more_info")
    if isinstance(more_info, str) and more_info.startswith("https://"):
        text += f" ({more_info})"
    return text
