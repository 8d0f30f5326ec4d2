"""Central's OpenAPI document is valid and whole, so schema tools and code generators can use it."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from central.app import create_app
from central.config import CentralSettings
from tests.central.conftest import TEST_SECRET


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("openapi")
    app = create_app(
        CentralSettings(
            database_url=f"sqlite:///{folder / 'central.db'}",
            data_dir=folder,
            secret_key=TEST_SECRET,
            scheduler_enabled=False,
        )
    )
    response = TestClient(app).get("/openapi.json")
    assert response.status_code == 200
    yield response.json()
    app.state.engine.dispose()


def _refs(node: Any, where: str = "#") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield where, value
            else:
                yield from _refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _refs(value, f"{where}/{index}")


def _resolves(document: dict[str, Any], ref: str) -> bool:
    if not ref.startswith("#/"):
        return False  # the document is served alone: nothing outside it can be fetched
    target: Any = document
    for token in ref[2:].split("/"):
        key = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or key not in target:
            return False
        target = target[key]
    return True


def test_every_ref_resolves_inside_the_document(document: dict[str, Any]) -> None:
    refs = list(_refs(document))
    assert [(where, ref) for where, ref in refs if not _resolves(document, ref)] == []
    assert len(refs) > 50  # the walk does find them


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    # openapi-spec-validator checks the schemas of responses, parameters and components, but
    # not those of request bodies (0.9), so they are shown to it as components as well.
    bodies = [
        media_type["schema"]
        for item in document["paths"].values()
        for operation in item.values()
        for media_type in operation.get("requestBody", {}).get("content", {}).values()
    ]
    assert len(bodies) >= 4
    shown = copy.deepcopy(document)
    shown["components"]["schemas"].update(
        {f"test-request-body-{number}": body for number, body in enumerate(bodies)}
    )
    validate(shown)
