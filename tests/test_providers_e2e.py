"""The whole server with its real provider adapters, each talking to a fake vendor server.

The server builds Gemini, OpenAI, Replicate and BFL from settings pointing at the fakes in
`tests/fakes/`, and is driven through the generated gRPC stubs (and once through Envoy).
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import io
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import grpc
import pytest
from envoy_harness import running_stack
from fakes.base import png_bytes
from fakes.bfl import FakeBfl
from fakes.gemini import FakeGemini, inline_parts
from fakes.openai import PARTIAL_COLORS, FakeOpenAI
from fakes.replicate import FakeReplicate
from google.rpc import status_pb2
from PIL import Image
from server_harness import Harness, error_details, expect_error, running_server, unpack_status, wait_ready

from aigen.server.config import Settings
from aigen.v1 import generation_service_pb2 as gen_pb2
from aigen.v1 import image_service_pb2 as image_pb2
from aigen.v1 import session_service_pb2 as session_pb2
from aigen.v1 import types_pb2

pytestmark = pytest.mark.both_stores

Phase = types_pb2.GenerationEvent.Phase
Outcome = types_pb2.AttemptOutcome
Reason = types_pb2.ErrorReason
GEMINI_KEY, REPLICATE_TOKEN, OPENAI_KEY, BFL_KEY = "gm-test", "r8_test", "sk-test", "bfl-test"


@dataclass
class Vendors:
    """The four fake vendor servers, running."""

    gemini: FakeGemini
    openai: FakeOpenAI
    replicate: FakeReplicate
    bfl: FakeBfl

    def settings(self, *configured: str, **overrides) -> dict:
        """Settings pointing every provider at its fake; only `configured` ones get a key."""
        names = configured or ("gemini", "openai", "replicate", "bfl")
        values = {
            "gemini_base_url": self.gemini.base_url,
            "openai_base_url": self.openai.base_url,
            "replicate_base_url": self.replicate.base_url,
            "bfl_base_url": self.bfl.base_url,
            "gemini_api_key": GEMINI_KEY if "gemini" in names else "",
            "openai_api_key": OPENAI_KEY if "openai" in names else "",
            "replicate_api_token": REPLICATE_TOKEN if "replicate" in names else "",
            "bfl_api_key": BFL_KEY if "bfl" in names else "",
            "default_provider": "gemini",
            "default_model": "nano-banana",
            "generation_timeout_s": 30.0,
        }
        return values | overrides


@pytest.fixture
async def vendors() -> AsyncIterator[Vendors]:
    async with (
        FakeGemini(api_key=GEMINI_KEY) as gemini,
        FakeOpenAI() as openai,
        FakeReplicate(token=REPLICATE_TOKEN) as replicate,
        FakeBfl(key=BFL_KEY) as bfl,
    ):
        yield Vendors(gemini, openai, replicate, bfl)


@pytest.fixture
async def server(tmp_path, vendors: Vendors) -> AsyncIterator[Harness]:
    """The server with every real provider configured against the fakes."""
    async with running_server(tmp_path, None, **vendors.settings()) as harness:
        yield harness


def jpeg_bytes(color: tuple[int, int, int] = (9, 90, 9)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="JPEG")
    return buffer.getvalue()


def pixel_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def ref(provider: str, model: str) -> types_pb2.ModelRef:
    return types_pb2.ModelRef(provider=provider, model=model)


async def new_session(h: Harness, provider: str = "", model: str = "") -> str:
    config = types_pb2.SessionConfig(provider=provider, model=model)
    created = await h.sessions.CreateSession(session_pb2.CreateSessionRequest(project="e2e", config=config))
    return created.session_id


async def collect(call) -> list[types_pb2.GenerationEvent]:
    events = [event async for event in call]
    assert await call.code() == grpc.StatusCode.OK
    assert events[-1].phase in (Phase.PHASE_COMPLETED, Phase.PHASE_FAILED)
    return events


def served_image(vendors: Vendors, provider: str) -> bytes | None:
    """The bytes the fake returns for every generation, where they do not depend on the request."""
    return {"replicate": vendors.replicate.image, "bfl": vendors.bfl.image}.get(provider)


# Session generate ---------------------------------------------------------------------------------

PAIRS = [("gemini", "nano-banana"), ("openai", "gpt-image"), ("replicate", "flux-pro"), ("bfl", "flux-2-pro")]


def prompt_received(vendors: Vendors, provider: str) -> str:
    if provider == "gemini":
        [content] = vendors.gemini.last.json["contents"]
        return content["parts"][0]["text"]
    if provider == "openai":
        return vendors.openai.last.json["prompt"]
    if provider == "replicate":
        return vendors.replicate.last_input["prompt"]
    return vendors.bfl.last_body["prompt"]


@pytest.mark.parametrize(("provider", "model"), PAIRS)
async def test_session_generate_through_each_adapter(server, vendors, provider, model):
    sid = await new_session(server, provider, model)
    result = await server.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="Blue planet with rings"))

    assert (result.provider, result.model, result.session_id) == (provider, model, sid)
    assert not result.HasField("fallback_used")
    assert [(a.provider, a.outcome) for a in result.attempts] == [(provider, Outcome.ATTEMPT_OUTCOME_SUCCEEDED)]
    assert prompt_received(vendors, provider) == "Blue planet with rings"
    assert result.content_type == "image/png"
    assert (result.width, result.height) == pixel_size(result.data)
    if (expected := served_image(vendors, provider)) is not None:
        assert result.data == expected
    stored = await server.images.GetImage(image_pb2.GetImageRequest(image_id=result.image_id))
    assert stored.data == result.data
    session = await server.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
    assert session.current_image.image_id == result.image_id and session.turn_count == 1


# Iterate with reference images --------------------------------------------------------------------


def images_received(vendors: Vendors, provider: str) -> list[tuple[str, bytes]]:
    """(MIME type, bytes) of every image the vendor received in the last request, in order."""
    if provider == "gemini":
        return [image for content in vendors.gemini.last.json["contents"] for image in inline_parts(content)]
    if provider == "openai":
        return [(part.content_type, part.data) for part in vendors.openai.last.files("image[]")]
    if provider == "replicate":
        sent = vendors.replicate.last_input
        return [_from_data_uri(uri) for uri in (sent["image"], *sent["style_reference_images"])]
    body = vendors.bfl.last_body  # BFL takes bare base64: no MIME type on the wire
    fields = ["input_image", *(f"input_image_{n}" for n in range(2, 9))]
    return [("", base64.b64decode(body[name])) for name in fields if name in body]


def _from_data_uri(uri: str) -> tuple[str, bytes]:
    header, _, payload = uri.partition(",")
    assert header.endswith(";base64"), header
    return header.removeprefix("data:").removesuffix(";base64"), base64.b64decode(payload)


EDIT_PAIRS = [("gemini", "nano-banana"), ("openai", "gpt-image"), ("replicate", "ideogram"), ("bfl", "flux-2-pro")]


@pytest.mark.parametrize(("provider", "model"), EDIT_PAIRS)
async def test_iterate_sends_the_current_image_and_references(server, vendors, provider, model):
    sid = await new_session(server, provider, model)
    first = await server.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="A red cube"))
    references = [
        types_pb2.ImageData(data=jpeg_bytes(), mime_type="image/jpeg"),
        types_pb2.ImageData(data=png_bytes(6, 6, (1, 2, 3)), mime_type="image/png"),
    ]

    result = await server.generation.Iterate(
        gen_pb2.IterateRequest(session_id=sid, instructions="Make it blue", reference_image_data=references)
    )

    received = images_received(vendors, provider)
    expected = [("image/png", first.data), ("image/jpeg", references[0].data), ("image/png", references[1].data)]
    if provider == "bfl":
        expected = [("", data) for _, data in expected]
    assert received == expected
    assert (result.provider, result.model) == (provider, model)
    history = await server.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=sid))
    assert [turn.instructions for turn in history.turns] == ["", "Make it blue"]


# Fallback -----------------------------------------------------------------------------------------


def fail_once(vendors: Vendors, provider: str, status: int) -> None:
    """Script the vendor's next API call to answer `status`."""
    retry = {"retry_after": "0"} if status == 429 else {}
    getattr(vendors, provider).fail(status, "overloaded", **retry)


FALLBACKS = [
    ("gemini", "nano-banana", 503, "openai", "gpt-image", Reason.ERROR_REASON_PROVIDER_UNAVAILABLE),
    ("openai", "gpt-image", 429, "replicate", "flux-pro", Reason.ERROR_REASON_PROVIDER_RATE_LIMITED),
    ("replicate", "flux-pro", 503, "bfl", "flux-2-pro", Reason.ERROR_REASON_PROVIDER_UNAVAILABLE),
    ("bfl", "flux-2-pro", 429, "gemini", "nano-banana", Reason.ERROR_REASON_PROVIDER_RATE_LIMITED),
]


@pytest.mark.parametrize(("failing", "model", "status", "serving", "fallback", "reason"), FALLBACKS)
async def test_a_failing_vendor_falls_back_to_a_working_one(
    server, vendors, failing, model, status, serving, fallback, reason
):
    fail_once(vendors, failing, status)
    sid = await new_session(server)
    request = gen_pb2.GenerateRequest(
        session_id=sid, prompt="A lighthouse", provider=failing, model=model, fallback=[ref(serving, fallback)]
    )

    result = await server.generation.Generate(request)

    assert (result.provider, result.model) == (serving, fallback)
    assert (result.fallback_used.provider, result.fallback_used.model) == (serving, fallback)
    assert (result.original_request.provider, result.original_request.model) == (failing, model)
    attempts = [(a.provider, a.model, a.chain_position, a.outcome) for a in result.attempts]
    assert attempts == [
        (failing, model, 0, Outcome.ATTEMPT_OUTCOME_FAILED_RETRYABLE),
        (serving, fallback, 1, Outcome.ATTEMPT_OUTCOME_SUCCEEDED),
    ]
    assert result.attempts[0].reason == reason
    assert str(status) in result.attempts[0].error or "overloaded" in result.attempts[0].error
    history = await server.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=sid))
    assert [(a.provider, a.outcome) for a in history.turns[0].attempts] == [(p, o) for p, _, _, o in attempts]


# Progress and previews in the stream ---------------------------------------------------------------


def measured(events: list[types_pb2.GenerationEvent], provider: str) -> list[float]:
    running = [e for e in events if e.phase == Phase.PHASE_RUNNING and e.attempt.provider == provider]
    return [e.percent for e in running if not e.percent_estimated]


@pytest.mark.parametrize(("provider", "model"), [("replicate", "flux-dev"), ("bfl", "flux-2-pro")])
async def test_measured_progress_reaches_the_stream(server, vendors, provider, model):
    vendors.replicate.polls = vendors.bfl.polls = 4  # three working polls: 25, 50 and 75 percent
    sid = await new_session(server, provider, model)

    events = await collect(server.generation.StreamGenerate(gen_pb2.GenerateRequest(session_id=sid, prompt="x")))

    percents = measured(events, provider)
    assert {25.0, 50.0, 75.0} <= set(percents), percents
    assert percents == sorted(percents)
    assert events[-1].phase == Phase.PHASE_COMPLETED and events[-1].result.provider == provider


async def test_openai_partial_images_stream_as_previews(server, vendors):
    sid = await new_session(server, "openai", "gpt-image")

    events = await collect(server.generation.StreamGenerate(gen_pb2.GenerateRequest(session_id=sid, prompt="x")))

    previews = [e for e in events if e.HasField("preview")]
    assert len(previews) == 2
    assert all(e.phase == Phase.PHASE_RUNNING and e.preview.content_type == "image/png" for e in previews)
    colors = [Image.open(io.BytesIO(e.preview.data)).convert("RGB").getpixel((0, 0)) for e in previews]
    assert colors == list(PARTIAL_COLORS[:2])
    assert [e.message for e in previews] == ["partial image 1 of 2", "partial image 2 of 2"]
    assert events.index(previews[-1]) < len(events) - 1
    assert events[-1].phase == Phase.PHASE_COMPLETED and events[-1].result.provider == "openai"
    assert vendors.openai.last.json["stream"] is True


async def test_unary_openai_generations_skip_streaming(server, vendors):
    sid = await new_session(server, "openai", "gpt-image")
    result = await server.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="x"))
    assert result.provider == "openai"
    assert "stream" not in vendors.openai.last.json  # nobody watches progress: the plain answer


# Cancellation -------------------------------------------------------------------------------------


async def test_cancelling_a_stream_cancels_the_replicate_prediction(server, vendors):
    vendors.replicate.polls = 10_000  # the prediction would run for hours
    sid = await new_session(server, "replicate", "flux-dev")
    call = server.generation.StreamGenerate(gen_pb2.GenerateRequest(session_id=sid, prompt="slow"))
    async with asyncio.timeout(10):
        async for event in call:
            if event.phase == Phase.PHASE_RUNNING and vendors.replicate.reloads:
                break

    call.cancel()

    async with asyncio.timeout(10):
        await vendors.replicate.wait_until(lambda: bool(vendors.replicate.cancels))
    await wait_ready(server, sid)
    [prediction_id] = vendors.replicate.cancels
    assert vendors.replicate.predictions[prediction_id].status == "canceled"
    vendors.replicate.polls = 2
    after = await server.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="again"))
    assert after.provider == "replicate"


# Safety refusals ----------------------------------------------------------------------------------

REFUSALS = [{"finish_reason": "IMAGE_SAFETY"}, {"block_reason": "SAFETY"}]


@pytest.mark.parametrize("refusal", REFUSALS, ids=["finish-reason", "blocked-prompt"])
async def test_a_gemini_refusal_moves_the_chain_on(server, vendors, refusal):
    vendors.gemini.refuse(**refusal)
    request = gen_pb2.GenerateImageRequest(
        prompt="x", provider="gemini", model="nano-banana", fallback=[ref("bfl", "flux-2-pro")]
    )

    result = await server.generation.GenerateImage(request)

    assert (result.provider, result.fallback_used.provider, result.original_request.provider) == (
        "bfl",
        "bfl",
        "gemini",
    )
    refused = result.attempts[0]
    assert (refused.outcome, refused.reason) == (Outcome.ATTEMPT_OUTCOME_REFUSED, Reason.ERROR_REASON_CONTENT_REFUSED)


@pytest.mark.parametrize("refusal", REFUSALS, ids=["finish-reason", "blocked-prompt"])
async def test_a_gemini_refusal_alone_is_content_refused(server, vendors, refusal):
    vendors.gemini.refuse(**refusal)
    failed = await expect_error(
        server.generation.GenerateImage(
            gen_pb2.GenerateImageRequest(prompt="x", provider="gemini", model="nano-banana")
        )
    )
    assert failed.reason == "CONTENT_REFUSED"
    assert failed.code == grpc.StatusCode.FAILED_PRECONDITION
    assert [(a.provider, a.outcome) for a in failed.attempts] == [("gemini", Outcome.ATTEMPT_OUTCOME_REFUSED)]

    vendors.gemini.refuse(**refusal)
    sid = await new_session(server, "gemini", "nano-banana")
    call = server.generation.StreamGenerate(gen_pb2.GenerateRequest(session_id=sid, prompt="x"))
    events = await collect(call)
    assert events[-1].phase == Phase.PHASE_FAILED
    streamed = error_details_of(events[-1].error)
    assert streamed.reason == "CONTENT_REFUSED"


def error_details_of(status: status_pb2.Status):
    code = next(code for code in grpc.StatusCode if code.value[0] == status.code)
    return unpack_status(status, code, status.message)


# The catalogue ------------------------------------------------------------------------------------

SPEC_MODELS = {  # API.md and APP-API.md: provider, model, internal id, notes (API.md only)
    ("gemini", "nano-banana"): ("gemini-2.5-flash-image", "Fast, 1024px"),
    ("gemini", "nano-banana-pro"): ("gemini-3-pro-image-preview", "Higher quality, up to 4K, ~30s"),
    ("gemini", "nano-banana-2"): ("gemini-3.1-flash-image-preview", None),
    ("replicate", "ideogram"): ("ideogram-ai/ideogram-v3-turbo", "Good for text in images"),
    ("replicate", "recraft"): ("recraft-ai/recraft-v3", "High-quality illustrations"),
    ("replicate", "flux-dev"): ("black-forest-labs/flux-dev", "Artistic"),
    ("replicate", "flux-pro"): ("black-forest-labs/flux-1.1-pro", "Highest quality"),
    ("openai", "gpt-image"): (None, None),
    ("bfl", "flux-2-pro"): ("flux-2-pro", None),
    ("bfl", "flux-2-flex"): ("flux-2-flex", None),
    ("bfl", "flux-2-max"): ("flux-2-max", None),
    ("bfl", "flux-dev"): ("flux-dev", None),
}


async def test_catalogue_shows_configured_flags_per_key_and_the_spec_notes(tmp_path, vendors):
    async with running_server(tmp_path, None, **vendors.settings("gemini", "bfl")) as h:
        providers = await h.generation.ListProviders(gen_pb2.ListProvidersRequest())
        models = await h.generation.ListModels(gen_pb2.ListModelsRequest())

    flags = {p.name: (p.configured, p.credential_env) for p in providers.providers}
    assert flags == {
        "gemini": (True, "GEMINI_API_KEY"),
        "openai": (False, "OPENAI_API_KEY"),
        "replicate": (False, "REPLICATE_API_TOKEN"),
        "bfl": (True, "BFL_API_KEY"),
        "local": (True, ""),
    }
    by_pair = {(m.provider, m.model): m for m in models.models}
    assert set(SPEC_MODELS) <= set(by_pair)
    for pair, (internal_id, notes) in SPEC_MODELS.items():
        info = by_pair[pair]
        assert info.configured == flags[pair[0]][0], pair
        if internal_id is not None:
            assert info.internal_id == internal_id, pair
        if notes is not None:
            assert info.notes == notes, pair
        assert info.notes, pair
    assert "gpt-image-1" in by_pair[("openai", "gpt-image")].aliases  # the APP-API id


async def test_configured_model_ids_keep_the_spec_ids_selecting_the_model(tmp_path, vendors):
    ids = {
        "nano-banana-pro": "gemini-3-pro-image-ga",
        "gemini/nano-banana-pro": "gemini-3-pro-image",
        "gpt-image": "gpt-image-2",
        "replicate/flux-pro": "black-forest-labs/flux-dev",
        "bfl/flux-2-max": "flux-2-pro",
    }
    async with running_server(tmp_path, None, **vendors.settings(model_ids=ids)) as h:
        listed = await h.generation.ListModels(gen_pb2.ListModelsRequest())
        by_pair = {(m.provider, m.model): m for m in listed.models}
        assert by_pair[("gemini", "nano-banana-pro")].internal_id == "gemini-3-pro-image"
        assert list(by_pair[("gemini", "nano-banana-pro")].aliases) == ["gemini-3-pro-image-preview"]
        assert list(by_pair[("openai", "gpt-image")].aliases) == ["gpt-image-1", "gpt-image-1.5"]

        for provider, spec_id in [
            ("gemini", "gemini-3-pro-image-preview"),
            ("openai", "gpt-image-1"),
            ("replicate", "black-forest-labs/flux-1.1-pro"),
            ("bfl", "flux-2-max"),
        ]:
            request = gen_pb2.GenerateImageRequest(prompt="x", provider=provider, model=spec_id)
            result = await h.generation.GenerateImage(request)
            assert result.provider == provider

    assert vendors.gemini.last.match["model"] == "gemini-3-pro-image"
    assert vendors.openai.last.json["model"] == "gpt-image-2"
    assert vendors.replicate.created[-1].path == "/v1/models/black-forest-labs/flux-dev/predictions"
    assert vendors.bfl.submissions[-1].path == "/v1/flux-2-pro"


# Through Envoy ------------------------------------------------------------------------------------


async def test_rest_through_envoy_with_real_adapters(tmp_path, vendors):
    vendors.bfl.polls = 4
    settings = vendors.settings(local_fallback="never", retry_attempts=0)
    async with running_stack(tmp_path, None, **settings) as stack, stack.client() as client:
        created = await client.post("/session", json={"project": "rest", "mode": "single"})
        sid = created.json()["sessionId"]
        body = {"prompt": "A lighthouse", "provider": "gemini", "model": "nano-banana-pro"}
        vendors.gemini.fail(503, "overloaded")
        body["fallback"] = [{"provider": "replicate", "model": "flux-pro"}]
        generated = await client.post(f"/session/{sid}/generate", json=body)
        assert generated.status_code == 200, generated.text
        result = generated.json()
        assert result["fallbackUsed"] == {"provider": "replicate", "model": "flux-pro"}
        assert result["originalRequest"] == {"provider": "gemini", "model": "nano-banana-pro"}
        assert base64.b64decode(result["data"]) == vendors.replicate.image

        started = time.monotonic()
        stream_body = {"instructions": "Make it night", "provider": "bfl", "model": "flux-2-pro"}
        async with client.stream("POST", f"/session/{sid}/iterate:stream", json=stream_body) as response:
            assert response.status_code == 200
            frames = [json.loads(line[6:]) async for line in response.aiter_lines() if line.startswith("data: ")]
        assert time.monotonic() - started < 30
        measured_percents = [
            f["percent"] for f in frames if f.get("phase") == "PHASE_RUNNING" and not f.get("percentEstimated")
        ]
        assert {25, 50, 75} <= set(measured_percents), frames
        assert frames[-1]["phase"] == "PHASE_COMPLETED"
        assert base64.b64decode(vendors.bfl.last_body["input_image"]) == vendors.replicate.image

        app = {"prompt": "A cat wearing a top hat", "provider": "openai", "model": "gpt-image-1", "size": "1536x1024"}
        answer = await client.post("/api/proj-1/services/image", json=app)
        assert answer.status_code == 200, answer.text
        served = answer.json()
        assert (served["provider"], served["content_type"], served["credits_used"]) == ("openai", "image/png", 50)
        assert vendors.openai.last.json["size"] == "1536x1024"
        assert vendors.openai.last.json["model"] == "gpt-image-1.5"
        image = await client.get(urlparse(served["url"]).path)
        assert image.status_code == 200
        assert pixel_size(image.content) == (96, 64)  # the fake's final image: 1536x1024, 16 times smaller


async def test_grpc_errors_from_vendors_carry_every_attempt(server, vendors):
    vendors.gemini.fail(503)
    vendors.openai.fail(503)
    request = gen_pb2.GenerateImageRequest(
        prompt="x", provider="gemini", model="nano-banana", fallback=[ref("openai", "gpt-image")]
    )
    try:
        await server.generation.GenerateImage(request)
    except grpc.aio.AioRpcError as error:
        failed = error_details(error)
    else:
        raise AssertionError("every vendor failed, yet the call succeeded")
    assert failed.code == grpc.StatusCode.UNAVAILABLE
    assert failed.reason == "PROVIDER_UNAVAILABLE"
    assert [(a.provider, a.outcome) for a in failed.attempts] == [
        ("gemini", Outcome.ATTEMPT_OUTCOME_FAILED_RETRYABLE),
        ("openai", Outcome.ATTEMPT_OUTCOME_FAILED_RETRYABLE),
    ]


# scripts/check_providers.py -----------------------------------------------------------------------


def check_providers_script():
    """scripts/check_providers.py, imported as a module."""
    if "check_providers" not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "scripts" / "check_providers.py"
        spec = importlib.util.spec_from_file_location("check_providers", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["check_providers"] = module
        spec.loader.exec_module(module)
    return sys.modules["check_providers"]


@pytest.mark.no_server
async def test_check_providers_generates_with_every_selected_model(tmp_path, vendors, capsys):
    script = check_providers_script()
    vendors.gemini.fail(503, "overloaded")
    settings = Settings(**vendors.settings(data_dir=tmp_path / "data"))
    args = script.parse_args(["--models", "nano-banana", "replicate/flux-dev", "gpt-image-1", "flux-2-pro"])
    args.out = tmp_path / "out"

    status = await script.run(args, settings)

    assert status == 1  # Gemini failed
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["provider", "model", "internal", "id", "latency", "bytes", "outcome"]
    rows = {tuple(line.split()[:2]): line for line in lines[1:]}
    assert set(rows) == {
        ("gemini", "nano-banana"),
        ("openai", "gpt-image"),
        ("replicate", "flux-dev"),
        ("bfl", "flux-2-pro"),
    }
    assert "ProviderUnavailable" in rows[("gemini", "nano-banana")]
    assert f" {len(vendors.replicate.image)} " in rows[("replicate", "flux-dev")]
    assert "gpt-image-1.5" in rows[("openai", "gpt-image")]
    saved = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert saved == ["bfl-flux-2-pro.png", "openai-gpt-image.png", "replicate-flux-dev.png"]
    assert (tmp_path / "out" / "bfl-flux-2-pro.png").read_bytes() == vendors.bfl.image
    assert vendors.openai.last.json["quality"] == "low"
    assert vendors.replicate.last_input["megapixels"] == "0.25"  # the smallest tier


@pytest.mark.no_server
async def test_check_providers_names_the_variables_when_nothing_is_configured(tmp_path, capsys):
    script = check_providers_script()
    status = await script.run(script.parse_args([]), Settings(data_dir=tmp_path))
    assert status == 2
    message = capsys.readouterr().err
    for variable in ("GEMINI_API_KEY", "OPENAI_API_KEY", "REPLICATE_API_TOKEN", "BFL_API_KEY"):
        assert variable in message
