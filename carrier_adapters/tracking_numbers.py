"""Tracking-number recognition and check digits, driven by the tracking_number_data corpus."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

__all__ = [
    "KNOWN_CARRIERS",
    "CorpusError",
    "TrackingNumberFormat",
    "TrackingNumberMatch",
    "identify_tracking_number",
    "is_valid_for_carrier",
    "load_formats",
    "normalize_tracking_number",
]

# The corpus (MIT, revision b79ce4bfc045, LICENSE beside it) ships as package data and is read
# as-is; nothing from it is copied into code.
_DATA_PACKAGE = "carrier_adapters"
_DATA_PATH = ("data", "tracking_number_data", "couriers")

# Order of the answer of identify_tracking_number: the carriers the network integrates first, then
# the other couriers of the corpus, and the UPU S10 standard last because it is the least specific.
_COURIER_ORDER = ("usps", "ups", "fedex", "dhl", "amazon", "lasership", "ontrac", "s10")

_WHITESPACE = re.compile(r"\s+")
# Ruby and PCRE spell a named group `(?<Name>...)`; Python needs `(?P<Name>...)`. Lookbehinds
# (`(?<=`, `(?<!`) start the same way and must stay untouched, hence the letter after `<`.
_NAMED_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")


class CorpusError(RuntimeError):
    """The packaged corpus holds something this module cannot interpret."""


def normalize_tracking_number(number: str) -> str:
    """Return `number` without any whitespace, upper-cased: the form stored and compared."""
    return _WHITESPACE.sub("", number).upper()


@dataclass(frozen=True, slots=True)
class TrackingNumberMatch:
    """One corpus format a tracking number is valid for."""

    courier: str
    courier_name: str
    format_id: str
    format_name: str
    normalized: str
    serial_number: str | None = None
    service_type: str | None = None
    country_code: str | None = None
    country: str | None = None
    issuer: str | None = None
    tracking_url: str | None = None


@dataclass(frozen=True, slots=True)
class _Lookup:
    name: str
    group: str
    # (exact value or None, compiled pattern or None, attributes of the entry)
    entries: tuple[tuple[str | None, re.Pattern[str] | None, Mapping[str, Any]], ...]

    def find(self, value: str) -> Mapping[str, Any] | None:
        for exact, pattern, attributes in self.entries:
            if exact is not None and value == exact:
                return attributes
            if pattern is not None and pattern.fullmatch(value):
                return attributes
        return None


Checksum = Callable[[str, str], bool]


@dataclass(frozen=True, slots=True)
class TrackingNumberFormat:
    """One format of one courier, compiled from the corpus."""

    courier: str
    courier_name: str
    format_id: str
    name: str
    pattern: re.Pattern[str]
    checksum: Checksum | None
    prepend_if: tuple[re.Pattern[str], str] | None
    lookups: tuple[_Lookup, ...]
    required_lookups: frozenset[str]
    tracking_url: str | None

    def match(self, normalized: str) -> TrackingNumberMatch | None:
        found = self.pattern.fullmatch(normalized)
        if found is None:
            return None
        groups = {k: _WHITESPACE.sub("", v) for k, v in found.groupdict().items() if v is not None}
        if self.checksum is not None:
            serial = groups.get("SerialNumber")
            check_digit = groups.get("CheckDigit")
            if serial is None or check_digit is None:
                return None
            if self.prepend_if is not None:
                condition, content = self.prepend_if
                if condition.search(serial):
                    serial = content + serial
            if not self.checksum(serial, check_digit):
                return None
        resolved: dict[str, Mapping[str, Any]] = {}
        for lookup in self.lookups:
            value = groups.get(lookup.group)
            entry = lookup.find(value) if value is not None else None
            if entry is not None:
                resolved[lookup.name] = entry
        if not self.required_lookups <= resolved.keys():
            return None
        service = resolved.get("Service Type")
        issuer = resolved.get("Courier")
        return TrackingNumberMatch(
            courier=self.courier,
            courier_name=self.courier_name,
            format_id=self.format_id,
            format_name=self.name,
            normalized=normalized,
            serial_number=groups.get("SerialNumber"),
            service_type=_str_or_none(service.get("name")) if service else None,
            country_code=groups.get("CountryCode") if issuer else None,
            country=_str_or_none(issuer.get("country")) if issuer else None,
            issuer=_str_or_none(issuer.get("courier")) if issuer else None,
            tracking_url=(
                self.tracking_url.replace("%s", normalized) if self.tracking_url else None
            ),
        )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# --- check-digit algorithms (CHECKSUM_ALGORITHMS.md of the corpus) -----------------------------


def _digit(char: str) -> int:
    # Letters count as (code point - 3) mod 10, which is how UPS folds letters in 1Z numbers.
    return int(char) if char.isdigit() else (ord(char) - 3) % 10


def _mod10(spec: Mapping[str, Any]) -> Checksum:
    odds = spec.get("odds_multiplier")
    evens = spec.get("evens_multiplier")
    reverse = bool(spec.get("reverse", False))

    def check(serial: str, check_digit: str) -> bool:
        chars = serial[::-1] if reverse else serial
        total = 0
        for index, char in enumerate(chars):
            value = _digit(char)
            if odds is not None and index % 2 == 1:
                value *= int(odds)
            elif evens is not None and index % 2 == 0:
                value *= int(evens)
            total += value
        expected = (10 - total % 10) % 10
        return check_digit.isdigit() and expected == int(check_digit)

    return check


def _mod7(spec: Mapping[str, Any]) -> Checksum:
    def check(serial: str, check_digit: str) -> bool:
        return serial.isdigit() and check_digit.isdigit() and int(serial) % 7 == int(check_digit)

    return check


def _s10(spec: Mapping[str, Any]) -> Checksum:
    weights = [int(w) for w in spec.get("weightings", (8, 6, 4, 2, 3, 5, 9, 7))]

    def check(serial: str, check_digit: str) -> bool:
        if not (serial.isdigit() and check_digit.isdigit()):
            return False
        remainder = sum(int(c) * w for c, w in zip(serial, weights, strict=False)) % 11
        expected = {0: 5, 1: 0}.get(remainder, 11 - remainder)
        return expected == int(check_digit)

    return check


def _sum_product(spec: Mapping[str, Any]) -> Checksum:
    weights = [int(w) for w in spec["weightings"]]
    modulo1 = int(spec["modulo1"])
    modulo2 = int(spec["modulo2"])

    def check(serial: str, check_digit: str) -> bool:
        if not (serial.isdigit() and check_digit.isdigit()):
            return False
        total = sum(int(c) * w for c, w in zip(serial, weights, strict=False))
        return total % modulo1 % modulo2 == int(check_digit)

    return check


def _luhn(spec: Mapping[str, Any]) -> Checksum:
    def check(serial: str, check_digit: str) -> bool:
        if not (serial.isdigit() and check_digit.isdigit()):
            return False
        total = 0
        # The check digit sits to the right, so the rightmost serial digit is doubled.
        for index, char in enumerate(reversed(serial)):
            value = int(char)
            if index % 2 == 0:
                value *= 2
                if value > 9:
                    value -= 9
            total += value
        return (10 - total % 10) % 10 == int(check_digit)

    return check


_MOD37_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _mod37_36(spec: Mapping[str, Any]) -> Checksum:
    # ISO 7064 MOD 37,36 as DPD prints it on its labels.
    def check(serial: str, check_digit: str) -> bool:
        modulus = 36
        carry = modulus
        for char in serial:
            value = _MOD37_ALPHABET.find(char)
            if value < 0:
                return False
            carry += value
            if carry > modulus:
                carry -= modulus
            carry *= 2
            if carry > modulus:
                carry -= modulus + 1
        result = (modulus + 1 - carry) % modulus
        return _MOD37_ALPHABET[result] == check_digit

    return check


_CHECKSUMS: dict[str, Callable[[Mapping[str, Any]], Checksum]] = {
    "mod10": _mod10,
    "mod7": _mod7,
    "s10": _s10,
    "sum_product_with_weightings_and_modulo": _sum_product,
    "luhn": _luhn,
    "mod_37_36": _mod37_36,
}


# --- loading the corpus -------------------------------------------------------------------------


def _compile_regex(raw: str | Sequence[str]) -> re.Pattern[str]:
    source = raw if isinstance(raw, str) else "".join(raw)
    return re.compile(_NAMED_GROUP.sub("(?P<", source))


def _format_id(spec: Mapping[str, Any], courier: str) -> str:
    explicit = spec.get("id")
    if isinstance(explicit, str) and explicit:
        return explicit
    # A few corpus entries carry no id; derive a stable one from the name.
    slug = re.sub(r"[^a-z0-9]+", "_", str(spec["name"]).lower()).strip("_")
    return slug if slug.startswith(courier) else f"{courier}_{slug}"


def _compile_lookups(spec: Mapping[str, Any]) -> tuple[_Lookup, ...]:
    lookups: list[_Lookup] = []
    for additional in spec.get("additional") or ():
        entries: list[tuple[str | None, re.Pattern[str] | None, Mapping[str, Any]]] = []
        for entry in additional.get("lookup") or ():
            exact = entry.get("matches")
            pattern = entry.get("matches_regex")
            entries.append(
                (
                    exact if isinstance(exact, str) else None,
                    re.compile(pattern) if isinstance(pattern, str) else None,
                    entry,
                )
            )
        lookups.append(
            _Lookup(
                name=str(additional["name"]),
                group=str(additional["regex_group_name"]),
                entries=tuple(entries),
            )
        )
    return tuple(lookups)


def _compile_format(
    courier: str, courier_name: str, spec: Mapping[str, Any]
) -> TrackingNumberFormat:
    validation: Mapping[str, Any] = spec.get("validation") or {}
    checksum_spec = validation.get("checksum")
    checksum: Checksum | None = None
    if checksum_spec:
        factory = _CHECKSUMS.get(str(checksum_spec.get("name")))
        if factory is None:
            raise CorpusError(f"unknown checksum {checksum_spec.get('name')!r} in {courier}")
        checksum = factory(checksum_spec)
    prepend: tuple[re.Pattern[str], str] | None = None
    serial_format = validation.get("serial_number_format") or {}
    if "prepend_if" in serial_format:
        rule = serial_format["prepend_if"]
        prepend = (re.compile(rule["matches_regex"]), str(rule["content"]))
    extra_rules = validation.get("additional") or {}
    unknown_rules = set(extra_rules) - {"exists"}
    if unknown_rules:
        raise CorpusError(f"unknown validation rules {sorted(unknown_rules)} in {courier}")
    tracking_url = spec.get("tracking_url")
    try:
        pattern = _compile_regex(spec["regex"])
    except re.error as exc:
        raise CorpusError(f"regex of {spec.get('name')!r} does not compile: {exc}") from exc
    return TrackingNumberFormat(
        courier=courier,
        courier_name=courier_name,
        format_id=_format_id(spec, courier),
        name=str(spec["name"]),
        pattern=pattern,
        checksum=checksum,
        prepend_if=prepend,
        lookups=_compile_lookups(spec),
        required_lookups=frozenset(str(n) for n in extra_rules.get("exists") or ()),
        tracking_url=tracking_url if isinstance(tracking_url, str) else None,
    )


def _read_corpus() -> Iterator[Mapping[str, Any]]:
    folder = resources.files(_DATA_PACKAGE).joinpath(*_DATA_PATH)
    for item in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if item.name.endswith(".json"):
            yield json.loads(item.read_text(encoding="utf-8"))


@cache
def load_formats() -> tuple[TrackingNumberFormat, ...]:
    """Every format of the packaged corpus, compiled once, in answer order."""
    formats: list[TrackingNumberFormat] = []
    for courier in _read_corpus():
        code = str(courier["courier_code"])
        name = str(courier["name"])
        formats.extend(_compile_format(code, name, spec) for spec in courier["tracking_numbers"])
    order = {code: index for index, code in enumerate(_COURIER_ORDER)}
    formats.sort(key=lambda f: order.get(f.courier, len(order)))
    return tuple(formats)


def identify_tracking_number(number: str) -> list[TrackingNumberMatch]:
    """Every corpus format `number` is valid for (pattern, check digit and lookups all pass)."""
    normalized = normalize_tracking_number(number)
    if not normalized:
        return []
    return [m for f in load_formats() if (m := f.match(normalized)) is not None]


# --- carrier attribution ------------------------------------------------------------------------

# A number is valid for a carrier when the corpus attributes one of its formats to that carrier,
# or when one of these cross-attributions applies:
# - usps: a UPU S10 number issued by the United States (USPS is the US designated operator).
# - dhl: a UPU S10 number issued by Germany: Deutsche Post belongs to DHL Group and its
#   international items are tracked through DHL's unified tracking API. S10 forms with the
#   eCommerce prefixes (LX, RX, UV, CN, ...) already match the corpus's own DHL eCommerce format.
# - fedex and ups: a USPS IMpb number, because FedEx Ground Economy (SmartPost) and UPS Ground Saver
#   (SurePost, Mail Innovations) hand the last mile to USPS under an IMpb label and both carriers
#   track those parcels by that number (UPS returns it as a USPS_PIC alternate tracking number).
#   Refusing such a number would refuse a real parcel of that carrier.
_S10_ISSUERS: Mapping[str, frozenset[str]] = {
    "usps": frozenset({"US"}),
    "dhl": frozenset({"DE"}),
}
_IMPB_FORMATS = frozenset({"usps_impb_c", "usps_impb_n"})
_IMPB_CARRIERS = frozenset({"fedex", "ups"})

# The s10 "courier" of the corpus is a numbering standard, not a carrier anyone registers as.
KNOWN_CARRIERS: frozenset[str] = frozenset(f.courier for f in load_formats() if f.courier != "s10")


def _attributed_to(carrier_id: str, match: TrackingNumberMatch) -> bool:
    if match.courier == carrier_id:
        return True
    if match.courier == "s10":
        return match.country_code in _S10_ISSUERS.get(carrier_id, frozenset())
    return carrier_id in _IMPB_CARRIERS and match.format_id in _IMPB_FORMATS


def is_valid_for_carrier(carrier_id: str, number: str) -> bool:
    """True if `number` is a valid tracking number of a format `carrier_id` uses.

    Carriers outside KNOWN_CARRIERS have no known formats, so this answers False for them; callers
    enforce validation only for KNOWN_CARRIERS.
    """
    carrier = carrier_id.strip().lower()
    return any(_attributed_to(carrier, m) for m in identify_tracking_number(number))
