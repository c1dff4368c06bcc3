"""The OpenAI adapter driving the real openai SDK against a fake OpenAI Images server."""

from __future__ import annotations

import asyncio
import io
import socket
import time

import pytest
from fakes.base import png_bytes
from fakes.openai import FINAL_COLOR, PARTIAL_COLORS, FakeOpenAI, Wire, params
from openai._streaming import SSEDecoder
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
from aigen.server.providers.openai_images import OpenAIProvider, SSEReader

KEY = "test-openai-key"


@pytest.fixture(scope="module")
async def server():
    async with FakeOpenAI() as running:
        yield running


@pytest.fixture
def fake(server):
    server.reset()
    return server


def make_provider(fake: FakeOpenAI, **settings) -> OpenAIProvider:
    values = {"openai_api_key": KEY, "openai_base_url": fake.base_url, "generation_timeout_s": 5.0, **settings}
    return OpenAIProvider.from_settings(Settings(**values))


@pytest.fixture(scope="module")
async def provider(server):
    instance = make_provider(server)
    yield instance
    await instance.aclose()


def pixel(data: bytes) -> tuple[int, ...]:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").getpixel((0, 0))


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


async def generate(provider: OpenAIProvider, **fields) -> tuple:
    updates: list[Progress] = []
    request = ImageRequest(**{"prompt": "a red bicycle", "model": "gpt-image", **fields})
    result = await provider.generate(request, updates.append)
    return result, updates


# Generation and streaming.


async def test_without_a_progress_listener_the_answer_is_plain_json(provider, fake):
    updates: list[Progress] = []
    request = ImageRequest(prompt="a red bicycle", model="gpt-image", previews=False)
    result = await provider.generate(request, updates.append)
    assert updates == []
    assert pixel(result.data) == FINAL_COLOR
    assert result.mime_type == "image/png"
    sent = fake.last
    assert sent.path == "/v1/images/generations"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json == {"model": "gpt-image-1.5", "prompt": "a red bicycle", "size": "1024x1024", "quality": "auto"}


@pytest.mark.parametrize("previews", [False, True], ids=["plain", "streamed"])
async def test_the_raw_calls_keep_the_model_timeout(fake, previews):
    provider = make_provider(fake, model_timeouts_s={"openai/gpt-image": 0.3})
    fake.slow(5)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderTimeout):
            await provider.generate(ImageRequest(prompt="x", model="gpt-image", previews=previews), [].append)
    finally:
        await provider.aclose()
    assert time.monotonic() - started < 3


async def test_plain_edit_without_a_progress_listener(provider, fake):
    source = InputImage(png_bytes(64, 64), "image/png")
    request = ImageRequest(prompt="make it blue", model="gpt-image", source_image=source, previews=False)
    result, updates = await generate_request(provider, request)
    assert updates == [] and pixel(result.data) == FINAL_COLOR
    fields = params(fake.last)
    assert fake.last.path == "/v1/images/edits" and "stream" not in fields


async def generate_request(provider: OpenAIProvider, request: ImageRequest) -> tuple:
    updates: list[Progress] = []
    return await provider.generate(request, updates.append), updates


async def test_generate_streams_partial_images_as_previews(provider, fake):
    seen_before_completion: list[int] = []
    updates: list[Progress] = []

    def on_progress(update: Progress) -> None:
        updates.append(update)
        seen_before_completion.append(len(fake.requests))

    request = ImageRequest(prompt="a red bicycle", model="gpt-image", quality="high")
    result = await provider.generate(request, on_progress)

    assert [pixel(update.preview.data) for update in updates] == [PARTIAL_COLORS[0], PARTIAL_COLORS[1]]
    assert all(update.preview.mime_type == "image/png" and update.percent is None for update in updates)
    assert [update.message for update in updates] == ["partial image 1 of 2", "partial image 2 of 2"]
    assert pixel(result.data) == FINAL_COLOR
    assert result.mime_type == "image/png"
    assert result.degradations == ()
    sent = fake.last
    assert sent.path == "/v1/images/generations"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json == {
        "model": "gpt-image-1.5",
        "prompt": "a red bicycle",
        "size": "1024x1024",
        "quality": "high",
        "stream": True,
        "partial_images": 2,
    }


async def test_revised_prompt_is_kept(provider, fake):
    fake.succeed(revised_prompt="a red bicycle leaning on a wall")
    result, _ = await generate(provider)
    assert result.revised_prompt == "a red bicycle leaning on a wall"


async def test_output_format_sets_the_mime_type(provider, fake):
    fake.succeed(output_format="webp", partials=1)
    result, updates = await generate(provider)
    assert result.mime_type == "image/webp"
    assert updates[0].preview.mime_type == "image/webp"


@pytest.mark.parametrize(
    ("fields", "size", "degradations"),
    [
        ({"size": "1024x1024"}, "1024x1024", ()),
        ({"size": "1536x1024"}, "1536x1024", ()),
        ({"size": "1920x1080"}, "1536x1024", ("size 1920x1080 -> 1536x1024",)),
        ({"size": "800x1400"}, "1024x1536", ("size 800x1400 -> 1024x1536",)),
        ({"aspect_ratio": "1:1"}, "1024x1024", ()),
        ({"aspect_ratio": "2:3"}, "1024x1536", ()),
        ({"aspect_ratio": "16:9"}, "1536x1024", ("aspect_ratio 16:9 -> 3:2",)),
        ({"aspect_ratio": "9:16"}, "1024x1536", ("aspect_ratio 9:16 -> 2:3",)),
        ({"aspect_ratio": "5:4"}, "1536x1024", ("aspect_ratio 5:4 -> 3:2",)),  # nearer in log space
        ({"aspect_ratio": "3:2", "image_size": "4K"}, "1536x1024", ("image_size 4K -> 1K",)),
    ],
)
async def test_sizes_map_to_the_three_outputs(provider, fake, fields, size, degradations):
    result, _ = await generate(provider, **fields)
    assert fake.last.json["size"] == size
    assert result.degradations == degradations
    width, height = (int(side) for side in size.split("x"))
    assert size_of(result.data) == (width // 16, height // 16)


@pytest.mark.parametrize(
    ("quality", "sent", "degradations"), [("low", "low", ()), ("hd", "auto", ("quality hd -> auto",))]
)
async def test_quality(provider, fake, quality, sent, degradations):
    result, _ = await generate(provider, quality=quality)
    assert fake.last.json["quality"] == sent
    assert result.degradations == degradations


async def test_model_names_and_configured_id(fake):
    default = make_provider(fake)
    custom = make_provider(fake, model_ids={"gpt-image": "gpt-image-2"})
    try:
        registry = ProviderRegistry()
        registry.add(default)
        profile = registry.find_model("openai", "gpt-image-1")  # the APP-API name
        assert profile.name == "gpt-image"
        assert profile.internal_id == "gpt-image-1.5"
        assert profile.credits_per_image == 50
        assert profile.supports_mask and profile.can_edit and profile.streams_previews

        await generate(custom, model="gpt-image-1")
        assert fake.last.json["model"] == "gpt-image-2"
        assert "gpt-image-1.5" in custom.models()[0].names()
    finally:
        await default.aclose()
        await custom.aclose()


async def test_qualified_model_id_wins_over_the_short_name(fake):
    provider = make_provider(fake, model_ids={"gpt-image": "gpt-image-2", "openai/gpt-image": "gpt-image-3"})
    try:
        [profile] = provider.models()
        assert profile.internal_id == "gpt-image-3"
        assert profile.aliases == ("gpt-image-1", "gpt-image-1.5")

        await generate(provider, model="gpt-image-1.5")
        assert fake.last.json["model"] == "gpt-image-3"
    finally:
        await provider.aclose()


async def test_connections_are_capped_and_reused(fake):
    provider = make_provider(fake, provider_max_connections=2)
    try:
        fake.slow(0.3).slow(0.3)
        started = time.perf_counter()
        await asyncio.gather(*(generate(provider) for _ in range(4)))
        waited = time.perf_counter() - started
    finally:
        await provider.aclose()
    assert len(fake.requests) == 4
    assert len(fake.client_ports()) == 2  # two connections, each reused by a queued call
    assert waited >= 0.3  # the last two calls waited for a connection to come free


async def test_unknown_model_and_too_many_references(provider, fake):
    with pytest.raises(CapabilityUnsupported):
        await generate(provider, model="dall-e-3")
    references = tuple(InputImage(png_bytes(), "image/png") for _ in range(16))
    with pytest.raises(CapabilityUnsupported):
        await generate(provider, reference_images=references)
    assert fake.requests == []


# Editing.


async def test_edit_sends_source_references_and_mask_as_multipart(provider, fake):
    source = InputImage(png_bytes(64, 48, (1, 2, 3)), "image/png")
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(jpeg, format="JPEG")
    reference = InputImage(jpeg.getvalue(), "image/jpeg")
    mask_image = Image.new("L", (32, 24), 0)
    mask_image.paste(255, (0, 0, 16, 24))  # left half editable
    buffer = io.BytesIO()
    mask_image.save(buffer, format="PNG")

    result, updates = await generate(
        provider,
        prompt="paint the left half blue",
        size="1536x1024",
        source_image=source,
        reference_images=(reference,),
        mask=InputImage(buffer.getvalue(), "image/png"),
    )

    sent = fake.last
    assert sent.path == "/v1/images/edits"
    assert sent.headers["content-type"].startswith("multipart/form-data")
    fields = params(sent)
    assert fields["prompt"] == "paint the left half blue"
    assert (fields["model"], fields["size"], fields["stream"], fields["partial_images"]) == (
        "gpt-image-1.5",
        "1536x1024",
        "true",
        "2",
    )
    images = sent.files("image[]")
    assert [(part.content_type, part.data) for part in images] == [
        ("image/png", source.data),
        ("image/jpeg", reference.data),
    ]
    [mask] = sent.files("mask")
    with Image.open(io.BytesIO(mask.data)) as opened:
        assert opened.mode == "RGBA"
        assert opened.size == (64, 48)  # resized to the image to edit
        assert opened.getpixel((4, 4))[3] == 0  # white = editable = transparent
        assert opened.getpixel((60, 4))[3] == 255
    assert len(updates) == 2
    assert pixel(result.data) == FINAL_COLOR


async def test_gif_inputs_are_uploaded_as_png(provider, fake):
    gif = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 255, 0)).save(gif, format="GIF")
    await generate(provider, reference_images=(InputImage(gif.getvalue(), "image/gif"),))
    [part] = fake.last.files("image[]")
    assert part.content_type == "image/png"
    assert part.filename == "image-0.png"
    assert pixel(part.data) == (0, 255, 0)


async def test_mask_without_an_image_is_ignored(provider, fake):
    result, _ = await generate(provider, mask=InputImage(png_bytes(), "image/png"))
    assert fake.last.path == "/v1/images/generations"
    assert result.degradations == ("mask ignored (no image to edit)",)


# Refusals and errors.


@pytest.mark.parametrize(
    ("status", "code", "error", "retryable"),
    [
        (400, None, ProviderRejected, False),
        (400, "moderation_blocked", ContentRefused, False),
        (400, "content_policy_violation", ContentRefused, False),
        (401, "invalid_api_key", ProviderNotConfigured, True),
        (403, None, ProviderNotConfigured, True),
        (404, "model_not_found", ProviderRejected, False),
        (429, "insufficient_quota", ProviderNotConfigured, True),
        (500, None, ProviderUnavailable, True),
        (503, None, ProviderUnavailable, True),
    ],
)
async def test_http_errors_map_to_provider_errors(provider, fake, status, code, error, retryable):
    fake.fail(status, "boom", code=code)
    with pytest.raises(error) as caught:
        await generate(provider)
    assert type(caught.value) is error
    assert caught.value.retryable is retryable
    assert "boom" in caught.value.message


@pytest.mark.parametrize(("retry_after", "expected"), [("3", 3.0), ("0.5", 0.5), (None, None)])
async def test_rate_limit_carries_retry_after(provider, fake, retry_after, expected):
    fake.fail(429, "slow down", code="rate_limit_exceeded", retry_after=retry_after)
    with pytest.raises(ProviderRateLimited) as caught:
        await generate(provider)
    assert caught.value.retryable is True
    assert caught.value.retry_after == expected


async def test_refusal_in_the_middle_of_the_stream(provider, fake):
    fake.fail_midstream(code="moderation_blocked", partials=1)
    updates: list[Progress] = []
    with pytest.raises(ContentRefused):
        await provider.generate(ImageRequest(prompt="x", model="gpt-image"), updates.append)
    assert len(updates) == 1  # the preview still arrived before the refusal


async def test_other_errors_in_the_stream_are_unavailable(provider, fake):
    fake.fail_midstream(code="server_error", message="the image model crashed", partials=0)
    with pytest.raises(ProviderUnavailable):
        await generate(provider)


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


async def test_stream_without_a_completed_event_is_unavailable(provider, fake):
    fake.succeed(complete=False)
    with pytest.raises(ProviderUnavailable, match="without an image"):
        await generate(provider)


@pytest.mark.parametrize(
    "wire",
    [Wire(chunk_size=7), Wire(chunk_size=4096, line_end="\r\n"), Wire(chunk_size=1, line_end="\r"), Wire(done=True)],
    ids=["small-chunks", "crlf", "cr-bytewise", "done"],
)
async def test_streams_survive_any_chunking_and_line_ends(provider, fake, wire):
    fake.succeed(revised_prompt="a red bicycle, at dusk", partials=1 if wire.chunk_size == 1 else 2, wire=wire)
    result, updates = await generate(provider)
    expected = PARTIAL_COLORS[:1] if wire.chunk_size == 1 else PARTIAL_COLORS[:2]
    assert [pixel(update.preview.data) for update in updates] == list(expected)
    assert pixel(result.data) == FINAL_COLOR
    assert result.revised_prompt == "a red bicycle, at dusk"


async def test_error_event_without_a_message(provider, fake):
    async def handler(request, recorded):
        return await Wire().send(request, [b'event: error\ndata: {"error": {"code": "server_error"}}\n\n'], fake)

    fake.script(handler)
    with pytest.raises(ProviderUnavailable, match="An error occurred during streaming"):
        await generate(provider)


async def test_stream_that_stalls_midway_times_out(fake):
    provider = make_provider(fake, generation_timeout_s=0.3)
    fake.succeed(wire=Wire(stall_s=5))
    updates: list[Progress] = []
    try:
        with pytest.raises(ProviderTimeout):
            await provider.generate(ImageRequest(prompt="x", model="gpt-image"), updates.append)
    finally:
        await provider.aclose()
    assert len(updates) == 1


def split_everywhere(stream: bytes) -> list[list[bytes]]:
    """What an SSEReader yields for `stream` cut in two at every position."""
    seen = []
    for cut in range(len(stream) + 1):
        reader = SSEReader()
        seen.append(reader.feed(stream[:cut]) + reader.feed(stream[cut:]))
    return seen


def sdk_events(stream: bytes) -> list[bytes]:
    """The data of the events the SDK's own decoder finds in `stream`."""
    return [event.data.encode() for event in SSEDecoder().iter_bytes(iter([stream]))]


STREAMS = (
    'event: image_generation.partial_image\ndata: {"a":\ndata:1}\n\n',
    ": a comment\n\n\n\nevent: only a name\n\nevent:\n\nretry: soon\n\nretry: 5\n\ndata\n\n",
    " data: not a field\n\nother: 1\n\ndata:no space\ndata:  two spaces\n\ndata: last without its blank line",
    ": nothing\n\nid: 7\n\n: still an event\n\nid:\n\n: nothing again\n\nid: a\0b\n\n",
)


@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("stream", STREAMS)
def test_sse_reader_finds_what_the_sdk_finds_wherever_chunks_end(stream, line_end):
    wire = stream.replace("\n", line_end).encode()
    expected = sdk_events(wire)
    assert expected  # every stream has events
    assert all(found == expected for found in split_everywhere(wire))


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


async def test_refused_connection_is_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(openai_api_key=KEY, openai_base_url=f"http://127.0.0.1:{port}/v1")
    provider = OpenAIProvider.from_settings(settings)
    try:
        with pytest.raises(ProviderUnreachable, match="cannot connect"):
            await generate(provider)
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
    provider = OpenAIProvider.from_settings(Settings())
    assert provider.configured is False
    assert OpenAIProvider.credential_env == "OPENAI_API_KEY"
    with pytest.raises(ProviderNotConfigured):
        await generate(provider)
    await provider.aclose()
