"""Tracking-number recognition, generated from the corpus's own valid and invalid test numbers."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from carrier_adapters.tracking_numbers import (
    KNOWN_CARRIERS,
    CorpusError,
    identify_tracking_number,
    is_valid_for_carrier,
    load_formats,
    normalize_tracking_number,
)

_CORPUS_DIR = resources.files("carrier_adapters").joinpath(
    "data", "tracking_number_data", "couriers"
)


def _corpus() -> list[dict[str, Any]]:
    return [
        json.loads(item.read_text(encoding="utf-8"))
        for item in sorted(_CORPUS_DIR.iterdir(), key=lambda i: i.name)
        if item.name.endswith(".json")
    ]


def _cases(kind: str) -> list[Any]:
    return [
        pytest.param(courier["courier_code"], spec["name"], number, id=f"{spec['name']}:{number}")
        for courier in _corpus()
        for spec in courier["tracking_numbers"]
        for number in spec["test_numbers"][kind]
    ]


def test_corpus_and_licence_ship_as_package_data() -> None:
    folder = resources.files("carrier_adapters").joinpath("data", "tracking_number_data")
    assert "MIT License" in folder.joinpath("LICENSE").read_text(encoding="utf-8")
    assert {c["courier_code"] for c in _corpus()} >= {"usps", "fedex", "ups", "dhl", "s10"}


def test_every_corpus_format_compiles() -> None:
    total = sum(len(c["tracking_numbers"]) for c in _corpus())
    assert len(load_formats()) == total
    assert len({f.format_id for f in load_formats()}) == total


@pytest.mark.parametrize(("courier", "format_name", "number"), _cases("valid"))
def test_valid_corpus_numbers_are_recognised(courier: str, format_name: str, number: str) -> None:
    matches = identify_tracking_number(number)
    assert any(m.courier == courier and m.format_name == format_name for m in matches)
    assert all(m.normalized == normalize_tracking_number(number) for m in matches)
    if courier != "s10":
        assert is_valid_for_carrier(courier, number)


@pytest.mark.parametrize(("courier", "format_name", "number"), _cases("invalid"))
def test_invalid_corpus_numbers_are_refused(courier: str, format_name: str, number: str) -> None:
    matches = identify_tracking_number(number)
    assert not any(m.format_name == format_name for m in matches)
    if courier != "s10":
        assert not is_valid_for_carrier(courier, number)


def test_normalize_strips_all_whitespace_and_uppercases() -> None:
    assert normalize_tracking_number(" 1z 5r89\t390357567127\n") == "1Z5R89390357567127"
    assert normalize_tracking_number("1LS7119013618127-1") == "1LS7119013618127-1"


def test_match_names_courier_format_and_service() -> None:
    (match,) = identify_tracking_number("1z5r89390357567127")
    assert (match.courier, match.format_id, match.format_name) == ("ups", "ups", "UPS")
    assert match.normalized == "1Z5R89390357567127"
    assert match.service_type == "UPS United States Ground"
    assert match.tracking_url is not None and match.tracking_url.endswith("1Z5R89390357567127")


def test_corpus_entries_without_id_get_a_stable_one() -> None:
    ids = {f.name: f.format_id for f in load_formats()}
    assert ids["UPS Waybill"] == "ups_waybill"
    assert ids["LaserShip 1LS7 (18)"] == "lasership_1ls7_18"


def test_s10_match_reports_issuing_country() -> None:
    (match,) = identify_tracking_number("RB123456785GB")
    assert match.courier == "s10"
    assert match.country_code == "GB"
    assert match.issuer == "Royal Mail Group plc"
    assert match.service_type == "Letter Post Registered"


def test_s10_from_an_unknown_country_is_refused() -> None:
    assert identify_tracking_number("RB123456785XX") == []


@pytest.mark.parametrize(
    ("carrier", "number", "expected"),
    [
        ("usps", "RB123456785US", True),
        ("usps", "RB123456785GB", False),
        ("dhl", "RB123456785DE", True),
        ("dhl", "RB123456785US", False),
        ("fedex", "RB123456785US", False),
        # The corpus's DHL eCommerce format covers S10 forms with the eCommerce prefixes.
        ("dhl", "LX123456785CN", True),
        # IMpb labels of FedEx Ground Economy and UPS Ground Saver.
        ("fedex", "9261292700768711948021", True),
        ("ups", "9400111206206406260787", True),
        ("dhl", "9400111206206406260787", False),
        ("ups", "1Z5R89390357567127", True),
        ("fedex", "1Z5R89390357567127", False),
        ("UPS", " 1z5r89390357567127 ", True),
    ],
)
def test_cross_carrier_attribution(carrier: str, number: str, expected: bool) -> None:
    assert is_valid_for_carrier(carrier, number) is expected


def test_known_carriers_are_the_corpus_couriers() -> None:
    assert frozenset({"usps", "fedex", "ups", "dhl", "amazon", "lasership", "ontrac"}) == (
        KNOWN_CARRIERS
    )
    assert "s10" not in KNOWN_CARRIERS


def test_unknown_carrier_has_no_valid_numbers() -> None:
    assert not is_valid_for_carrier("acme-post", "1Z5R89390357567127")


@pytest.mark.parametrize("number", ["", "   ", "not a number", "1Z5R8939035756712"])
def test_garbage_matches_nothing(number: str) -> None:
    assert not any(m.courier == "ups" for m in identify_tracking_number(number))


def test_unknown_checksum_in_corpus_is_a_loud_error() -> None:
    from carrier_adapters.tracking_numbers import _compile_format

    spec = {"name": "X", "regex": "(?<SerialNumber>\\d{3})(?<CheckDigit>\\d)"}
    with pytest.raises(CorpusError):
        _compile_format("x", "X", {**spec, "validation": {"checksum": {"name": "mod99"}}})


@pytest.mark.parametrize(
    ("algorithm", "serial", "check", "expected"),
    [
        # Luhn: 7992739871 has check digit 3.
        ("luhn", "7992739871", "3", True),
        ("luhn", "7992739871", "4", False),
        # ISO 7064 MOD 37,36 (DPD): the worked example of python-stdnum's iso7064 module.
        ("mod_37_36", "A12425GABC1234002", "M", True),
        ("mod_37_36", "A12425GABC1234002", "N", False),
    ],
)
def test_checksums_the_corpus_documents_but_does_not_use_yet(
    algorithm: str, serial: str, check: str, expected: bool
) -> None:
    from carrier_adapters.tracking_numbers import _CHECKSUMS

    assert _CHECKSUMS[algorithm]({})(serial, check) is expected
