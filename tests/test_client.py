"""The client library (async and sync) against the real in-process server."""

from __future__ import annotations

import asyncio
import contextlib
import io
import zipfile
from collections.abc import AsyncIterator

import grpc
import pytest
from PIL import Image
from providers import Fail, Hang, ScriptedProvider, SlowProvider, Succeed, png_bytes, profile
from server_harness import running_server, wait_ready

from aigen import client as aigen_client
from aigen.client import (
    AllProvidersFailedError,
    AsyncClient,
    Client,
    ContentRefusedError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    ModelRef,
    NotFoundError,
    PermissionDeniedError,
    ProviderNotConfiguredError,
    RateLimitedError,
    SessionBusyError,
    SessionConfig,
    UnauthenticatedError,
    UnavailableError,
)
from aigen.server import errors
from aigen.server.interceptor import ErrorInterceptor
from aigen.server.providers.local import LocalProvider
from aigen.v1 import session_service_pb2, session_service_pb2_grpc

pytestmark = pytest.mark.both_stores


def address(harness) -> str:
    return f"127.0.0.1:{harness.server.port}"


@contextlib.asynccontextmanager
async def served(tmp_path, providers, **overrides) -> AsyncIterator[tuple]:
    """A running server and an AsyncClient bound to it."""
    async with (
        running_server(tmp_path, providers, **overrides) as harness,
        AsyncClient(address(harness)) as client,
    ):
        yield harness, client


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# ------------------------------------------------------------------ sessions


async def test_session_lifecycle(tmp_path):
    async with served(tmp_path, [LocalProvider()], default_provider="local", default_model="local") as (_, client):
        config = SessionConfig(aspect_ratio="16:9", provider="local", model="local")
        session = await client.create_session("demo", "single", config)
        assert session.session_id.startswith("sess_")
        assert (session.status, session.project, session.mode) == ("ready", "demo", "single")
        assert session.config.aspect_ratio == "16:9"
        assert session.current_image is None and session.create_time is not None
        other = await client.create_session("elsewhere")

        fetched = await client.get_session(session.session_id)
        assert fetched.session_id == session.session_id and fetched.proto.session_id == session.session_id
        page = await client.list_sessions("demo")
        assert [s.session_id for s in page.sessions] == [session.session_id]
        everything = await client.list_sessions()
        assert {s.session_id for s in everything.sessions} >= {session.session_id, other.session_id}

        await client.delete_session(session.session_id)
        with pytest.raises(NotFoundError) as caught:
            await client.get_session(session.session_id)
        assert caught.value.reason == "SESSION_NOT_FOUND"
        assert caught.value.code == grpc.StatusCode.NOT_FOUND


# ------------------------------------------------------------------ generation


async def test_generate_history_and_images(tmp_path):
    async with served(tmp_path, [LocalProvider()]) as (_, client):
        session = await client.create_session("demo")
        result = await client.generate(
            session.session_id, "Blue planet with rings", provider="local", model="local", aspect_ratio="16:9"
        )
        assert (result.provider, result.model, result.aspect_ratio) == ("local", "local", "16:9")
        assert decode(result.data).size == (result.width, result.height)
        assert result.width > result.height
        assert [a.outcome for a in result.attempts] == ["succeeded"]
        assert result.session_id == session.session_id and result.turn_id

        edited = await client.iterate(session.session_id, "Make it red", provider="local", model="local")
        assert edited.turn_id != result.turn_id

        turns = await client.history(session.session_id)
        expected = [(1, "generate", "completed"), (2, "iterate", "completed")]
        assert [(t.index, t.kind, t.status) for t in turns] == expected
        assert turns[0].prompt == "Blue planet with rings" and turns[1].instructions == "Make it red"
        assert turns[0].served == ModelRef("local", "local") and turns[0].image.image_id == result.image_id

        fetched = await client.get_image(result.image_id)
        assert fetched.data == result.data and fetched.content_type == "image/png"
        omitted = await client.generate_image("A lighthouse", provider="local", model="local", omit_image_data=True)
        assert omitted.data == b""
        with pytest.raises(ValueError):
            omitted.save(tmp_path / "nothing.png")
        saved = await client.save_image(omitted, tmp_path / "out" / "lighthouse.png")
        assert decode(saved.read_bytes()).size == (omitted.width, omitted.height)
        assert (await client.get_session(session.session_id)).current_image.image_id == edited.image_id


async def test_reference_images_from_paths_bytes_and_pil(tmp_path):
    alpha = ScriptedProvider("alpha")
    path = tmp_path / "ref.jpg"
    path.write_bytes(png_bytes(32, 32, fmt="JPEG"))
    async with served(tmp_path, [alpha]) as (_, client):
        pil = Image.new("RGB", (16, 16), (255, 0, 0))
        await client.generate_image("with refs", reference_images=[path, png_bytes(20, 20), pil])
        references = alpha.calls[0].reference_images
        assert [r.mime_type for r in references] == ["image/jpeg", "image/png", "image/png"]
        assert decode(references[2].data).size == (16, 16)
        with pytest.raises(TypeError):
            await client.generate_image("bad ref", reference_images=[42])


async def test_streaming_progress_and_fallback(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Fail(errors.ProviderUnavailable("down"))])
    slow = SlowProvider("beta", 1.2, model_profiles=(profile("beta", "beta-1"),))
    async with served(tmp_path, [alpha, slow]) as (_, client):
        session = await client.create_session("demo")
        stream = client.stream_generate(session.session_id, "A lighthouse", fallback=["beta/beta-1"])
        events = [event async for event in stream]
        phases = [e.phase for e in events]
        assert phases[0] == "queued" and phases[-1] == "completed"
        assert "fallback" in phases
        running = [e for e in events if e.phase == "running" and e.attempt.provider == "beta"]
        assert len(running) >= 2 and all(e.percent_estimated for e in running)
        assert any(e.eta is not None and e.eta > 0 for e in running)
        assert stream.result is events[-1].result
        assert stream.result.fallback_used == ModelRef("beta", "beta-1")
        assert stream.result.original_request == ModelRef("alpha", "alpha-1")
        assert [a.outcome for a in stream.result.attempts] == ["failed_retryable", "succeeded"]

        sessionless = await client.stream_generate_image("A cat", provider="beta", model="beta-1").wait()
        assert sessionless.provider == "beta" and sessionless.session_id == ""


async def test_stream_cancel_reaches_the_provider(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Hang()])
    async with served(tmp_path, [alpha]) as (harness, client):
        session = await client.create_session("demo")
        stream = client.stream_generate(session.session_id, "forever")
        async for event in stream:
            if event.phase == "running":
                break
        await alpha.wait_cancelled()
        await wait_ready(harness, session.session_id)
        turns = await client.history(session.session_id)
        assert turns[-1].status == "cancelled"


async def test_stream_failure_raises_with_the_failed_event(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Fail(errors.ContentRefused("refused by the safety filter"))])
    async with served(tmp_path, [alpha]) as (_, client):
        with pytest.raises(ContentRefusedError) as caught:
            async for _ in client.stream_generate_image("something"):
                pass
        assert caught.value.event.phase == "failed"
        assert caught.value.attempts[0].reason == "content_refused"


# ------------------------------------------------------------------ layers


async def test_layers_with_the_local_renderer(tmp_path):
    async with served(tmp_path, [LocalProvider()], default_provider="local", default_model="local") as (_, client):
        single = await client.create_session("demo")
        await client.generate(single.session_id, "a flat poster")
        with pytest.raises(FailedPreconditionError) as caught:
            await client.separate_layers(single.session_id)
        assert caught.value.reason == "NOT_LAYERED"

        session = await client.create_session("demo", "layered")
        await client.generate(session.session_id, "Red circle on a beige poster", seed=3)
        stack = await client.separate_layers(session.session_id, 3)
        assert len(stack.layers) >= 2 and stack.layers[0].z_order == 0
        subject = stack.layers[-1]

        locked = await client.lock_layer(session.session_id, subject.layer_id)
        assert locked.locked and locked.layer_id == subject.layer_id
        listed = await client.list_layers(session.session_id)
        assert listed.export_url.endswith("layers:export")
        assert [layer.locked for layer in listed.layers if layer.layer_id == subject.layer_id] == [True]

        edited = await client.iterate(session.session_id, "make the background blue")
        assert edited.layers and edited.lock_drift is not None
        assert any(layer.locked for layer in edited.layers)

        unlocked = await client.unlock_layer(session.session_id, subject.layer_id)
        assert not unlocked.locked
        with pytest.raises(NotFoundError) as missing:
            await client.lock_layer(session.session_id, "lyr_missing")
        assert missing.value.reason == "LAYER_NOT_FOUND"

        data = await client.export_layers(session.session_id, tmp_path / "layers.zip")
        assert (tmp_path / "layers.zip").read_bytes() == data
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert any(name.endswith(".png") for name in archive.namelist())


# ------------------------------------------------------------------ catalogue


async def test_models_and_providers(tmp_path):
    alpha = ScriptedProvider("alpha", is_configured=False)
    async with served(tmp_path, [LocalProvider(), alpha]) as (_, client):
        providers = {p.name: p for p in await client.list_providers()}
        assert providers["local"].configured and not providers["alpha"].configured
        assert providers["alpha"].credential_env == "SCRIPTED_API_KEY"
        models = await client.list_models()
        local = next(m for m in models if m.model == "local")
        assert local.local and local.capabilities.can_edit and local.capabilities.supports_mask
        assert [m.model for m in await client.list_models("alpha")] == ["alpha-1"]


# ------------------------------------------------------------------ errors


async def test_invalid_argument_names_the_field(tmp_path):
    async with served(tmp_path, [ScriptedProvider("alpha")]) as (_, client):
        with pytest.raises(InvalidArgumentError) as caught:
            await client.generate_image("")
        assert caught.value.fields == ("prompt",) and caught.value.reason == "INVALID_INPUT"
        with pytest.raises(InvalidArgumentError) as ratio:
            async for _ in client.stream_generate_image("x", aspect_ratio="7:3"):
                pass
        assert ratio.value.fields == ("aspectRatio",)
        with pytest.raises(NotFoundError) as image:
            await client.get_image("img_missing")
        assert image.value.reason == "IMAGE_NOT_FOUND"


async def test_session_busy(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Hang()])
    async with served(tmp_path, [alpha]) as (_, client):
        session = await client.create_session("demo")
        stream = client.stream_generate(session.session_id, "slow")
        events = aiter(stream)
        await anext(events)
        with pytest.raises(SessionBusyError) as caught:
            await client.generate(session.session_id, "again")
        assert caught.value.code == grpc.StatusCode.ABORTED
        stream.cancel()
        await alpha.wait_cancelled()


async def test_provider_not_configured_names_the_variable(tmp_path):
    alpha = ScriptedProvider("alpha", is_configured=False)
    async with served(tmp_path, [alpha]) as (_, client):
        with pytest.raises(ProviderNotConfiguredError) as caught:
            await client.generate_image("x")
        assert caught.value.credential_envs == ("SCRIPTED_API_KEY",)
        assert caught.value.attempts[0].outcome == "skipped_not_configured"


async def test_all_providers_failed_carries_attempts(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Fail(errors.ProviderUnavailable("down"))])
    beta = ScriptedProvider("beta", script=[Fail(errors.ContentRefused("refused"))])
    async with served(tmp_path, [alpha, beta]) as (_, client):
        with pytest.raises(AllProvidersFailedError) as caught:
            await client.generate_image("x", fallback=[("beta", "beta-1")])
        assert [(a.provider, a.outcome) for a in caught.value.attempts] == [
            ("alpha", "failed_retryable"),
            ("beta", "refused"),
        ]


async def test_rate_limited_carries_retry_after(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Fail(errors.ProviderRateLimited("429", retry_after=3))])
    async with served(tmp_path, [alpha]) as (_, client):
        with pytest.raises(RateLimitedError) as caught:
            await client.generate_image("x")
        assert caught.value.retry_after == pytest.approx(3)


async def test_deadline_exceeded(tmp_path):
    slow = SlowProvider("alpha", 3.0, model_profiles=(profile("alpha", "alpha-1"),))
    async with running_server(tmp_path, [slow]) as h, AsyncClient(address(h), deadline=0.3) as client:
        with pytest.raises(DeadlineExceededError):
            await client.generate_image("x")


@pytest.mark.no_server
async def test_unreachable_server():
    async with AsyncClient("127.0.0.1:1", deadline=2) as client:
        with pytest.raises(UnavailableError):
            await client.list_providers()


class GuardedSessions(session_service_pb2_grpc.SessionServiceServicer):
    """Checks the credentials the way an authenticating front would, through the real error mapping."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    async def GetSession(self, request, context):
        metadata = dict(context.invocation_metadata())
        self.metadata.append(metadata)
        if metadata.get("authorization") != "Bearer key-1":
            raise errors.Unauthenticated("missing or wrong API key")
        if metadata.get("x-app-token") != "app-1":
            raise errors.PermissionDenied("this app token may not read sessions")
        if request.session_id == "sess_flood":
            raise errors.RateLimited("600 requests per 5 minutes", retry_after=12)
        return session_service_pb2.Session(session_id=request.session_id, status="ready")


@contextlib.asynccontextmanager
async def guarded_server() -> AsyncIterator[tuple[str, GuardedSessions]]:
    server = grpc.aio.server(interceptors=[ErrorInterceptor(1 << 20)])
    servicer = GuardedSessions()
    session_service_pb2_grpc.add_SessionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(0)


@pytest.mark.no_server
async def test_credentials_metadata_and_auth_errors():
    async with guarded_server() as (target, servicer):
        async with AsyncClient(target) as anonymous:
            with pytest.raises(UnauthenticatedError) as unauthenticated:
                await anonymous.get_session("sess_1")
        assert unauthenticated.value.reason == "UNAUTHENTICATED"
        async with AsyncClient(target, api_key="key-1", app_token="wrong") as partial:
            with pytest.raises(PermissionDeniedError):
                await partial.get_session("sess_1")
        async with AsyncClient(target, api_key="key-1", app_token="app-1") as client:
            assert (await client.get_session("sess_1")).status == "ready"
            with pytest.raises(RateLimitedError) as limited:
                await client.get_session("sess_flood")
        assert limited.value.retry_after == pytest.approx(12) and limited.value.reason == "RATE_LIMITED"
        assert servicer.metadata[-1]["authorization"] == "Bearer key-1"
        assert servicer.metadata[-1]["x-app-token"] == "app-1"
        assert "authorization" not in servicer.metadata[0]


# ------------------------------------------------------------------ sync client


def sync_flow(target: str, out_dir) -> dict:
    with Client(target) as client:
        session = client.create_session("sync", "single", SessionConfig(provider="local", model="local"))
        result = client.generate(session.session_id, "A sync planet")
        events = client.stream_iterate(session.session_id, "darker")
        phases = [event.phase for event in events]
        saved = client.save_image(events.result, out_dir / "sync.png")
        with pytest.raises(NotFoundError):
            client.get_session("sess_missing")
        with pytest.raises(InvalidArgumentError):
            client.generate(session.session_id, "")
        return {
            "result": result,
            "phases": phases,
            "saved": saved,
            "turns": client.history(session.session_id),
            "providers": client.list_providers(),
        }


async def test_sync_client(tmp_path):
    async with running_server(tmp_path, [LocalProvider()]) as harness:
        outcome = await asyncio.to_thread(sync_flow, address(harness), tmp_path)
    assert outcome["result"].provider == "local"
    assert outcome["phases"][0] == "queued" and outcome["phases"][-1] == "completed"
    assert decode(outcome["saved"].read_bytes()).format == "PNG"
    assert len(outcome["turns"]) == 2
    assert [p.name for p in outcome["providers"]] == ["local"]


def sync_cancel(target: str, session_id: str) -> None:
    with Client(target) as client:
        events = client.stream_generate(session_id, "forever")
        for event in events:
            if event.phase == "running":
                events.cancel()
                break


async def test_sync_stream_cancel(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Hang(), Succeed()])
    async with served(tmp_path, [alpha]) as (harness, client):
        session = await client.create_session("demo")
        await asyncio.to_thread(sync_cancel, address(harness), session.session_id)
        await alpha.wait_cancelled()
        await wait_ready(harness, session.session_id)


@pytest.mark.no_server
def test_public_names_are_exported():
    assert set(aigen_client.__all__) <= set(dir(aigen_client))
    assert issubclass(aigen_client.ProviderNotConfiguredError, aigen_client.ProviderError)
    assert issubclass(aigen_client.PayloadTooLargeError, aigen_client.InvalidArgumentError)


@pytest.mark.no_server
def test_every_error_reason_maps_to_an_exception_class():
    """A reason the server can send always reaches the caller as its typed exception."""
    from aigen.client import _errors
    from aigen.v1 import types_pb2

    names = types_pb2.ErrorReason.DESCRIPTOR.values_by_name
    reasons = {name.removeprefix("ERROR_REASON_") for name in names} - {"UNSPECIFIED"}
    assert reasons - set(_errors._BY_REASON) == set()
    assert _errors._BY_REASON["PROJECT_NOT_FOUND"] is NotFoundError
