"""Generate, Iterate, GenerateImage, GetHistory, the catalogue and GetImage, with defaults."""

from __future__ import annotations

import base64
import hashlib
import io

import grpc
import pytest
from google.protobuf import struct_pb2
from PIL import Image
from providers import Fail, ScriptedProvider, png_bytes, profile
from server_harness import expect_error, running_server

from aigen.server.errors import ProviderUnavailable
from aigen.server.providers.local import LocalProvider
from aigen.v1 import generation_service_pb2 as gen_pb2
from aigen.v1 import image_service_pb2 as image_pb2
from aigen.v1 import session_service_pb2 as session_pb2
from aigen.v1 import types_pb2

pytestmark = pytest.mark.both_stores

Outcome = types_pb2.AttemptOutcome
Turn = gen_pb2.Turn


async def _session(h, **config) -> str:
    request = session_pb2.CreateSessionRequest(project="p", config=types_pb2.SessionConfig(**config))
    return (await h.sessions.CreateSession(request)).session_id


def _pair(ref: types_pb2.ModelRef) -> tuple[str, str]:
    return ref.provider, ref.model


async def test_generate_returns_a_stored_image(tmp_path):
    alpha = ScriptedProvider("alpha")
    async with running_server(tmp_path, [alpha]) as h:
        sid = await _session(h)
        result = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="a blue planet"))
        assert (result.provider, result.model) == ("alpha", "alpha-1")
        assert (result.width, result.height) == (1024, 1024)
        assert result.content_type == "image/png"
        assert result.image_id.startswith("img_")
        assert result.url == f"http://images.test/images/{result.image_id}"
        assert result.session_id == sid
        assert result.turn_id.startswith("turn_")
        assert result.aspect_ratio == "1:1"
        assert result.credits_used == 1
        assert not result.HasField("fallback_used")
        assert not result.HasField("original_request")
        assert [(a.provider, a.model, a.outcome) for a in result.attempts] == [
            ("alpha", "alpha-1", Outcome.ATTEMPT_OUTCOME_SUCCEEDED)
        ]
        assert result.attempts[0].attempt_number == 1
        with Image.open(io.BytesIO(result.data)) as image:
            assert image.size == (1024, 1024)
        assert alpha.calls[0].prompt == "a blue planet"

        body = await h.images.GetImage(image_pb2.GetImageRequest(image_id=result.image_id))
        assert body.data == result.data

        lean = await h.generation.Generate(
            gen_pb2.GenerateRequest(session_id=sid, prompt="again", omit_image_data=True)
        )
        assert lean.data == b""
        assert lean.url


async def test_iterate_needs_a_current_image(tmp_path):
    alpha = ScriptedProvider("alpha")
    async with running_server(tmp_path, [alpha]) as h:
        sid = await _session(h)
        error = await expect_error(h.generation.Iterate(gen_pb2.IterateRequest(session_id=sid, instructions="red")))
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION
        assert error.reason == "NO_CURRENT_IMAGE"
        assert alpha.calls == []
        session = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
        assert session.status == "ready"
        assert session.turn_count == 0


async def test_iterate_edits_the_current_image(tmp_path):
    alpha = ScriptedProvider("alpha")
    async with running_server(tmp_path, [alpha]) as h:
        sid = await _session(h)
        first = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="a cat"))
        assert alpha.calls[0].source_image is None
        second = await h.generation.Iterate(gen_pb2.IterateRequest(session_id=sid, instructions="make it red"))
        edit = alpha.calls[1]
        assert edit.prompt == "make it red"
        assert edit.source_image is not None
        assert edit.source_image.data == first.data
        assert edit.source_image.mime_type == "image/png"
        assert second.image_id != first.image_id
        assert second.turn_id != first.turn_id

        third = await h.generation.Iterate(
            gen_pb2.IterateRequest(session_id=sid, instructions="wider", aspect_ratio="16:9")
        )
        assert alpha.calls[2].source_image.data == second.data
        assert third.aspect_ratio == "16:9"
        assert third.width > third.height
        session = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
        assert session.current_image.image_id == third.image_id


async def test_generate_image_without_a_session(tmp_path):
    alpha = ScriptedProvider("alpha")
    async with running_server(tmp_path, [alpha]) as h:
        result = await h.generation.GenerateImage(
            gen_pb2.GenerateImageRequest(prompt="a logo", aspect_ratio="4:5", image_size="512")
        )
        assert result.session_id == ""
        assert result.turn_id == ""
        assert (result.provider, result.model) == ("alpha", "alpha-1")
        assert result.aspect_ratio == "4:5"
        assert (alpha.calls[0].aspect_ratio, alpha.calls[0].image_size) == ("4:5", "512")
        assert result.width < result.height
        body = await h.images.GetImage(image_pb2.GetImageRequest(image_id=result.image_id))
        assert body.data == result.data
        assert body.content_type == "image/png"
        listed = await h.sessions.ListSessions(session_pb2.ListSessionsRequest())
        assert list(listed.sessions) == []

        sized = await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="banner", size="640x320"))
        assert (alpha.calls[1].width, alpha.calls[1].height) == (640, 320)
        assert alpha.calls[1].size == "640x320"
        assert sized.aspect_ratio == "16:9"


async def test_history_lists_every_turn(tmp_path):
    alpha = ScriptedProvider("alpha")
    beta = ScriptedProvider("beta")
    async with running_server(tmp_path, [alpha, beta], fallback_chain=[("beta", "beta-1")]) as h:
        sid = await _session(h)
        generated = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="a dog"))
        alpha.script = [Fail(ProviderUnavailable("down"))]
        iterated = await h.generation.Iterate(gen_pb2.IterateRequest(session_id=sid, instructions="hat"))
        beta.script = [Fail(ProviderUnavailable("down too"))]
        await expect_error(h.generation.Iterate(gen_pb2.IterateRequest(session_id=sid, instructions="scarf")))

        history = await h.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=sid))
        assert history.session_id == sid
        turns = history.turns
        assert [t.index for t in turns] == [1, 2, 3]
        assert [t.kind for t in turns] == [Turn.KIND_GENERATE, Turn.KIND_ITERATE, Turn.KIND_ITERATE]
        assert [t.status for t in turns] == [Turn.STATUS_COMPLETED, Turn.STATUS_COMPLETED, Turn.STATUS_FAILED]
        assert (turns[0].prompt, turns[0].instructions) == ("a dog", "")
        assert (turns[1].prompt, turns[1].instructions) == ("", "hat")
        assert turns[2].instructions == "scarf"

        assert turns[0].turn_id == generated.turn_id
        assert _pair(turns[0].requested) == _pair(turns[0].served) == ("alpha", "alpha-1")
        assert turns[0].image.image_id == generated.image_id
        assert turns[0].image.url == generated.url
        assert not turns[0].image.data
        assert [a.outcome for a in turns[0].attempts] == [Outcome.ATTEMPT_OUTCOME_SUCCEEDED]

        assert turns[1].turn_id == iterated.turn_id
        assert _pair(turns[1].requested) == ("alpha", "alpha-1")
        assert _pair(turns[1].served) == ("beta", "beta-1")
        assert [(a.provider, a.outcome) for a in turns[1].attempts] == [
            ("alpha", Outcome.ATTEMPT_OUTCOME_FAILED_RETRYABLE),
            ("beta", Outcome.ATTEMPT_OUTCOME_SUCCEEDED),
        ]
        assert turns[1].attempts[0].reason == types_pb2.ERROR_REASON_PROVIDER_UNAVAILABLE
        assert "down" in turns[1].attempts[0].error
        assert turns[1].image.image_id == iterated.image_id

        assert _pair(turns[2].requested) == ("alpha", "alpha-1")
        assert not turns[2].HasField("served")
        assert not turns[2].HasField("image")
        assert turns[2].error
        assert [a.outcome for a in turns[2].attempts] == [Outcome.ATTEMPT_OUTCOME_FAILED_RETRYABLE] * 2
        for turn in turns:
            assert turn.create_time.seconds > 0
            assert turn.aspect_ratio == "1:1"
            assert turn.image_size == "1K"

        session = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
        assert session.turn_count == 3
        assert session.current_image.image_id == iterated.image_id


async def test_list_providers_and_models(tmp_path):
    alpha = ScriptedProvider(
        "alpha", [profile("alpha", "alpha-1", can_edit=False, max_reference_images=3, reports_progress=True)]
    )
    beta = ScriptedProvider("beta", is_configured=False)
    async with running_server(tmp_path, [alpha, beta, LocalProvider()]) as h:
        providers = {p.name: p for p in (await h.generation.ListProviders(gen_pb2.ListProvidersRequest())).providers}
        assert set(providers) == {"alpha", "beta", "local"}
        assert providers["alpha"].configured
        assert not providers["beta"].configured
        assert providers["beta"].credential_env == "SCRIPTED_API_KEY"
        assert providers["local"].configured
        assert "not an AI model" in providers["local"].description
        assert list(providers["alpha"].models) == ["alpha-1"]
        assert list(providers["alpha"].models_in_cooldown) == []

        models = {m.model: m for m in (await h.generation.ListModels(gen_pb2.ListModelsRequest())).models}
        assert set(models) == {"alpha-1", "beta-1", "local"}
        local = models["local"]
        assert local.local
        assert local.configured
        assert "not an AI model" in local.notes
        assert local.capabilities.can_edit
        assert not models["alpha-1"].local
        assert models["alpha-1"].configured
        assert not models["beta-1"].configured
        caps = models["alpha-1"].capabilities
        assert not caps.can_edit
        assert caps.max_reference_images == 3
        assert caps.reports_progress
        assert "9:16" in caps.aspect_ratios
        assert models["alpha-1"].internal_id == "alpha-alpha-1-internal"
        assert models["alpha-1"].typical_latency.seconds == 1

        only_beta = await h.generation.ListModels(gen_pb2.ListModelsRequest(provider="beta"))
        assert [m.model for m in only_beta.models] == ["beta-1"]
        error = await expect_error(h.generation.ListModels(gen_pb2.ListModelsRequest(provider="nope")))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.fields == ("provider",)


async def test_get_image_sends_bytes_type_and_cache_headers(tmp_path):
    async with running_server(tmp_path, [ScriptedProvider("alpha")]) as h:
        result = await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x"))
        call = h.images.GetImage(image_pb2.GetImageRequest(image_id=result.image_id))
        body = await call
        assert body.content_type == "image/png"
        assert body.data == result.data
        metadata = dict(await call.initial_metadata())
        assert metadata["etag"] == f'"{hashlib.sha256(result.data).hexdigest()}"'
        assert "max-age" in metadata["cache-control"]
        assert "immutable" in metadata["cache-control"]


async def test_defaults_request_then_session_then_server(tmp_path):
    providers = [ScriptedProvider(name) for name in ("alpha", "beta", "gamma")]
    alpha, beta, gamma = providers
    async with running_server(tmp_path, providers) as h:
        plain = await _session(h)
        result = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=plain, prompt="x"))
        assert (result.provider, result.model) == ("alpha", "alpha-1")
        assert (alpha.calls[-1].aspect_ratio, alpha.calls[-1].image_size) == ("1:1", "1K")

        configured = await _session(h, provider="beta", aspect_ratio="story", image_size="2K")
        result = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=configured, prompt="x"))
        assert (result.provider, result.model) == ("beta", "beta-1")
        assert not result.HasField("fallback_used")
        request = beta.calls[-1]
        assert (request.aspect_ratio, request.image_size) == ("9:16", "2K")
        assert request.width < request.height
        assert (result.width, result.height) == (request.width, request.height)

        result = await h.generation.Generate(
            gen_pb2.GenerateRequest(
                session_id=configured, prompt="x", provider="gamma", aspect_ratio="16:9", image_size="512"
            )
        )
        assert (result.provider, result.model) == ("gamma", "gamma-1")
        assert not result.HasField("fallback_used")
        assert (gamma.calls[-1].aspect_ratio, gamma.calls[-1].image_size) == ("16:9", "512")

        by_model = await h.generation.Generate(
            gen_pb2.GenerateRequest(session_id=configured, prompt="x", model="gamma-1")
        )
        assert (by_model.provider, by_model.model) == ("gamma", "gamma-1")
        by_internal = await h.generation.Generate(
            gen_pb2.GenerateRequest(session_id=plain, prompt="x", provider="beta", model="beta-beta-1-internal")
        )
        assert (by_internal.provider, by_internal.model) == ("beta", "beta-1")

        history = await h.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=configured))
        assert [_pair(t.requested) for t in history.turns] == [
            ("beta", "beta-1"),
            ("gamma", "gamma-1"),
            ("gamma", "gamma-1"),
        ]
        assert [t.aspect_ratio for t in history.turns] == ["9:16", "16:9", "9:16"]

        sessionless = await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x"))
        assert (sessionless.provider, sessionless.model) == ("alpha", "alpha-1")


async def test_request_fallback_replaces_the_chain(tmp_path):
    names = ("alpha", "beta", "gamma", "delta")
    providers = {name: ScriptedProvider(name) for name in names}
    providers["alpha"].script = [Fail(ProviderUnavailable("alpha is down"))]
    async with running_server(tmp_path, list(providers.values()), fallback_chain=[("beta", "beta-1")]) as h:
        plain = await _session(h)
        result = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=plain, prompt="x"))
        assert _pair(result.fallback_used) == ("beta", "beta-1")
        assert _pair(result.original_request) == ("alpha", "alpha-1")
        assert (result.provider, result.model) == ("beta", "beta-1")

        chained = await _session(h, fallback_chain=[types_pb2.ModelRef(provider="gamma", model="gamma-1")])
        result = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=chained, prompt="x"))
        assert _pair(result.fallback_used) == ("gamma", "gamma-1")
        assert len(providers["beta"].calls) == 1

        result = await h.generation.Generate(
            gen_pb2.GenerateRequest(
                session_id=chained, prompt="x", fallback=[types_pb2.ModelRef(provider="delta", model="delta-1")]
            )
        )
        assert _pair(result.fallback_used) == ("delta", "delta-1")
        assert _pair(result.original_request) == ("alpha", "alpha-1")
        assert [a.provider for a in result.attempts] == ["alpha", "delta"]
        assert len(providers["beta"].calls) == 1
        assert len(providers["gamma"].calls) == 1

        result = await h.generation.GenerateImage(
            gen_pb2.GenerateImageRequest(prompt="x", fallback=[types_pb2.ModelRef(provider="delta", model="delta-1")])
        )
        assert _pair(result.fallback_used) == ("delta", "delta-1")
        assert len(providers["beta"].calls) == 1

        served_first = await h.generation.Generate(
            gen_pb2.GenerateRequest(
                session_id=plain, prompt="x", provider="gamma", fallback=[types_pb2.ModelRef(provider="delta")]
            )
        )
        assert (served_first.provider, served_first.model) == ("gamma", "gamma-1")
        assert not served_first.HasField("fallback_used")
        assert not served_first.HasField("original_request")


async def test_reference_images_in_every_form_reach_the_provider(tmp_path):
    alpha = ScriptedProvider("alpha")
    png = png_bytes(32, 32, (255, 0, 0))
    jpeg = png_bytes(32, 32, (0, 255, 0), fmt="JPEG")
    webp = png_bytes(32, 32, (0, 0, 255), fmt="WEBP")
    gif = png_bytes(16, 16, (9, 9, 9), fmt="GIF")
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    as_object = struct_pb2.Value()
    as_object.struct_value.update({"data": b64(webp), "mimeType": "image/webp"})
    values = [
        struct_pb2.Value(string_value=b64(png)),
        struct_pb2.Value(string_value=f"data:image/jpeg;base64,{b64(jpeg)}"),
        as_object,
    ]
    typed = [types_pb2.ImageData(data=gif, mime_type="image/gif"), types_pb2.ImageData(data=png)]
    async with running_server(tmp_path, [alpha]) as h:
        sid = await _session(h)
        await h.generation.Generate(
            gen_pb2.GenerateRequest(session_id=sid, prompt="x", reference_images=values, reference_image_data=typed)
        )
        received = alpha.calls[0].reference_images
        assert [(r.data, r.mime_type) for r in received] == [
            (png, "image/png"),
            (jpeg, "image/jpeg"),
            (webp, "image/webp"),
            (gif, "image/gif"),
            (png, "image/png"),
        ]

        await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="x"))
        await h.generation.Iterate(
            gen_pb2.IterateRequest(session_id=sid, instructions="y", reference_images=values[1:2])
        )
        assert [(r.data, r.mime_type) for r in alpha.calls[2].reference_images] == [(jpeg, "image/jpeg")]
        await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="z", reference_image_data=typed[:1]))
        assert [(r.data, r.mime_type) for r in alpha.calls[3].reference_images] == [(gif, "image/gif")]
