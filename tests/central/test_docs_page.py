"""/docs works without internet: Swagger UI's script and style come from the app itself."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_the_docs_page_loads_only_what_the_app_serves(client: TestClient) -> None:
    page = client.get("/docs")

    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assets = re.findall(r"""['"](/ops/static/vendor/swagger-ui/[^'"]+)['"]""", page.text)
    assert {asset.rsplit("/", 1)[1] for asset in assets} >= {
        "swagger-ui-bundle.js",
        "swagger-ui.css",
    }
    assert "cdn" not in page.text and "https://" not in page.text
    assert '"validatorUrl": null' in page.text  # no badge fetched from swagger.io
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 100, asset
    assert "'/openapi.json'" in page.text or '"/openapi.json"' in page.text


def test_there_is_no_page_that_needs_a_cdn(client: TestClient) -> None:
    assert client.get("/redoc").status_code == 404
