"""The overview's map settings: the tile URL and attribution reach the page, and the page's
Content-Security-Policy lets images come from the tile server's origin, and from nowhere else."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from central.config import CentralSettings, map_tile_origin
from tests.central.ops.support import VIEWER, fast, make_operator, sign_in
from tests.clock import FakeClock

OSM_ATTRIBUTION = (
    '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
)


class _MapElement(HTMLParser):
    """The attributes of the element with id `bank-map`."""

    def __init__(self) -> None:
        super().__init__()
        self.attrs: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if dict(attrs).get("id") == "bank-map":
            self.attrs = dict(attrs)


def map_element(html: str) -> dict[str, str | None]:
    parser = _MapElement()
    parser.feed(html)
    assert parser.attrs is not None, "no #bank-map on the page"
    return parser.attrs


@dataclass
class Page:
    img_src: list[str]  # the Content-Security-Policy's sources of images
    html: str


def get_page(client: TestClient, path: str) -> Page:
    response = client.get(path)
    assert response.status_code == 200, response.text
    policy: str = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    return Page(directives["img-src"].split(), response.text)


def open_overview(app: FastAPI, clock: FakeClock, client: TestClient) -> Page:
    make_operator(app, clock, VIEWER, "viewer")
    sign_in(client, VIEWER)
    return get_page(client, "/ops")


class TestDefaultTiles:
    @pytest.fixture
    def settings(self, settings: CentralSettings) -> CentralSettings:
        return fast(settings)

    def test_the_overview_allows_images_from_openstreetmap_and_gets_its_attribution(
        self, app: FastAPI, clock: FakeClock, client: TestClient
    ) -> None:
        page = open_overview(app, clock, client)
        assert page.img_src == ["'self'", "data:", "https://tile.openstreetmap.org"]
        element = map_element(page.html)
        assert element["data-tile-url"] == "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
        assert element["data-attribution"] == OSM_ATTRIBUTION
        assert element["aria-label"]
        # Leaflet from the vendor folder, as a file: no inline script anywhere on the page.
        assert '<script src="/ops/static/vendor/leaflet/leaflet.js"></script>' in page.html
        assert "<script>" not in page.html

    def test_other_pages_allow_no_tile_server(
        self, app: FastAPI, clock: FakeClock, client: TestClient
    ) -> None:
        open_overview(app, clock, client)
        assert get_page(client, "/ops/alerts").img_src == ["'self'", "data:"]


class TestTilesOff:
    @pytest.fixture
    def settings(self, settings: CentralSettings) -> CentralSettings:
        return fast(settings).model_copy(update={"map_tile_url": ""})

    def test_no_tiles_means_no_other_image_origin(
        self, app: FastAPI, clock: FakeClock, client: TestClient
    ) -> None:
        page = open_overview(app, clock, client)
        assert page.img_src == ["'self'", "data:"]
        assert map_element(page.html)["data-tile-url"] == ""


class TestOwnTileServer:
    @pytest.fixture
    def settings(self, settings: CentralSettings) -> CentralSettings:
        return fast(settings).model_copy(
            update={
                "map_tile_url": "https://{s}.tiles.example.com:8443/base/{z}/{x}/{y}{r}.png",
                "map_attribution": 'Tiles <a href="https://example.com">Example</a> & "friends"',
            }
        )

    def test_subdomains_become_a_wildcard_of_that_host_only(
        self, app: FastAPI, clock: FakeClock, client: TestClient
    ) -> None:
        page = open_overview(app, clock, client)
        assert page.img_src == ["'self'", "data:", "https://*.tiles.example.com:8443"]
        element = map_element(page.html)
        assert (
            element["data-attribution"]
            == 'Tiles <a href="https://example.com">Example</a> & "friends"'
        )


@pytest.mark.parametrize(
    ("template", "origin"),
    [
        ("https://tile.openstreetmap.org/{z}/{x}/{y}.png", "https://tile.openstreetmap.org"),
        ("  https://Tiles.Example.com/{z}/{x}/{-y}.png?key=k  ", "https://tiles.example.com"),
        ("http://127.0.0.1:8080/{z}/{x}/{y}.png", "http://127.0.0.1:8080"),
        ("https://{s}.tile.example.org/{z}/{x}/{y}@2x.png", "https://*.tile.example.org"),
        ("http://[::1]:9000/{z}/{x}/{y}.png", "http://[::1]:9000"),
        ("", None),
        ("   ", None),
    ],
)
def test_tile_origin(template: str, origin: str | None) -> None:
    assert map_tile_origin(template) == origin


@pytest.mark.parametrize(
    "template",
    [
        "/tiles/{z}/{x}/{y}.png",  # relative: no origin to name
        "ftp://tiles.example.com/{z}/{x}/{y}.png",
        "javascript:alert(1)//{z}/{x}/{y}",
        "https://user:secret@tiles.example.com/{z}/{x}/{y}.png",
        "https://tiles.example.com/{z}/{x}.png",  # no {y}: every row the same tile
        "https://tiles.example.com/static.png",
        "https://{z}.tiles.example.com/{z}/{x}/{y}.png",  # a placeholder other than {s} in the host
        "https://tiles.{s}.example.com/{z}/{x}/{y}.png",  # {s} not in front
        "https://tiles.example.com;img-src */{z}/{x}/{y}.png",  # would widen the CSP
        "https://*/{z}/{x}/{y}.png",
    ],
)
def test_a_tile_url_browsers_could_not_use_or_the_csp_could_not_name_is_refused(
    template: str,
) -> None:
    with pytest.raises(ValidationError, match="map tile URL"):
        CentralSettings(map_tile_url=template)


def test_an_empty_tile_url_turns_tiles_off() -> None:
    assert CentralSettings(map_tile_url="  ").map_tile_url == ""
