"""Demo data for the embedded default: four carriers and a few banks in Manhattan."""

from __future__ import annotations

import secrets

from central.banks.repository import get_bank
from central.banks.service import NewBank, add_bank, parse_compartment_spec
from central.carriers.repository import get_carrier
from central.carriers.service import add_carrier, create_api_key
from central.clock import utcnow
from central.config import CentralSettings
from central.db import make_engine, make_sessionmaker
from central.ops.accounts import Passwords, ensure_operator

DEMO_CARRIERS = {"usps": "USPS", "fedex": "FedEx", "ups": "UPS", "dhl": "DHL"}
# The demo parcels' recipients. Not `.localhost`, which the carrier API refuses as a special-use
# name; `.example` is reserved for examples and never delivered anywhere but the demo's inbox.
DEMO_MAIL_DOMAIN = "demo.example"
DEMO_RECIPIENTS = (("Alex Morgan", "en"), ("Lucía Gómez", "es"))
DEMO_OPERATORS = {"admin@demo.example": "admin", "viewer@demo.example": "viewer"}
DEMO_BANKS = [
    NewBank(
        "NYC-0001",
        "Penn Station",
        "7th Ave & W 33rd St, New York, NY 10001",
        40.7506,
        -73.9935,
        parse_compartment_spec("S:20,M:15,L:8,XL:2"),
        "America/New_York",
    ),
    NewBank(
        "NYC-0002",
        "Union Square",
        "14th St & Broadway, New York, NY 10003",
        40.7359,
        -73.9911,
        parse_compartment_spec("S:12,M:10,L:6,XL:2"),
        "America/New_York",
    ),
    NewBank(
        "NYC-0003",
        "Grand Central",
        "89 E 42nd St, New York, NY 10017",
        40.7527,
        -73.9772,
        parse_compartment_spec("S:16,M:12,L:6"),
        "America/New_York",
    ),
]


def demo_recipient(bank_index: int, bank_id: str, parcel: int) -> dict[str, str]:
    """Who a demo parcel is for, as the carrier API takes it: an address of its own, and English
    and Spanish in turn (from bank to bank too, so that even one parcel per bank shows both)."""
    name, language = DEMO_RECIPIENTS[(bank_index + parcel - 1) % len(DEMO_RECIPIENTS)]
    return {
        "name": name,
        "email": f"recipient+{bank_id.lower()}-{parcel}@{DEMO_MAIL_DOMAIN}",
        "language": language,
    }


def prepare_demo(settings: CentralSettings) -> dict[str, str]:
    """Create what is missing and a fresh API key per demo carrier (keys are shown only once)."""
    engine = make_engine(settings.database_url)
    now = utcnow()
    keys: dict[str, str] = {}
    with make_sessionmaker(engine).begin() as session:
        for carrier_id, name in DEMO_CARRIERS.items():
            if get_carrier(session, carrier_id) is None:
                add_carrier(session, carrier_id, name, now)
            keys[carrier_id] = create_api_key(session, carrier_id, now).key
        for bank in DEMO_BANKS:
            if get_bank(session, bank.bank_id) is None:
                add_bank(session, bank, now)
    engine.dispose()
    return keys


def prepare_demo_operators(settings: CentralSettings) -> dict[str, tuple[str, str]]:
    """A dashboard admin and viewer, each with a fresh password: email -> (role, password).

    Passwords are stored only as argon2id hashes, so, like the API keys, they are new every run.
    """
    engine = make_engine(settings.database_url)
    now = utcnow()
    passwords = Passwords.from_settings(settings)
    accounts: dict[str, tuple[str, str]] = {}
    with make_sessionmaker(engine).begin() as session:
        for email, role in DEMO_OPERATORS.items():
            password = secrets.token_urlsafe(12)
            ensure_operator(session, email, role, password, now=now, passwords=passwords)
            accounts[email] = (role, password)
    engine.dispose()
    return accounts
