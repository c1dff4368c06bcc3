"""The Replicate adapter driving the real replicate SDK against a fake Replicate server."""

from __future__ import annotations

import asyncio
import base64
import io
import socket

import pytest
from fakes.base import png_bytes
from fakes.replicate import FakeReplicate
from PIL import Image

import aigen.server.providers  # noqa: F401  (registers the providers)
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
from aigen.server.providers.base import ImageRequest, InputImage, Progress, registered_provider_classes
from aigen.server.providers.replicate import ReplicateProvider

TOKEN = "r8_test"
FAST = {"poll_interval_s": 0.01, "timeout_s": 2.0}


@pytest.fixture
async def fake():
    async with FakeReplicate(token=TOKEN) as server:
        yield server


def make_provider(fake: FakeReplicate, settings: dict | None = None, **options) -> ReplicateProvider:
    values = {"replicate_api_token": TOKEN, "replicate_base_url": fake.base_url, **(settings or {})}
    return ReplicateProvider.from_settings(Settings(**values), **{**FAST, **options})


@pytest.fixture
async def provider(fake):
    instance = make_provider(fake)
    yield instance
    await instance.aclose()


async def generate(provider: ReplicateProvider, model: str = "flux-pro", **fields) -> tuple:
    updates: list[Progress] = []
    request = ImageRequest(prompt="a lighthouse at dusk", model=model, **fields)
    result = await provider.generate(request, updates.append)
    return result, updates


def decode_data_uri(uri: str) -> tuple[str, bytes]:
    header, _, payload = uri.partition(",")
    assert header.endswith(";base64")
    return header[5:].split(";")[0], base64.b64decode(payload)


def grey_pixels(data: bytes) -> set[int]:
    with Image.open(io.BytesIO(data)) as image:
        return {value for _, value in image.convert("L").getcolors()}


# Profiles and configuration.


def test_registered_and_profiles_are_honest():
    assert registered_provider_classes()["replicate"] is ReplicateProvider
    profiles = {p.name: p for p in ReplicateProvider.from_settings(Settings()).models()}
    assert list(profiles) == ["ideogram", "recraft", "flux-dev", "flux-pro"]
    assert profiles["ideogram"].internal_id == "ideogram-ai/ideogram-v3-turbo"
    assert (profiles["ideogram"].can_edit, profiles["ideogram"].supports_mask) == (True, True)
    assert profiles["recraft"].can_edit is False
    assert (profiles["flux-dev"].can_edit, profiles["flux-dev"].supports_mask) == (True, False)
    assert profiles["flux-pro"].can_edit is False and profiles["flux-pro"].max_reference_images == 1
    assert "21:9" not in profiles["recraft"].aspect_ratios and "21:9" in profiles["flux-dev"].aspect_ratios
    assert {p.credits_per_image for p in profiles.values()} == {5, 6, 8}
    assert [p.notes for p in profiles.values()] == [
        "Good for text in images",
        "High-quality illustrations",
        "Artistic",
        "Highest quality",
    ]


async def test_not_configured_without_a_token(fake):
    provider = ReplicateProvider.from_settings(Settings(replicate_base_url=fake.base_url), **FAST)
    assert provider.configured is False
    with pytest.raises(ProviderNotConfigured):
        await generate(provider)
    assert fake.requests == []
    await provider.aclose()


async def test_model_ids_come_from_settings(fake):
    provider = make_provider(fake, {"model_ids": {"replicate/flux-pro": "black-forest-labs/flux-dev"}})
    profiles = {p.name: p.internal_id for p in provider.models()}
    assert profiles["flux-pro"] == "black-forest-labs/flux-dev"
    await generate(provider, "flux-pro")
    assert fake.created[-1].path == "/v1/models/black-forest-labs/flux-dev/predictions"
    await provider.aclose()


async def test_qualified_model_id_wins_and_the_default_stays_an_alias(fake):
    ids = {"recraft": "recraft-ai/recraft-v2", "replicate/recraft": "recraft-ai/recraft-v3-svg"}
    provider = make_provider(fake, {"model_ids": ids})
    recraft = next(profile for profile in provider.models() if profile.name == "recraft")
    assert recraft.internal_id == "recraft-ai/recraft-v3-svg"
    assert recraft.aliases == ("recraft-ai/recraft-v3",)
    short_only = make_provider(fake, {"model_ids": {"flux-pro": "black-forest-labs/flux-dev"}})
    flux_pro = next(profile for profile in short_only.models() if profile.name == "flux-pro")
    assert flux_pro.aliases == ("black-forest-labs/flux-1.1-pro",)

    await generate(short_only, "black-forest-labs/flux-1.1-pro")  # the old id still selects the model
    assert fake.created[-1].path == "/v1/models/black-forest-labs/flux-dev/predictions"
    await provider.aclose()
    await short_only.aclose()


# Generation per model.


@pytest.mark.parametrize(
    ("model", "path", "expected"),
    [
        ("flux-pro", "black-forest-labs/flux-1.1-pro", {"aspect_ratio": "3:2", "output_format": "png", "seed": 7}),
        (
            "flux-dev",
            "black-forest-labs/flux-dev",
            {"aspect_ratio": "3:2", "output_format": "png", "num_outputs": 1, "megapixels": "1", "seed": 7},
        ),
        ("ideogram", "ideogram-ai/ideogram-v3-turbo", {"aspect_ratio": "3:2", "seed": 7}),
    ],
)
async def test_generate_sends_each_models_schema(provider, fake, model, path, expected):
    result, _ = await generate(provider, model, aspect_ratio="3:2", seed=7)

    assert result.data == fake.image and result.mime_type == "image/png"
    assert result.degradations == ()
    created = fake.created[-1]
    assert created.path == f"/v1/models/{path}/predictions"
    assert created.headers["authorization"] == f"Bearer {TOKEN}"
    assert created.json["input"] == {"prompt": "a lighthouse at dusk", **expected}
    assert len(fake.downloads) == 1  # the output URL (plain http here) was fetched once


async def test_recraft_has_no_seed_and_says_so(provider, fake):
    result, _ = await generate(provider, "recraft", aspect_ratio="4:5", seed=7)

    assert fake.last_input == {"prompt": "a lighthouse at dusk", "aspect_ratio": "4:5"}
    assert result.degradations == ("seed ignored on recraft",)


async def test_flux_dev_small_tier_and_list_output(provider, fake):
    result, _ = await generate(provider, "flux-dev", image_size="512")

    assert fake.last_input["megapixels"] == "0.25"
    assert isinstance(fake.predictions[next(iter(fake.predictions))].output, list)
    assert result.data == fake.image


# Aspect ratios.


@pytest.mark.parametrize(
    ("model", "requested", "sent"),
    [
        ("recraft", "21:9", "2:1"),
        ("flux-pro", "21:9", "16:9"),
        ("ideogram", "21:9", "2:1"),
        ("flux-dev", "21:9", "21:9"),
    ],
)
async def test_unsupported_ratio_maps_to_the_nearest_and_is_reported(provider, fake, model, requested, sent):
    result, _ = await generate(provider, model, aspect_ratio=requested)

    assert fake.last_input["aspect_ratio"] == sent
    expected = () if sent == requested else (f"aspect_ratio {requested} -> {sent} on {model}",)
    assert result.degradations == expected


async def test_unsupported_tier_and_explicit_size_are_reported(provider, fake):
    result, _ = await generate(provider, "flux-pro", image_size="4K", size="1600x900", aspect_ratio="16:9")

    assert fake.last_input["aspect_ratio"] == "16:9"
    assert result.degradations == ("image_size 4K -> 1K on flux-pro", "size 1600x900 -> 16:9 on flux-pro")


# Edits and references.


async def test_flux_dev_edits_by_img2img(provider, fake):
    source = png_bytes(40, 30)
    result, _ = await generate(provider, "flux-dev", aspect_ratio="4:3", source_image=InputImage(source, "image/png"))

    sent = fake.last_input
    assert decode_data_uri(sent["image"]) == ("image/png", source)
    assert "aspect_ratio" not in sent  # the output keeps the source's shape
    assert result.degradations == ()


async def test_edit_with_another_ratio_reports_the_source_shape(provider, fake):
    result, _ = await generate(
        provider, "flux-dev", aspect_ratio="9:16", source_image=InputImage(png_bytes(40, 30), "image/png")
    )

    assert result.degradations == ("aspect_ratio 9:16 -> 40x30 of the edited image on flux-dev",)


async def test_flux_dev_ignores_a_mask_and_says_so(provider, fake):
    result, _ = await generate(
        provider,
        "flux-dev",
        aspect_ratio="1:1",
        source_image=InputImage(png_bytes(16, 16), "image/png"),
        mask=InputImage(png_bytes(16, 16, (255, 255, 255)), "image/png"),
    )

    assert "mask" not in fake.last_input
    assert result.degradations == ("mask ignored on flux-dev",)


async def test_ideogram_inpaints_with_the_mask_inverted(provider, fake):
    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (0, 0, 8, 16))  # ours: left half white = editable
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    source = png_bytes(16, 16)

    result, _ = await generate(
        provider,
        "ideogram",
        source_image=InputImage(source, "image/png"),
        mask=InputImage(buffer.getvalue(), "image/png"),
    )

    sent = fake.last_input
    assert decode_data_uri(sent["image"])[1] == source
    _, sent_mask = decode_data_uri(sent["mask"])
    with Image.open(io.BytesIO(sent_mask)) as opened:
        grey = opened.convert("L")
        assert grey.getpixel((2, 8)) == 0  # Ideogram: black = inpaint
        assert grey.getpixel((12, 8)) == 255  # white = keep
    assert result.degradations == ()


async def test_ideogram_edit_without_mask_repaints_everything_and_says_so(provider, fake):
    result, _ = await generate(provider, "ideogram", source_image=InputImage(png_bytes(20, 20), "image/png"))

    _, sent_mask = decode_data_uri(fake.last_input["mask"])
    assert grey_pixels(sent_mask) == {0}
    assert result.degradations == ("no mask: the whole image is editable on ideogram",)


@pytest.mark.parametrize("model", ["recraft", "flux-pro"])
async def test_models_that_cannot_edit_refuse_before_any_call(provider, fake, model):
    with pytest.raises(CapabilityUnsupported, match="cannot edit"):
        await generate(provider, model, source_image=InputImage(png_bytes(), "image/png"))
    assert fake.requests == []


async def test_reference_images_use_each_models_field(provider, fake):
    refs = tuple(InputImage(png_bytes(8, 8, (i * 40, 0, 0)), "image/png") for i in range(3))

    await generate(provider, "flux-pro", reference_images=refs[:1])
    assert decode_data_uri(fake.last_input["image_prompt"])[1] == refs[0].data

    await generate(provider, "ideogram", reference_images=refs)
    assert [decode_data_uri(uri)[1] for uri in fake.last_input["style_reference_images"]] == [r.data for r in refs]

    with pytest.raises(CapabilityUnsupported, match="at most 1"):
        await generate(provider, "flux-pro", reference_images=refs[:2])
    with pytest.raises(CapabilityUnsupported, match="at most 0"):
        await generate(provider, "recraft", reference_images=refs[:1])


async def test_large_images_are_uploaded_through_the_files_api(fake):
    provider = make_provider(fake, inline_limit_bytes=100)
    source = png_bytes(64, 64)
    await generate(provider, "flux-dev", source_image=InputImage(source, "image/png"))

    ((file_id, part),) = fake.uploads.items()
    assert part.data == source and part.content_type == "image/png"
    assert fake.last_input["image"] == f"{fake.base_url}/v1/files/{file_id}"
    await provider.aclose()


# Progress.


async def test_progress_is_measured_from_the_logs_before_completion(provider, fake):
    fake.polls = 4
    seen: list[tuple[float | None, str]] = []

    def on_progress(update: Progress) -> None:
        prediction = next(iter(fake.predictions.values()), None)
        seen.append((update.percent, prediction.status if prediction else "creating"))

    await provider.generate(ImageRequest(prompt="p", model="flux-dev"), on_progress)

    measured = [(percent, status) for percent, status in seen if percent is not None]
    assert [percent for percent, _ in measured] == [25.0, 50.0, 75.0, 100.0]
    assert [status for _, status in measured[:3]] == ["processing"] * 3  # arrived while running
    assert seen[0] == (None, "starting")


async def test_no_tqdm_lines_means_no_invented_percent(provider, fake):
    fake.log_progress = False
    _, updates = await generate(provider, "recraft")
    assert updates and all(update.percent is None for update in updates)
    assert [update.message for update in updates] == [
        "replicate: starting",
        "replicate: processing",
        "replicate: succeeded",
    ]


# Cancellation.


async def test_cancelling_the_task_cancels_the_prediction(provider, fake):
    fake.polls = 10_000
    running = asyncio.Event()

    def on_progress(update: Progress) -> None:
        if update.percent is not None:
            running.set()

    task = asyncio.create_task(provider.generate(ImageRequest(prompt="p", model="flux-dev"), on_progress))
    await asyncio.wait_for(running.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    (prediction_id,) = fake.predictions
    assert fake.cancels == [prediction_id]
    assert fake.predictions[prediction_id].status == "canceled"


async def test_cancelling_during_creation_cancels_once_created(provider, fake):
    fake.polls = 10_000
    fake.slow(0.2)  # the creation answers late
    task = asyncio.create_task(provider.generate(ImageRequest(prompt="p", model="flux-pro"), lambda _: None))
    for _ in range(100):
        if fake.requests:
            break
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    for _ in range(100):
        if fake.cancels:
            break
        await asyncio.sleep(0.01)
    assert fake.cancels == list(fake.predictions)
    assert len(fake.reloads) == 0


async def test_engine_timeout_cancels_the_prediction(provider, fake):
    fake.polls = 10_000
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.15):
            await generate(provider, "flux-dev")
    assert fake.cancels == list(fake.predictions)


# Errors.


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (400, ProviderRejected, False),
        (422, ProviderRejected, False),
        (401, ProviderNotConfigured, True),
        (403, ProviderNotConfigured, True),
        (402, ProviderNotConfigured, True),
        (500, ProviderUnavailable, True),
        (503, ProviderUnavailable, True),
    ],
)
async def test_api_errors_map_to_provider_errors(provider, fake, status, error, retryable):
    fake.fail(status, "something went wrong")
    with pytest.raises(error) as caught:
        await generate(provider)
    assert type(caught.value) is error
    assert caught.value.retryable is retryable
    assert f"HTTP {status}" in caught.value.message or "credit" in caught.value.message


async def test_input_the_schema_refuses_is_rejected(fake):
    # A model id pointing at another model: Replicate's schema check answers 422.
    provider = make_provider(fake, {"model_ids": {"replicate/flux-dev": "recraft-ai/recraft-v3"}})
    with pytest.raises(ProviderRejected, match="Additional property"):
        await generate(provider, "flux-dev")
    await provider.aclose()


async def test_wrong_token_is_not_configured(fake):
    provider = make_provider(fake, {"replicate_api_token": "r8_wrong"})
    with pytest.raises(ProviderNotConfigured, match="401"):
        await generate(provider)
    await provider.aclose()


async def test_rate_limit_carries_retry_after_from_the_header(provider, fake):
    fake.fail(429, "Request was throttled.", retry_after="7")
    with pytest.raises(ProviderRateLimited) as caught:
        await generate(provider)
    assert caught.value.retry_after == 7.0 and caught.value.retryable


async def test_rate_limit_retry_after_from_the_detail(provider, fake):
    fake.fail(429, "Request was throttled. Expected available in 3 seconds.")
    with pytest.raises(ProviderRateLimited) as caught:
        await generate(provider)
    assert caught.value.retry_after == 3.0


async def test_poll_errors_are_not_retried_by_the_sdk(provider, fake):
    fake.script(fake.default_reply, fake.error_reply(503, "overloaded"))
    with pytest.raises(ProviderUnavailable, match="503"):
        await generate(provider)
    assert len(fake.reloads) == 1  # no hidden retry of the GET


async def test_malformed_json_is_unavailable(provider, fake):
    fake.malformed()
    with pytest.raises(ProviderUnavailable, match="malformed"):
        await generate(provider)


async def test_slow_answer_is_a_timeout(fake):
    provider = make_provider(fake, timeout_s=0.1)
    fake.slow(1.0)
    with pytest.raises(ProviderTimeout):
        await generate(provider)
    await provider.aclose()


async def test_connection_refused_is_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = ReplicateProvider(TOKEN, base_url=f"http://127.0.0.1:{port}", **FAST)
    with pytest.raises(ProviderUnreachable, match="cannot connect"):
        await generate(provider)
    await provider.aclose()


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("NSFW content detected. Try running it again, or try a different prompt.", ContentRefused),
        (
            "The input or output was flagged as sensitive. Please try again with different inputs. (E005)",
            ContentRefused,
        ),
        ("CUDA out of memory", ProviderUnavailable),
    ],
)
async def test_failed_predictions(provider, fake, error, expected):
    fake.finish("failed", error)
    with pytest.raises(expected) as caught:
        await generate(provider)
    assert type(caught.value) is expected
    assert error[:20] in caught.value.message


async def test_canceled_elsewhere_is_unavailable(provider, fake):
    fake.finish("canceled")
    with pytest.raises(ProviderUnavailable, match="canceled"):
        await generate(provider)


# Outputs.


async def test_data_uri_output(provider, fake):
    fake.output_style = "data"
    result, _ = await generate(provider)
    assert result.data == fake.image and result.mime_type == "image/png"
    assert fake.downloads == []


async def test_download_cap(fake):
    provider = make_provider(fake, {"max_download_bytes": 50})
    with pytest.raises(ProviderUnavailable, match="limit is 50"):
        await generate(provider)
    fake.output_style = "data"
    with pytest.raises(ProviderUnavailable, match="exceeds 50 bytes"):
        await generate(provider)
    await provider.aclose()


async def test_download_cap_without_content_length(fake):
    provider = make_provider(fake, {"max_download_bytes": 50})
    fake.download = "chunked"  # no Content-Length: the cap applies while reading
    with pytest.raises(ProviderUnavailable, match="exceeds 50 bytes"):
        await generate(provider)
    await provider.aclose()


async def test_truncated_download_is_unavailable(provider, fake):
    fake.download = "truncated"
    with pytest.raises(ProviderUnavailable, match="while downloading"):
        await generate(provider)


async def test_missing_output_is_unavailable(provider, fake):
    fake.download = "missing"
    with pytest.raises(ProviderUnavailable, match="HTTP 404"):
        await generate(provider)


async def test_plain_http_outputs_are_refused_against_an_https_api():
    provider = ReplicateProvider(TOKEN, base_url="https://api.replicate.com", **FAST)
    with pytest.raises(ProviderUnavailable, match="scheme"):
        await provider._download("http://127.0.0.1:1/out.png")
    await provider.aclose()
