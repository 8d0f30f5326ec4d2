"""The notice channels the settings configure: SMTP for email, Twilio for SMS, or neither."""

from __future__ import annotations

from functools import partial

import httpx

from central.config import CentralSettings
from central.notices.sms import TwilioSms
from central.notices.smtp import SmtpConfig, SmtpMailer
from central.notices.tasks import Channels

SMTP_TIMEOUT_S = 30.0


def build_channels(settings: CentralSettings, http: httpx.Client) -> Channels:
    """Channels from `LOCKER_SMTP_URL`, `LOCKER_NOTIFY_FROM` and `LOCKER_TWILIO_*`.

    A bad SMTP URL is a ValueError naming the setting, at start-up rather than at the first
    notice; an incomplete Twilio configuration likewise.
    """
    mailer_factory = None
    if settings.smtp_url is not None:
        try:
            config = SmtpConfig.from_url(settings.smtp_url.get_secret_value())
        except ValueError as exc:
            raise ValueError(f"LOCKER_SMTP_URL: {exc}") from exc
        mailer_factory = partial(SmtpMailer, config, timeout_s=SMTP_TIMEOUT_S)
    twilio = (settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_from)
    sms = None
    if any(value is not None for value in twilio):
        sid, token, sender = twilio
        if sid is None or token is None or sender is None:
            raise ValueError(
                "LOCKER_TWILIO_ACCOUNT_SID, LOCKER_TWILIO_AUTH_TOKEN and LOCKER_TWILIO_FROM "
                "go together: set all three, or none"
            )
        sms = TwilioSms(
            sid,
            token.get_secret_value(),
            sender,
            http,
            default_country_code=settings.sms_default_country_code,
        )
    return Channels(sender=settings.notify_from, mailer_factory=mailer_factory, sms=sms)
