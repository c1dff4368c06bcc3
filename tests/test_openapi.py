"""The OpenAPI document: generated from the protos, valid, complete, current, served through Envoy."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from envoy_harness import running_stack
from openapi_spec_validator import validate

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "gen" / "openapi.json"
API_SPEC = Path("/work/shared/spec/API.md")
if not API_SPEC.exists():
    API_SPEC = ROOT.parent / "shared" / "spec" / "API.md"
# Routes of API.md, in case the spec is not beside the repository.
API_ROUTES = {
    ("post", "/session"),
    ("get", "/session/{}"),
    ("delete", "/session/{}"),
    ("get", "/sessions"),
    ("post", "/session/{}/generate"),
    ("post", "/session/{}/iterate"),
    ("get", "/session/{}/history"),
    ("post", "/session/{}/separate"),
    ("post", "/session/{}/lock"),
    ("post", "/session/{}/unlock"),
    ("post", "/generate"),
    ("get", "/providers"),
    ("get", "/models"),
}


def _generator():
    spec = importlib.util.spec_from_file_location("gen_openapi", ROOT / "scripts" / "gen_openapi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shape(path: str) -> str:
    """A path with every parameter as `{}` (":id" in API.md, "{sessionId}" in OpenAPI)."""
    return re.sub(r"\{[^}]+\}|(?<=/):[A-Za-z_]+", "{}", path)


@pytest.fixture(scope="module")
def document() -> dict:
    return json.loads(DOCUMENT.read_text())


def operations(document: dict) -> set[tuple[str, str]]:
    return {(method, _shape(path)) for path, item in document["paths"].items() for method in item}


def test_document_is_valid_openapi(document):
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_document_is_current():
    generator = _generator()
    assert generator.render(generator.build()) == DOCUMENT.read_text(), "gen/openapi.json is stale: run make gen"


def test_every_route_of_the_api_spec_is_listed(document):
    documented = set(API_ROUTES)
    if API_SPEC.exists():
        for method, path in re.findall(r"^\s+(GET|POST|DELETE|PUT|PATCH)\s+(/\S*)", API_SPEC.read_text(), re.M):
            documented.add((method.lower(), _shape(path)))
    assert len(documented) >= 13
    assert documented <= operations(document)


def test_readme_routes_and_operations_routes_are_listed(document):
    listed = operations(document)
    for route in [
        ("get", "/session/{}/layers"),
        ("get", "/session/{}/layers:export"),
        ("post", "/session/{}/generate:stream"),
        ("post", "/session/{}/iterate:stream"),
        ("post", "/generate:stream"),
        ("get", "/images/{}"),
        ("get", "/api/{}/services/image/models"),
        ("post", "/api/{}/services/image"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
    ]:
        assert route in listed


def test_json_names_follow_the_transcoder(document):
    schemas = document["components"]["schemas"]
    camel = schemas["aigen.v1.GenerationResult"]["properties"]
    assert {"imageId", "contentType", "creditsUsed", "fallbackUsed", "originalRequest"} <= set(camel)
    snake = schemas["snake_case.aigen.v1.GenerationResult"]["properties"]
    assert {"image_id", "content_type", "credits_used", "revised_prompt"} <= set(snake)
    app_api = document["paths"]["/api/{project}/services/image"]["post"]
    assert app_api["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "snake_case.aigen.v1.GenerationResult"
    )
    generate = document["paths"]["/session/{sessionId}/generate"]["post"]
    body = generate["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"prompt", "referenceImages", "aspectRatio", "fallback"} <= set(body)
    assert "sessionId" not in body  # bound from the path
    assert camel["creditsUsed"]["type"] in ("integer", "string")


def test_streams_errors_bytes_and_queries(document):
    stream = document["paths"]["/generate:stream"]["post"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]
    assert stream["text/event-stream"]["x-event-schema"]["$ref"].endswith("aigen.v1.GenerationEvent")
    error = document["paths"]["/generate"]["post"]["responses"]["default"]["content"]["application/json"]["schema"]
    assert error["$ref"] == "#/components/schemas/google.rpc.Status"
    status = document["components"]["schemas"]["google.rpc.Status"]["properties"]
    assert set(status) == {"code", "message", "details"}
    image = document["paths"]["/images/{imageId}"]["get"]["responses"]["200"]["content"]
    assert list(image) == ["*/*"]
    listing = document["paths"]["/sessions"]["get"]["parameters"]
    assert {"project", "pageSize", "pageToken"} <= {p["name"] for p in listing if p["in"] == "query"}


async def test_served_through_envoy(tmp_path, document):
    async with running_stack(tmp_path) as stack, stack.client() as client:
        reply = await client.get("/openapi.json")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == document
