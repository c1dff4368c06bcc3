"""Projects, credentials, isolation, allowed providers, rate limits and credits."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest
from providers import ScriptedProvider, Succeed
from server_harness import expect_error, running_server

from aigen.server.errors import ProviderUnavailable
from aigen.v1 import (
    access_service_pb2,
    access_service_pb2_grpc,
    generation_service_pb2,
    project_service_pb2,
    project_service_pb2_grpc,
    session_service_pb2,
    types_pb2,
)

pytestmark = pytest.mark.both_stores

ADMIN = "admin-secret"
ADMIN_MD = (("authorization", f"Bearer {ADMIN}"),)
Outcome = types_pb2.AttemptOutcome


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


@contextlib.asynccontextmanager
async def server_with_projects(tmp_path, providers=None, projects=(), **settings):
    """A server with the admin key set and `projects` created, each with one API key."""
    providers = providers if providers is not None else [ScriptedProvider("alpha"), ScriptedProvider("beta")]
    settings.setdefault("admin_key", ADMIN)
    async with running_server(tmp_path, providers, **settings) as h:
        admin = project_service_pb2_grpc.ProjectServiceStub(h.channel)
        keys = {}
        for project in projects:
            await admin.PutProject(project_service_pb2.PutProjectRequest(project=project), metadata=ADMIN_MD)
            created = await admin.CreateApiKey(
                project_service_pb2.CreateApiKeyRequest(project_id=project.project_id), metadata=ADMIN_MD
            )
            keys[project.project_id] = created.api_key
        yield h, admin, access_service_pb2_grpc.AccessServiceStub(h.channel), keys


async def generate_image(h, metadata=(), **fields):
    return await h.generation.GenerateImage(
        generation_service_pb2.GenerateImageRequest(prompt="a cat", omit_image_data=True, **fields), metadata=metadata
    )


# Embedded default ----------------------------------------------------------------------------


async def test_no_projects_means_no_credentials_needed_on_loopback(tmp_path):
    async with running_server(tmp_path, [ScriptedProvider("alpha")]) as h:
        call = h.generation.GenerateImage(generation_service_pb2.GenerateImageRequest(prompt="x", omit_image_data=True))
        result = await call
        assert result.provider == "alpha"
        headers = dict(await call.initial_metadata())
        assert headers["ratelimit-limit"] == "600"
        assert headers["ratelimit-policy"] == "600;w=300"
        assert int(headers["ratelimit-remaining"]) == 599


async def test_auth_on_without_projects_refuses_anonymous(tmp_path):
    async with running_server(tmp_path, [ScriptedProvider("alpha")], auth="on") as h:
        error = await expect_error(generate_image(h))
        assert error.code == grpc.StatusCode.UNAUTHENTICATED
        assert "authorization: Bearer" in error.message
        assert error.reason == "UNAUTHENTICATED"


# Credentials ---------------------------------------------------------------------------------


async def test_first_project_turns_authentication_on(tmp_path):
    project = project_service_pb2.Project(project_id="acme")
    async with server_with_projects(tmp_path, projects=[project]) as (h, _, _, keys):
        await asyncio.sleep(1.1)  # the "any projects?" answer is cached for a second
        assert (await expect_error(generate_image(h))).code == grpc.StatusCode.UNAUTHENTICATED
        wrong = await expect_error(generate_image(h, bearer("aig_wrong")))
        assert wrong.code == grpc.StatusCode.UNAUTHENTICATED
        assert (await generate_image(h, bearer(keys["acme"]))).provider == "alpha"


async def test_admin_rpcs_need_the_admin_key(tmp_path):
    async with server_with_projects(tmp_path) as (_, admin, _, _):
        request = project_service_pb2.ListProjectsRequest()
        assert (await expect_error(admin.ListProjects(request))).code == grpc.StatusCode.UNAUTHENTICATED
        wrong = await expect_error(admin.ListProjects(request, metadata=bearer("nope")))
        assert wrong.code == grpc.StatusCode.UNAUTHENTICATED
        assert len((await admin.ListProjects(request, metadata=ADMIN_MD)).projects) == 0
    async with server_with_projects(tmp_path / "b", admin_key="") as (_, admin, _, _):
        error = await expect_error(admin.ListProjects(project_service_pb2.ListProjectsRequest()))
        assert error.code == grpc.StatusCode.PERMISSION_DENIED
        assert "AIGEN_ADMIN_KEY" in error.message


async def test_project_settings_are_validated(tmp_path):
    async with server_with_projects(tmp_path) as (_, admin, _, _):
        cases = [
            (project_service_pb2.Project(project_id="has space"), "project.projectId"),
            (project_service_pb2.Project(project_id="p", allowed_providers=["nope"]), "project.allowedProviders"),
            (project_service_pb2.Project(project_id="p", billing_mode="free"), "project.billingMode"),
            (
                project_service_pb2.Project(project_id="p", default_provider="alpha", default_model="x"),
                "project.defaultmodel",
            ),
        ]
        for project, field in cases:
            error = await expect_error(
                admin.PutProject(project_service_pb2.PutProjectRequest(project=project), metadata=ADMIN_MD)
            )
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT
            assert error.fields[0].lower() == field.lower()


async def test_revoked_key_stops_working(tmp_path):
    project = project_service_pb2.Project(project_id="acme")
    async with server_with_projects(tmp_path, projects=[project]) as (h, admin, _, keys):
        extra = await admin.CreateApiKey(project_service_pb2.CreateApiKeyRequest(project_id="acme"), metadata=ADMIN_MD)
        assert (await generate_image(h, bearer(extra.api_key))).provider == "alpha"
        await admin.RevokeApiKey(
            project_service_pb2.RevokeApiKeyRequest(project_id="acme", key_id=extra.key_id), metadata=ADMIN_MD
        )
        assert (await expect_error(generate_image(h, bearer(extra.api_key)))).code == grpc.StatusCode.UNAUTHENTICATED
        assert (await generate_image(h, bearer(keys["acme"]))).provider == "alpha"


async def test_app_tokens_for_public_projects_only(tmp_path):
    public = project_service_pb2.Project(project_id="pub", allow_public_clients=True)
    private = project_service_pb2.Project(project_id="priv")
    async with server_with_projects(tmp_path, projects=[public, private]) as (h, _, access, _):
        minted = await access.CreateAppToken(access_service_pb2.CreateAppTokenRequest(app="pub"))
        assert minted.data.token.startswith("apt_")
        assert minted.data.expire_time.seconds > 0
        assert (await generate_image(h, (("x-app-token", minted.data.token),))).provider == "alpha"
        # An app token is not an API key.
        assert (
            await expect_error(generate_image(h, bearer(minted.data.token)))
        ).code == grpc.StatusCode.UNAUTHENTICATED
        denied = await expect_error(access.CreateAppToken(access_service_pb2.CreateAppTokenRequest(app="priv")))
        assert denied.code == grpc.StatusCode.PERMISSION_DENIED
        missing = await expect_error(access.CreateAppToken(access_service_pb2.CreateAppTokenRequest(app="nope")))
        assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "PROJECT_NOT_FOUND")
        assert missing.message == "project nope not found"


async def test_expired_app_token_is_refused(tmp_path):
    public = project_service_pb2.Project(project_id="pub", allow_public_clients=True)
    async with server_with_projects(tmp_path, projects=[public], app_token_ttl_s=0.2) as (h, _, access, _):
        minted = await access.CreateAppToken(access_service_pb2.CreateAppTokenRequest(app="pub"))
        await asyncio.sleep(0.4)
        error = await expect_error(generate_image(h, (("x-app-token", minted.data.token),)))
        assert error.code == grpc.StatusCode.UNAUTHENTICATED
        assert "expired" in error.message


# Isolation -----------------------------------------------------------------------------------


async def test_projects_never_see_each_other(tmp_path):
    from aigen.v1 import layer_service_pb2, layer_service_pb2_grpc

    projects = [project_service_pb2.Project(project_id="a"), project_service_pb2.Project(project_id="b")]
    async with server_with_projects(tmp_path, projects=projects) as (h, _, access, keys):
        a, b = bearer(keys["a"]), bearer(keys["b"])
        session = await h.sessions.CreateSession(session_service_pb2.CreateSessionRequest(mode="layered"), metadata=a)
        assert session.project == "a"
        await h.generation.Generate(
            generation_service_pb2.GenerateRequest(session_id=session.session_id, prompt="x", omit_image_data=True),
            metadata=a,
        )
        sid = session.session_id
        layers = layer_service_pb2_grpc.LayerServiceStub(h.channel)
        attempts = [
            h.sessions.GetSession(session_service_pb2.GetSessionRequest(session_id=sid), metadata=b),
            h.sessions.DeleteSession(session_service_pb2.DeleteSessionRequest(session_id=sid), metadata=b),
            h.generation.GetHistory(generation_service_pb2.GetHistoryRequest(session_id=sid), metadata=b),
            h.generation.Generate(generation_service_pb2.GenerateRequest(session_id=sid, prompt="x"), metadata=b),
            h.generation.Iterate(generation_service_pb2.IterateRequest(session_id=sid, instructions="x"), metadata=b),
            layers.ListLayers(layer_service_pb2.ListLayersRequest(session_id=sid), metadata=b),
            layers.SeparateLayers(layer_service_pb2.SeparateLayersRequest(session_id=sid), metadata=b),
            layers.ExportLayers(layer_service_pb2.ExportLayersRequest(session_id=sid), metadata=b),
            h.sessions.ListSessions(session_service_pb2.ListSessionsRequest(project="a"), metadata=b),
            access.GetUsage(access_service_pb2.GetUsageRequest(project="a"), metadata=b),
            h.generation.GenerateImage(
                generation_service_pb2.GenerateImageRequest(project="a", prompt="x"), metadata=b
            ),
            h.generation.ListModels(generation_service_pb2.ListModelsRequest(project="a"), metadata=b),
        ]
        reasons = []
        for call in attempts:
            error = await expect_error(call)
            assert error.code == grpc.StatusCode.NOT_FOUND
            reasons.append(error.reason)
        # what is missing is named: the other project's session, or the other project itself
        assert reasons == ["SESSION_NOT_FOUND"] * 8 + ["PROJECT_NOT_FOUND"] * 4
        listed = await h.sessions.ListSessions(session_service_pb2.ListSessionsRequest(), metadata=b)
        assert list(listed.sessions) == []
        create_elsewhere = await expect_error(
            h.sessions.CreateSession(session_service_pb2.CreateSessionRequest(project="a"), metadata=b)
        )
        assert create_elsewhere.code == grpc.StatusCode.PERMISSION_DENIED
        # The owner still sees everything.
        mine = await h.sessions.ListSessions(session_service_pb2.ListSessionsRequest(), metadata=a)
        assert [s.session_id for s in mine.sessions] == [sid]


# Allowed providers ---------------------------------------------------------------------------


async def test_disallowed_provider_is_permission_denied_naming_the_allowed(tmp_path):
    project = project_service_pb2.Project(project_id="acme", allowed_providers=["alpha"])
    async with server_with_projects(tmp_path, projects=[project]) as (h, _, _, keys):
        error = await expect_error(generate_image(h, bearer(keys["acme"]), provider="beta"))
        assert error.code == grpc.StatusCode.PERMISSION_DENIED
        assert "allowed: alpha" in error.message


async def test_fallback_chain_never_leaves_the_allowed_providers(tmp_path):
    alpha = ScriptedProvider("alpha", script=[ProviderUnavailable("alpha is down")])
    beta = ScriptedProvider("beta")
    project = project_service_pb2.Project(project_id="acme", allowed_providers=["alpha"])
    async with server_with_projects(tmp_path, [alpha, beta], projects=[project]) as (h, _, _, keys):
        fallback = [types_pb2.ModelRef(provider="beta", model="beta-1")]
        error = await expect_error(generate_image(h, bearer(keys["acme"]), fallback=fallback))
        assert error.code != grpc.StatusCode.OK
        assert beta.calls == []
        outcomes = {(a.provider, a.outcome) for a in error.attempts}
        assert ("beta", Outcome.ATTEMPT_OUTCOME_SKIPPED_NOT_ALLOWED) in outcomes


async def test_project_default_pair_applies(tmp_path):
    project = project_service_pb2.Project(project_id="acme", default_provider="beta", default_model="beta-1")
    async with server_with_projects(tmp_path, projects=[project]) as (h, _, _, keys):
        assert (await generate_image(h, bearer(keys["acme"]))).provider == "beta"


# Rate limits ---------------------------------------------------------------------------------


async def test_rate_limit_counts_down_then_refuses_with_retry_after(tmp_path):
    project = project_service_pb2.Project(project_id="acme", rate_limit=3)
    async with server_with_projects(tmp_path, projects=[project]) as (h, _, _, keys):
        remaining = []
        for _ in range(3):
            call = h.generation.ListProviders(
                generation_service_pb2.ListProvidersRequest(), metadata=bearer(keys["acme"])
            )
            await call
            remaining.append(dict(await call.initial_metadata())["ratelimit-remaining"])
        assert remaining == ["2", "1", "0"]
        call = h.generation.ListProviders(generation_service_pb2.ListProvidersRequest(), metadata=bearer(keys["acme"]))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        trailers = dict(raised.value.trailing_metadata())
        assert 0 < int(trailers["retry-after"]) <= 300
        assert trailers["ratelimit-remaining"] == "0"


async def test_concurrent_requests_are_never_over_admitted(tmp_path):
    project = project_service_pb2.Project(project_id="acme", rate_limit=5)
    async with server_with_projects(tmp_path, projects=[project]) as (h, _, _, keys):
        calls = [
            h.generation.ListModels(generation_service_pb2.ListModelsRequest(), metadata=bearer(keys["acme"]))
            for _ in range(40)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        admitted = [r for r in results if not isinstance(r, Exception)]
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(admitted) == 5
        assert all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused)
        assert len(refused) == 35


# Credits and usage ---------------------------------------------------------------------------


async def test_credits_charged_once_per_served_image_across_retries_and_fallbacks(tmp_path):
    alpha = ScriptedProvider("alpha", script=[ProviderUnavailable("down"), ProviderUnavailable("down"), Succeed()])
    beta = ScriptedProvider("beta")
    project = project_service_pb2.Project(project_id="acme", billing_mode="user_pays")
    prices = {"alpha/alpha-1": 7, "beta/beta-1": 11}
    async with server_with_projects(
        tmp_path,
        [alpha, beta],
        projects=[project],
        credits=prices,
        retry_attempts=1,
        fallback_chain=[("beta", "beta-1")],
    ) as (h, _, access, keys):
        md = bearer(keys["acme"])
        first = await generate_image(h, md)
        assert (first.provider, first.credits_used) == ("beta", 11)
        assert len(first.attempts) == 3  # two alpha tries, then beta
        second = await generate_image(h, md)
        assert (second.provider, second.credits_used) == ("alpha", 7)
        usage = await access.GetUsage(access_service_pb2.GetUsageRequest(), metadata=md)
        assert usage.project == "acme"
        rows = {(r.provider, r.model): (r.images, r.credits, r.billing_mode) for r in usage.rows}
        assert rows == {("alpha", "alpha-1"): (1, 7, "user_pays"), ("beta", "beta-1"): (1, 11, "user_pays")}
        assert usage.total_credits == 18


async def test_failed_generation_charges_nothing(tmp_path):
    alpha = ScriptedProvider("alpha", script=[ProviderUnavailable("down")])
    project = project_service_pb2.Project(project_id="acme")
    async with server_with_projects(tmp_path, [alpha], projects=[project]) as (h, _, access, keys):
        md = bearer(keys["acme"])
        await expect_error(generate_image(h, md))
        usage = await access.GetUsage(access_service_pb2.GetUsageRequest(), metadata=md)
        assert list(usage.rows) == [] and usage.total_credits == 0


async def test_usage_without_authentication_is_per_session_project(tmp_path):
    async with running_server(tmp_path, [ScriptedProvider("alpha")]) as h:
        session = await h.sessions.CreateSession(session_service_pb2.CreateSessionRequest(project="test"))
        await h.generation.Generate(
            generation_service_pb2.GenerateRequest(session_id=session.session_id, prompt="x", omit_image_data=True)
        )
        access = access_service_pb2_grpc.AccessServiceStub(h.channel)
        usage = await access.GetUsage(access_service_pb2.GetUsageRequest(project="test"))
        assert [(r.provider, r.images) for r in usage.rows] == [("alpha", 1)]
