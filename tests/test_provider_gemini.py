"""The Gemini adapter driving the real google-genai SDK against a fake Gemini server."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import time

import pytest
from aiohttp import web
from fakes.base import png_bytes
from fakes.gemini import FakeGemini, b64bytes, image_config, inline_parts, texts
from PIL import Image

from aigen.server.config import Settings
from aigen.server.errors import (
    CapabilityUnsupported,
    ContentRefused,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnreachable,
)
from aigen.server.providers.base import ImageRequest, InputImage, Progress, ProviderRegistry
from aigen.server.providers.gemini import GeminiProvider
from aigen.server.providers.remote import environment_proxy

KEY = "test-gemini-key"


@pytest.fixture(scope="module")
async def server():
    async with FakeGemini(api_key=KEY) as running:
        yield running


@pytest.fixture
def fake(server):
    server.reset()
    return server


def make_provider(fake: FakeGemini, **settings) -> GeminiProvider:
    values = {"gemini_api_key": KEY, "gemini_base_url": fake.base_url, "generation_timeout_s": 5.0, **settings}
    return GeminiProvider.from_settings(Settings(**values))


@pytest.fixture(scope="module")
async def provider(server):
    instance = make_provider(server)
    yield instance
    await instance.aclose()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


async def generate(provider: GeminiProvider, **fields) -> tuple:
    updates: list[Progress] = []
    request = ImageRequest(**{"prompt": "a lighthouse at dusk", "model": "nano-banana", **fields})
    result = await provider.generate(request, updates.append)
    return result, updates


# Generation.


async def test_generate_sends_prompt_and_ratio_and_returns_the_image(provider, fake):
    result, updates = await generate(provider, aspect_ratio="16:9")

    assert result.mime_type == "image/png"
    assert size_of(result.data) == (64, 36)  # the fake's 1024x576, scaled down 16 times
    assert updates == []  # Gemini reports no progress; none is invented
    sent = fake.last
    assert sent.path == "/v1beta/models/gemini-2.5-flash-image:generateContent"
    assert sent.headers["x-goog-api-key"] == KEY
    assert sent.json["generationConfig"]["responseModalities"] == ["IMAGE"]
    assert image_config(sent) == {"aspectRatio": "16:9"}  # single-tier model: no imageSize
    assert [texts(content) for content in sent.json["contents"]] == [["a lighthouse at dusk"]]


async def test_pro_sends_the_size_tier(provider, fake):
    result, _ = await generate(provider, model="nano-banana-pro", image_size="4K", aspect_ratio="1:1")

    assert fake.last.match["model"] == "gemini-3-pro-image-preview"
    assert image_config(fake.last) == {"aspectRatio": "1:1", "imageSize": "4K"}
    assert size_of(result.data) == (256, 256)
    assert result.degradations == ()


async def test_unsupported_tier_is_reported_as_a_degradation(provider, fake):
    result, _ = await generate(provider, model="nano-banana", image_size="2K")
    assert result.degradations == ("image_size 2K -> 1K",)

    result, _ = await generate(provider, model="nano-banana-pro", image_size="512")
    assert image_config(fake.last)["imageSize"] == "1K"
    assert result.degradations == ("image_size 512 -> 1K",)

    result, _ = await generate(provider, model="nano-banana-2", image_size="512")
    assert image_config(fake.last)["imageSize"] == "512"
    assert result.degradations == ()


async def test_seed_and_mask(provider, fake):
    mask = InputImage(png_bytes(), "image/png")
    result, _ = await generate(provider, seed=42, mask=mask)
    assert fake.last.json["generationConfig"]["seed"] == 42
    assert result.degradations == ("mask ignored",)


async def test_profiles_are_data_and_app_api_ids_select_models(provider):
    registry = ProviderRegistry()
    registry.add(provider)
    by_name = {profile.name: profile for profile in provider.models()}

    assert set(by_name) == {"nano-banana", "nano-banana-pro", "nano-banana-2"}
    assert by_name["nano-banana"].image_sizes == ("1K",)
    assert by_name["nano-banana"].max_reference_images == 3
    assert by_name["nano-banana-pro"].image_sizes == ("1K", "2K", "4K")
    assert by_name["nano-banana-pro"].max_reference_images == 14
    assert by_name["nano-banana-2"].image_sizes == ("512", "1K", "2K", "4K")
    assert all(profile.can_edit and not profile.reports_progress for profile in by_name.values())
    for internal_id, name in [
        ("gemini-2.5-flash-image", "nano-banana"),
        ("gemini-3-pro-image-preview", "nano-banana-pro"),
        ("gemini-3.1-flash-image-preview", "nano-banana-2"),
    ]:
        assert registry.find_model("gemini", internal_id).name == name


async def test_internal_ids_come_from_settings(fake):
    provider = make_provider(fake, model_ids={"nano-banana-pro": "gemini-3-pro-image"})
    try:
        profile = next(profile for profile in provider.models() if profile.name == "nano-banana-pro")
        assert profile.internal_id == "gemini-3-pro-image"
        assert "gemini-3-pro-image-preview" in profile.names()  # the old id still selects it

        await generate(provider, model="gemini-3-pro-image-preview")
        assert fake.last.match["model"] == "gemini-3-pro-image"
    finally:
        await provider.aclose()


async def test_qualified_model_id_wins_over_the_short_name(fake):
    ids = {"nano-banana": "gemini-2.6-flash-image", "gemini/nano-banana": "gemini-2.7-flash-image"}
    provider = make_provider(fake, model_ids=ids)
    try:
        profile = next(profile for profile in provider.models() if profile.name == "nano-banana")
        assert profile.internal_id == "gemini-2.7-flash-image"
        assert profile.aliases == ("gemini-2.5-flash-image",)

        await generate(provider, model="gemini-2.5-flash-image")
        assert fake.last.match["model"] == "gemini-2.7-flash-image"
    finally:
        await provider.aclose()


# Editing and references.


async def test_edit_sends_source_then_references(provider, fake):
    source = InputImage(png_bytes(32, 32, (1, 2, 3)), "image/png")
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(jpeg, format="JPEG")
    references = (InputImage(jpeg.getvalue(), "image/jpeg"), InputImage(png_bytes(4, 4), "image/png"))

    await generate(provider, prompt="make the sky pink", source_image=source, reference_images=references)

    [content] = fake.last.json["contents"]
    assert content["role"] == "user"
    assert texts(content) == ["make the sky pink"]
    assert inline_parts(content) == [
        ("image/png", source.data),
        ("image/jpeg", references[0].data),
        ("image/png", references[1].data),
    ]


async def test_too_many_references_is_a_capability_error(provider, fake):
    references = tuple(InputImage(png_bytes(), "image/png") for _ in range(4))
    with pytest.raises(CapabilityUnsupported) as caught:
        await generate(provider, model="nano-banana", reference_images=references)
    assert caught.value.retryable is False
    assert fake.requests == []


async def test_thought_parts_are_skipped(provider, fake):
    fake.succeed(thoughts=True, text="Here is your lighthouse.")
    result, _ = await generate(provider)
    assert size_of(result.data) == (64, 64)  # the final image, not the 16x16 thought image
    state = json.loads(result.provider_state)
    assert [("text" in part, "image" in part) for part in state["parts"]] == [(True, False), (False, True)]


async def test_continuation_tokens_are_followed_and_the_parts_merged(provider, fake):
    token = base64.b64encode(b"continue-here").decode()

    async def first_hop(request, recorded):
        candidate = {
            "content": {"role": "model", "parts": [{"text": "Sketching the lighthouse."}]},
            "finishReason": "CONTINUATION",
            "continuationToken": token,
            "index": 0,
        }
        return web.json_response(fake._response([candidate], recorded))

    fake.script(first_hop, fake.image_reply(signature=b"sig-2"))
    result, _ = await generate(provider)

    assert len(fake.requests) == 2
    assert token not in json.dumps(fake.requests[0].json)
    assert token in json.dumps(fake.requests[1].json)
    assert size_of(result.data) == (64, 64)
    state = json.loads(result.provider_state)
    assert [part.get("text") for part in state["parts"]] == ["Sketching the lighthouse.", None]


async def test_multi_turn_edit_replays_the_previous_model_turn(provider, fake):
    fake.succeed(signature=b"sig-turn-1", text="A lighthouse.")
    first, _ = await generate(provider, model="nano-banana-pro", prompt="a lighthouse")
    assert len(first.provider_state) < 500  # the state keeps no image bytes

    source = InputImage(first.data, first.mime_type)
    await generate(
        provider,
        model="nano-banana-pro",
        prompt="make it red",
        source_image=source,
        provider_state=first.provider_state,
    )

    user, model, follow_up = fake.last.json["contents"]
    assert (user["role"], model["role"], follow_up["role"]) == ("user", "model", "user")
    assert texts(user) == ["a lighthouse"]
    assert texts(model) == ["A lighthouse."]
    assert inline_parts(model) == [("image/png", first.data)]
    image_part = model["parts"][-1]
    assert b64bytes(image_part["thoughtSignature"]) == b"sig-turn-1"
    assert texts(follow_up) == ["make it red"]
    assert inline_parts(follow_up) == []  # the image travels in the model turn only


@pytest.mark.parametrize(
    ("first_model", "source"),
    [("nano-banana-pro", png_bytes(5, 5)), ("nano-banana", None)],
    ids=["other-image", "other-model"],
)
async def test_state_is_ignored_when_it_does_not_apply(provider, fake, first_model, source):
    first, _ = await generate(provider, model=first_model)
    image = InputImage(source or first.data, "image/png")
    await generate(
        provider, model="nano-banana-pro", prompt="again", source_image=image, provider_state=first.provider_state
    )

    [content] = fake.last.json["contents"]
    assert inline_parts(content) == [("image/png", image.data)]


async def test_unreadable_state_falls_back_to_a_single_turn(provider, fake):
    image = InputImage(png_bytes(), "image/png")
    await generate(provider, source_image=image, provider_state=b"not json")
    [content] = fake.last.json["contents"]
    assert inline_parts(content) == [("image/png", image.data)]


# Refusals and errors.


@pytest.mark.parametrize(
    "options",
    [
        {"block_reason": "PROHIBITED_CONTENT"},
        {"finish_reason": "IMAGE_SAFETY"},
        {"finish_reason": "IMAGE_PROHIBITED_CONTENT"},
        {"finish_reason": "NO_IMAGE"},
        {"finish_reason": "STOP"},
    ],
)
async def test_safety_blocks_and_missing_images_are_refusals(provider, fake, options):
    fake.refuse(**options)
    with pytest.raises(ContentRefused) as caught:
        await generate(provider)
    assert caught.value.retryable is False
    assert next(iter(options.values())) in caught.value.message


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (400, ProviderRejected, False),
        (401, ProviderNotConfigured, True),
        (403, ProviderNotConfigured, True),
        (404, ProviderRejected, False),
        (500, ProviderUnavailable, True),
        (503, ProviderUnavailable, True),
        (504, ProviderTimeout, True),
    ],
)
async def test_http_errors_map_to_provider_errors(provider, fake, status, error, retryable):
    fake.fail(status, "boom")
    with pytest.raises(error) as caught:
        await generate(provider)
    assert type(caught.value) is error
    assert caught.value.retryable is retryable
    assert "boom" in caught.value.message


@pytest.mark.parametrize(
    ("options", "retry_after"),
    [
        ({"retry_after": "3"}, 3.0),
        ({"retry_delay": "7s"}, 7.0),
        ({"retry_delay": "1.5s", "retry_after": "2"}, 2.0),
        ({}, None),
    ],
)
async def test_rate_limit_carries_retry_after(provider, fake, options, retry_after):
    fake.fail(429, "quota", **options)
    with pytest.raises(ProviderRateLimited) as caught:
        await generate(provider)
    assert caught.value.retryable is True
    assert caught.value.retry_after == retry_after


@pytest.mark.parametrize(
    "options", [{"reason": "API_KEY_INVALID"}, {"status_name": "FAILED_PRECONDITION"}], ids=["bad-key", "region"]
)
async def test_account_problems_in_a_400_are_not_configured(provider, fake, options):
    fake.fail(400, "not for you", **options)
    with pytest.raises(ProviderNotConfigured):
        await generate(provider)


async def test_unknown_model_is_a_capability_error(provider, fake):
    with pytest.raises(CapabilityUnsupported):
        await generate(provider, model="imagen-4")
    assert fake.requests == []


async def test_rejected_key_is_not_configured(fake):
    provider = make_provider(fake, gemini_api_key="wrong-key")
    try:
        with pytest.raises(ProviderNotConfigured):
            await generate(provider)
    finally:
        await provider.aclose()


async def test_connections_are_capped(fake):
    provider = make_provider(fake, provider_max_connections=2)
    try:
        fake.slow(0.5).slow(0.5)
        calls = asyncio.gather(*(generate(provider) for _ in range(4)))
        await fake.wait_for_requests(2)
        await asyncio.sleep(0.2)
        assert len(fake.requests) == 2  # the other two wait for a connection
        await calls
    finally:
        await provider.aclose()
    assert len(fake.requests) == 4


def test_the_environment_proxy_is_read_once_for_the_api(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert environment_proxy("https://generativelanguage.googleapis.com/") == "http://proxy.internal:3128"
    assert environment_proxy("http://127.0.0.1:8080/") is None


async def test_connection_closed_without_an_answer_is_dropped_not_a_timeout(provider, fake):
    fake.hang_up()
    with pytest.raises(ProviderUnavailable, match="dropped the connection") as caught:
        await generate(provider)
    assert type(caught.value) is ProviderUnavailable


@pytest.mark.parametrize("break_it", ["malformed", "truncate"])
async def test_broken_answers_are_unavailable(provider, fake, break_it):
    getattr(fake, break_it)()
    with pytest.raises(ProviderUnavailable) as caught:
        await generate(provider)
    assert type(caught.value) is ProviderUnavailable


async def test_slow_answer_times_out(fake):
    provider = make_provider(fake, generation_timeout_s=0.3)
    fake.slow(5)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderTimeout) as caught:
            await generate(provider)
    finally:
        await provider.aclose()
    assert caught.value.retryable is True
    assert time.monotonic() - started < 2


async def test_per_model_timeout_from_settings(fake):
    provider = make_provider(fake, model_timeouts_s={"gemini/nano-banana": 0.3})
    fake.slow(5)
    try:
        with pytest.raises(ProviderTimeout):
            await generate(provider)
    finally:
        await provider.aclose()


async def test_refused_connection_is_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = GeminiProvider.from_settings(Settings(gemini_api_key=KEY, gemini_base_url=f"http://127.0.0.1:{port}"))
    try:
        started = time.monotonic()
        with pytest.raises(ProviderUnreachable, match="cannot connect"):
            await generate(provider)
        assert time.monotonic() - started < 1  # no hidden SDK retry
    finally:
        await provider.aclose()


async def test_cancellation_propagates(provider, fake):
    fake.slow(5)
    task = asyncio.ensure_future(generate(provider))
    await fake.wait_for_requests(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_not_configured_without_key():
    provider = GeminiProvider.from_settings(Settings())
    assert provider.configured is False
    assert GeminiProvider.credential_env == "GEMINI_API_KEY"
    assert len(provider.models()) == 3
    with pytest.raises(ProviderNotConfigured):
        await generate(provider)
    await provider.aclose()
