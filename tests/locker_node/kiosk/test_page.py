"""The kiosk page: served by the node itself, every string in both languages, nothing remote."""

from __future__ import annotations

import re
from pathlib import Path

from locker_node.kiosk.i18n import LANGUAGES, STRINGS
from tests.locker_node.kiosk.rig import Rig

KIOSK = Path(__file__).resolve().parents[3] / "locker_node" / "kiosk"


def kiosk_sources() -> dict[Path, str]:
    return {
        path: path.read_text()
        for folder in ("templates", "static")
        for path in sorted((KIOSK / folder).rglob("*"))
        if path.is_file()
    }


def test_the_page_and_its_assets_come_from_the_node(rig: Rig) -> None:
    page = rig.client.get("/")
    script = rig.client.get("/static/kiosk.js")
    style = rig.client.get("/static/kiosk.css")

    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert style.status_code == 200 and "text/css" in style.headers["content-type"]
    for screen in ("home", "pickup", "door-open", "door-problem", "locked", "courier-login",
                   "courier-scan", "deposit", "deposit-done", "returns", "qr"):  # fmt: skip
        assert f'id="screen-{screen}"' in page.text
    assert "TEST-1" in page.text


def test_nothing_is_loaded_from_anywhere_else() -> None:
    for path, text in kiosk_sources().items():
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text), path


def test_every_string_exists_in_every_language() -> None:
    keys = {language: set(STRINGS[language]) for language in LANGUAGES}
    used: set[str] = set()
    for text in kiosk_sources().values():
        used |= set(re.findall(r'data-i18n="([a-z_.]+)"', text))
        used |= set(re.findall(r'strings\["([a-z_.]+)"\]', text))
        used |= set(re.findall(r'setText\([^,]+, "([a-z_.]+)"', text))
        used |= set(re.findall(r'"((?:scan|deposit|pickup|qr|login|problem)\.[a-z_]+)"', text))

    assert keys["en"] == keys["es"]
    assert used and used <= keys["en"], used - keys["en"]
    assert all(STRINGS["es"][key] != STRINGS["en"][key] for key in ("home.pickup", "door.title"))


def test_placeholders_match_between_languages() -> None:
    for key, english in STRINGS["en"].items():
        spanish = STRINGS["es"][key]
        assert set(re.findall(r"{\w+}", english)) == set(re.findall(r"{\w+}", spanish)), key


def test_the_page_can_be_zoomed(rig: Rig) -> None:
    page = rig.client.get("/").text

    [viewport] = re.findall(r'<meta name="viewport" content="([^"]*)">', page)
    assert "width=device-width" in viewport
    assert "user-scalable" not in viewport and "maximum-scale" not in viewport


def test_the_status_tells_the_open_door_screen_whether_its_door_is_shut(rig: Rig) -> None:
    rig.add_reservation("1Z0001")
    confirmed = rig.deposit("1Z0001", rig.login())
    label = confirmed["compartment"]
    code = rig.secrets_for(confirmed["parcel_id"])["pickup_code"]
    assert rig.pickup(code).status_code == 200

    opened = rig.client.get("/api/status", params={"door": label}).json()
    rig.close_door(label)
    rig.node.flows.ports.doors.poll()
    closed = rig.client.get("/api/status", params={"door": label}).json()

    assert opened["door"] == {"compartment": label, "state": "open"}
    assert closed["door"] == {"compartment": label, "state": "closed"}
    assert rig.client.get("/api/status").json()["door"] is None
    assert rig.client.get("/api/status", params={"door": "Z99"}).json()["door"] is None
    assert rig.client.get("/api/status", params={"door": "A" * 17}).status_code == 422
