"""Credentials, rate limits, tokens, usage and the APP-API example through the real Envoy."""

from __future__ import annotations

import json

import pytest
from envoy_harness import running_stack
from providers import ScriptedProvider

from aigen.server.providers.base import ProviderRegistry

pytestmark = pytest.mark.both_stores

ADMIN = {"authorization": "Bearer admin-secret"}


@pytest.fixture
async def stack(tmp_path):
    registry = ProviderRegistry()
    for name in ("openai", "gemini", "bfl"):
        registry.add(ScriptedProvider(name))
    async with running_stack(
        tmp_path,
        registry,
        admin_key="admin-secret",
        default_provider="bfl",
        default_model="bfl-1",
        fallback_chain=[],
        local_fallback="never",
    ) as running:
        yield running


async def make_project(client, project_id: str, **settings) -> str:
    response = await client.post("/admin/projects", headers=ADMIN, json={"projectId": project_id, **settings})
    assert response.status_code == 200, response.text
    key = await client.post(f"/admin/projects/{project_id}/keys", headers=ADMIN, json={})
    assert key.status_code == 200, key.text
    return key.json()["apiKey"]


async def test_credentials_errors_are_json_401_and_403(stack):
    async with stack.client() as client:
        await make_project(client, "acme", allowedProviders=["openai"])
        missing = await client.post("/generate", json={"prompt": "x"})
        assert missing.status_code == 401
        assert missing.json()["code"] == 16
        wrong = await client.post("/generate", json={"prompt": "x"}, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        denied = await client.get("/admin/projects", headers={"authorization": "Bearer nope"})
        assert denied.status_code == 401


async def test_disallowed_provider_is_403_naming_the_allowed(stack):
    async with stack.client() as client:
        key = await make_project(client, "acme", allowedProviders=["openai"])
        response = await client.post(
            "/generate", json={"prompt": "x", "provider": "gemini"}, headers={"authorization": f"Bearer {key}"}
        )
        assert response.status_code == 403
        assert "allowed: openai" in response.json()["message"]


async def test_ratelimit_headers_count_down_and_429_carries_retry_after(stack):
    async with stack.client() as client:
        key = await make_project(client, "acme", rateLimit=2)
        auth = {"authorization": f"Bearer {key}"}
        first = await client.get("/providers", headers=auth)
        second = await client.get("/providers", headers=auth)
        assert [first.status_code, second.status_code] == [200, 200]
        assert [first.headers["ratelimit-remaining"], second.headers["ratelimit-remaining"]] == ["1", "0"]
        assert first.headers["ratelimit-limit"] == "2"
        assert first.headers["ratelimit-policy"] == "2;w=300"
        assert 0 < int(first.headers["ratelimit-reset"]) <= 300
        refused = await client.get("/providers", headers=auth)
        assert refused.status_code == 429
        assert refused.json()["code"] == 8
        assert 0 < int(refused.headers["retry-after"]) <= 300
        assert refused.headers["ratelimit-remaining"] == "0"


async def test_app_api_example_with_an_app_token(stack):
    """APP-API: token from POST /api/token, then the documented request and response shape."""
    async with stack.client() as client:
        await make_project(client, "proj-guid", allowPublicClients=True)
        token_response = await client.post("/api/token", json={"app": "proj-guid"})
        assert token_response.status_code == 200, token_response.text
        token = token_response.json()["data"]["token"]
        body = {
            "prompt": "A sunset over mountains",
            "provider": "openai",
            "model": "openai-1",
            "size": "1024x1024",
            "quality": "auto",
        }
        response = await client.post(
            "/api/proj-guid/services/image", content=json.dumps(body), headers={"X-App-Token": token}
        )
        assert response.status_code == 200, response.text
        data = response.json()
        for field in ("url", "content_type", "revised_prompt", "model", "provider", "credits_used"):
            assert field in data
        assert data["provider"] == "openai" and data["content_type"] == "image/png"
        assert "contentType" not in data
        assert not data.get("data")  # the answer points at the image; the bytes are not inlined
        # The URL is public: no token needed.
        path = data["url"].split("/images/", 1)[1]
        image = await client.get(f"/images/{path}")
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        models = await client.get("/api/proj-guid/services/image/models", headers={"X-App-Token": token})
        assert models.status_code == 200 and "internal_id" in models.json()["models"][0]
        other = await client.get("/api/someone-else/services/image/models", headers={"X-App-Token": token})
        assert other.status_code == 404


async def test_usage_route(stack):
    async with stack.client() as client:
        key = await make_project(client, "acme")
        auth = {"authorization": f"Bearer {key}"}
        for _ in range(2):
            assert (
                await client.post("/generate", json={"prompt": "x", "omitImageData": True}, headers=auth)
            ).is_success
        usage = (await client.get("/usage", headers=auth)).json()
        assert usage["project"] == "acme"
        rows = usage["rows"]  # one per day: two if the generations straddled midnight UTC
        assert {r["provider"] for r in rows} == {"bfl"} and sum(int(r["images"]) for r in rows) == 2
        assert usage["totalCredits"] == "2"
