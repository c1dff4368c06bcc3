"""The BFL adapter driving real httpx against a fake BFL API on two local hosts."""

from __future__ import annotations

import asyncio
import base64
import socket

import pytest
from fakes.base import png_bytes
from fakes.bfl import FakeBfl

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
from aigen.server.providers.bfl import BflProvider

KEY = "bfl-test"
FAST = {"poll_interval_s": 0.01, "timeout_s": 2.0}


@pytest.fixture
async def fake():
    async with FakeBfl(key=KEY) as server:
        yield server


def make_provider(fake: FakeBfl, settings: dict | None = None, **options) -> BflProvider:
    values = {"bfl_api_key": KEY, "bfl_base_url": fake.base_url, **(settings or {})}
    return BflProvider.from_settings(Settings(**values), **{**FAST, **options})


@pytest.fixture
async def provider(fake):
    instance = make_provider(fake)
    yield instance
    await instance.aclose()


async def generate(provider: BflProvider, model: str = "flux-2-pro", **fields) -> tuple:
    updates: list[Progress] = []
    request = ImageRequest(prompt="a lighthouse at dusk", model=model, **fields)
    result = await provider.generate(request, updates.append)
    return result, updates


def image(seed: int = 0) -> InputImage:
    return InputImage(png_bytes(8, 8, (seed * 30 % 256, 10, 10)), "image/png")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# Profiles and configuration.


def test_registered_and_profiles():
    assert registered_provider_classes()["bfl"] is BflProvider
    profiles = {p.name: p for p in BflProvider.from_settings(Settings()).models()}
    assert list(profiles) == ["flux-2-pro", "flux-2-flex", "flux-2-max", "flux-dev"]
    assert all(profiles[name].can_edit and profiles[name].max_reference_images == 8 for name in list(profiles)[:3])
    assert profiles["flux-dev"].can_edit is False and profiles["flux-dev"].max_reference_images == 1
    assert profiles["flux-dev"].image_sizes == ("512", "1K")
    assert all(p.provider == "bfl" and p.reports_progress for p in profiles.values())


async def test_not_configured_without_a_key(fake):
    provider = BflProvider.from_settings(Settings(bfl_base_url=fake.base_url), **FAST)
    assert provider.configured is False
    with pytest.raises(ProviderNotConfigured):
        await generate(provider)
    assert fake.requests == []
    await provider.aclose()


# Generation.


@pytest.mark.parametrize("model", ["flux-2-pro", "flux-2-flex", "flux-2-max", "flux-dev"])
async def test_generate_submits_polls_another_host_and_downloads(provider, fake, model):
    result, _ = await generate(provider, model, width=1024, height=768, seed=5)

    assert result.data == fake.image and result.mime_type == "image/png"
    assert result.degradations == ()
    submission = fake.submissions[-1]
    assert submission.path == f"/v1/{model}"
    assert submission.headers["x-key"] == KEY
    assert submission.json == {
        "prompt": "a lighthouse at dusk",
        "width": 1024,
        "height": 768,
        "output_format": "png",
        "seed": 5,
    }
    assert len(fake.polls_received) == fake.polls  # on the second host, with the key
    assert all(poll.headers["x-key"] == KEY for poll in fake.polls_received)
    (download,) = fake.downloads
    assert "x-key" not in download.headers  # the signed sample URL needs no key


async def test_qualified_model_id_wins_over_the_short_name(fake):
    ids = {"flux-2-max": "flux-2-max-preview", "bfl/flux-2-max": "flux-2-pro", "flux-2-flex": "flux-2-flex-v2"}
    provider = make_provider(fake, {"model_ids": ids})
    profiles = {profile.name: profile for profile in provider.models()}
    assert (profiles["flux-2-max"].internal_id, profiles["flux-2-max"].aliases) == ("flux-2-pro", ())
    assert (profiles["flux-2-flex"].internal_id, profiles["flux-2-flex"].aliases) == ("flux-2-flex-v2", ())

    await provider.generate(ImageRequest(prompt="a lighthouse", model="flux-2-max"), lambda _: None)
    assert fake.submissions[-1].path == "/v1/flux-2-pro"
    await provider.aclose()


@pytest.mark.parametrize(
    ("model", "size", "sent"),
    [
        ("flux-dev", (1000, 700), (992, 704)),
        ("flux-dev", (2048, 2048), (1440, 1440)),
        ("flux-dev", (1564, 670), (1440, 608)),
        ("flux-2-pro", (1000, 1000), (992, 992)),
        ("flux-2-pro", (4096, 4096), (2048, 2048)),
        ("flux-2-max", (3120, 1344), (3120, 1344)),
    ],
)
async def test_sizes_are_rounded_to_the_models_rules_and_reported(provider, fake, model, size, sent):
    result, _ = await generate(provider, model, width=size[0], height=size[1])

    assert (fake.last_body["width"], fake.last_body["height"]) == sent
    expected = () if sent == size else (f"size {size[0]}x{size[1]} -> {sent[0]}x{sent[1]} on {model}",)
    assert result.degradations == expected


# Edits and references.


async def test_flux2_edit_sends_the_source_then_references(provider, fake):
    source, refs = image(1), (image(2), image(3))
    await generate(provider, "flux-2-flex", source_image=source, reference_images=refs)

    body = fake.last_body
    assert body["input_image"] == b64(source.data)
    assert [body["input_image_2"], body["input_image_3"]] == [b64(r.data) for r in refs]
    assert "input_image_4" not in body


async def test_flux2_references_without_source(provider, fake):
    refs = tuple(image(n) for n in range(8))
    await generate(provider, "flux-2-pro", reference_images=refs)
    body = fake.last_body
    assert body["input_image"] == b64(refs[0].data) and body["input_image_8"] == b64(refs[7].data)


async def test_flux2_too_many_images_in_all(provider, fake):
    with pytest.raises(CapabilityUnsupported, match="at most 8"):
        await generate(provider, "flux-2-pro", source_image=image(), reference_images=tuple(image(n) for n in range(8)))
    assert fake.requests == []


async def test_flux2_mask_is_ignored_and_reported(provider, fake):
    result, _ = await generate(provider, "flux-2-pro", source_image=image(), mask=image(9))
    assert result.degradations == ("mask ignored on flux-2-pro",)


async def test_flux_dev_cannot_edit_but_takes_an_image_prompt(provider, fake):
    with pytest.raises(CapabilityUnsupported, match="cannot edit"):
        await generate(provider, "flux-dev", source_image=image())
    assert fake.requests == []

    ref = image(4)
    await generate(provider, "flux-dev", reference_images=(ref,))
    assert fake.last_body["image_prompt"] == b64(ref.data)


# Progress and cancellation.


async def test_progress_is_measured_from_polling_before_ready(provider, fake):
    fake.polls = 5
    seen: list[tuple[float | None, int]] = []

    def on_progress(update: Progress) -> None:
        seen.append((update.percent, len(fake.downloads)))

    await provider.generate(ImageRequest(prompt="p", model="flux-2-pro"), on_progress)

    assert [percent for percent, _ in seen] == [20.0, 40.0, 60.0, 80.0]
    assert all(downloads == 0 for _, downloads in seen)  # every report came before the result


async def test_no_progress_field_means_no_invented_percent(provider, fake):
    fake.report_progress = False
    _, updates = await generate(provider)
    assert updates and all(update.percent is None and update.message == "bfl: Pending" for update in updates)


async def test_cancelling_stops_polling(provider, fake):
    fake.polls = 10_000
    polling = asyncio.Event()
    task = asyncio.create_task(provider.generate(ImageRequest(prompt="p", model="flux-2-pro"), lambda _: polling.set()))
    await asyncio.wait_for(polling.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    polls = len(fake.polls_received)
    await asyncio.sleep(0.1)
    assert len(fake.polls_received) == polls


# Outcomes and errors.


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("Content Moderated", ContentRefused),
        ("Request Moderated", ContentRefused),
        ("Error", ProviderUnavailable),
        ("Task not found", ProviderUnavailable),
    ],
)
async def test_final_statuses(provider, fake, status, error):
    fake.finish(status)
    with pytest.raises(error, match=status) as caught:
        await generate(provider)
    assert type(caught.value) is error
    assert fake.downloads == []


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (400, ProviderRejected, False),
        (422, ProviderRejected, False),
        (401, ProviderNotConfigured, True),
        (403, ProviderNotConfigured, True),
        (500, ProviderUnavailable, True),
        (503, ProviderUnavailable, True),
    ],
)
async def test_submission_errors(provider, fake, status, error, retryable):
    fake.fail(status, "something went wrong")
    with pytest.raises(error, match=f"HTTP {status}") as caught:
        await generate(provider)
    assert type(caught.value) is error and caught.value.retryable is retryable


async def test_out_of_credits_says_so(provider, fake):
    fake.fail(402, "Insufficient credits")
    with pytest.raises(ProviderNotConfigured, match="out of credits"):
        await generate(provider)


async def test_validation_error_details_are_kept(provider, fake):
    fake.fail(422, [{"loc": ["body", "width"], "msg": "width must be a multiple of 16", "type": "value_error"}])
    with pytest.raises(ProviderRejected, match="multiple of 16"):
        await generate(provider)


async def test_wrong_key_is_not_configured(fake):
    provider = make_provider(fake, {"bfl_api_key": "wrong"})
    with pytest.raises(ProviderNotConfigured, match="403"):
        await generate(provider)
    await provider.aclose()


@pytest.mark.parametrize(("header", "seconds"), [("12", 12.0), ("0.5", 0.5)])
async def test_rate_limit_carries_retry_after(provider, fake, header, seconds):
    fake.fail(429, "Too many active tasks", retry_after=header)
    with pytest.raises(ProviderRateLimited) as caught:
        await generate(provider)
    assert caught.value.retry_after == seconds and caught.value.retryable


async def test_poll_errors(provider, fake):
    fake.fail_poll(500, "oops")
    with pytest.raises(ProviderUnavailable, match="HTTP 500"):
        await generate(provider)
    fake.fail_poll(429, "slow down", retry_after="3")
    with pytest.raises(ProviderRateLimited):
        await generate(provider)


async def test_malformed_answers(provider, fake):
    fake.malformed()
    with pytest.raises(ProviderUnavailable, match="not JSON"):
        await generate(provider)
    fake.malformed_poll()
    with pytest.raises(ProviderUnavailable, match="not JSON"):
        await generate(provider)


async def test_slow_answers_time_out(fake):
    provider = make_provider(fake, timeout_s=0.3)  # the quick calls have room to spare
    fake.slow(1.0)
    with pytest.raises(ProviderTimeout, match="submitting"):
        await generate(provider)
    fake.delivery.slow(1.0)
    with pytest.raises(ProviderTimeout, match="polling"):
        await generate(provider)
    await provider.aclose()


async def test_connection_refused_is_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = BflProvider(KEY, base_url=f"http://127.0.0.1:{port}", **FAST)
    with pytest.raises(ProviderUnreachable, match="cannot connect"):
        await generate(provider)
    await provider.aclose()


# Downloads.


async def test_download_cap(fake):
    provider = make_provider(fake, {"max_download_bytes": 50})
    with pytest.raises(ProviderUnavailable, match="limit is 50"):
        await generate(provider)
    await provider.aclose()


async def test_truncated_download(provider, fake):
    fake.download = "truncated"
    with pytest.raises(ProviderUnavailable, match="while downloading"):
        await generate(provider)


async def test_expired_sample_url(provider, fake):
    fake.download = "missing"
    with pytest.raises(ProviderUnavailable, match="HTTP 403"):
        await generate(provider)


async def test_plain_http_polling_url_is_refused_against_an_https_api():
    provider = BflProvider(KEY, base_url="https://api.bfl.ai", **FAST)
    with pytest.raises(ProviderUnavailable, match="polling URL"):
        provider._check_scheme("http://api.us1.bfl.ai/v1/get_result?id=1", "polling")
    await provider.aclose()
