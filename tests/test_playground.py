"""The web playground at `/`, driven in Debian's Chromium against the real service.

The gRPC server and a real Envoy run as in `make serve`; Chromium (/usr/bin/chromium, or
AIGEN_CHROMIUM) is driven through Playwright. Providers are registered like real ones:
"slow" reports measured progress for 3 s, "guess" works 2 s without reporting (estimated
progress), "hang" never answers (to cancel), "down" always fails (to fall back), "offline"
has no key, and the built-in local renderer serves quickly and draws subjects to separate.

A screenshot of the main view goes to test-artifacts/playground.png, and to
docs/playground.png as well when AIGEN_UPDATE_SCREENSHOT=1.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from envoy_harness import Stack, running_stack
from playwright.async_api import Browser, Page, async_playwright, expect
from providers import Hang, ScriptedProvider, SlowProvider, png_bytes

from aigen.server.errors import ProviderUnavailable
from aigen.server.providers.base import ProviderRegistry
from aigen.server.providers.local import LocalProvider

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("AIGEN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1366, "height": 768}  # a laptop screen
SCREENSHOT = ROOT / "test-artifacts" / "playground.png"
DOCS_SCREENSHOT = ROOT / "docs" / "playground.png"
SETTINGS = {
    "default_provider": "local",
    "default_model": "local",
    "fallback_chain": [{"provider": "local", "model": "local"}],
    "retry_base_delay_s": 0.01,
    "retry_max_delay_s": 0.02,
    "cooldown_failures": 10_000,
}

SLOW = SlowProvider("slow", 3.0, report_every=0.25, measured=True)
GUESS = SlowProvider("guess", 2.5)
HANG = ScriptedProvider("hang", script=[Hang()])
DOWN = ScriptedProvider("down", script=[ProviderUnavailable("down for maintenance")])
OFFLINE = ScriptedProvider("offline", is_configured=False)


def registry() -> ProviderRegistry:
    providers = ProviderRegistry()
    for provider in (SLOW, GUESS, HANG, DOWN, OFFLINE, LocalProvider()):
        providers.add(provider)
    return providers


# Fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path_factory.mktemp("playground"), registry(), **SETTINGS) as running:
        yield running


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(stack: Stack, browser: Browser, tmp_path: Path) -> AsyncIterator[Page]:
    """The playground, loaded and ready; fails the test on any script error or failed asset."""
    context = await browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    tab = await context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    tab.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
    await tab.goto(f"{stack.base_url}/")
    await tab.wait_for_selector("body[data-ready]", state="attached")
    await tab.wait_for_selector("#model option[value='local/local']", state="attached")
    yield tab
    await context.close()
    # Error answers the page shows to the user are logged by the browser too; nothing else may be.
    assert [p for p in problems if "the server responded with a status of 4" not in p] == []


def save_artifact(name: str, png: bytes) -> None:
    SCREENSHOT.parent.mkdir(exist_ok=True)
    (SCREENSHOT.parent / name).write_bytes(png)


def save_screenshot(png: bytes) -> None:
    targets = [SCREENSHOT, DOCS_SCREENSHOT] if os.environ.get("AIGEN_UPDATE_SCREENSHOT") == "1" else [SCREENSHOT]
    for target in targets:
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(png)


async def http(stack: Stack, path: str) -> httpx.Response:
    async with stack.client() as client:
        return await client.get(path)


async def generate(page: Page, prompt: str, model: str = "local/local") -> None:
    await page.select_option("#model", model)
    await page.fill("#prompt", prompt)
    await page.click("#generate")


async def wait_done(page: Page, within_ms: float = 15_000) -> None:
    await expect(page.locator("#progress")).to_have_attribute("data-state", "completed", timeout=within_ms)
    await expect(page.locator("#generate")).to_be_enabled()


# Serving ----------------------------------------------------------------------------------
async def test_page_and_assets_come_from_the_same_port(stack: Stack) -> None:
    page = await http(stack, "/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/ui/js/main.js">' in page.text
    for path, content_type in (
        ("/ui/js/main.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ):
        asset = await http(stack, path)
        assert (asset.status_code, asset.headers["content-type"]) == (200, content_type), path
    missing = await http(stack, "/ui/js/nothing.js")
    assert missing.status_code == 404
    assert missing.json()["code"] == 5


# Generate, progress, result ---------------------------------------------------------------
async def test_generate_streams_progress_then_shows_the_image(stack: Stack, page: Page) -> None:
    bodies: list[str] = []
    page.on("request", lambda request: request.url.endswith(":stream") and bodies.append(request.post_data or ""))
    await generate(page, "Blue planet with rings", "slow/slow-1")

    samples: list[float] = []  # bar percentages seen while no image is shown
    attempts: set[str] = set()
    deadline = time.monotonic() + 15
    while await page.locator("#download").count() == 0:
        assert time.monotonic() < deadline, "no result within 15 s"
        samples.append(float(await page.get_attribute("#bar", "data-percent") or 0))
        attempts.add(await page.inner_text("#attempt"))
        await asyncio.sleep(0.1)
    moving = [p for p in samples if 0 < p < 100]
    assert len(set(moving)) >= 3, samples
    assert moving == sorted(moving), samples
    assert "Trying slow / slow-1 (attempt 1)" in attempts

    await wait_done(page)
    await expect(page.locator("#attempt")).to_have_text("Served by slow / slow-1")
    await expect(page.locator("#served")).to_have_text("slow / slow-1")
    await expect(page.locator("#fallback-used")).to_have_text("no")
    image = page.locator("#result-image")
    await expect(image).to_be_visible()
    assert await image.evaluate("img => img.complete && img.naturalWidth") == 1024
    href = await page.get_attribute("#download", "href")
    assert href and href.startswith("/images/img_")
    downloaded = await http(stack, href)
    assert downloaded.content.startswith(b"\x89PNG")
    assert await page.locator("a.url").inner_text() == await image.get_attribute("src")
    assert '"omitImageData":true' in bodies[0]


async def test_estimated_progress_is_marked_with_an_eta(page: Page) -> None:
    await generate(page, "A lighthouse at dusk", "guess/guess-1")
    await expect(page.locator("#bar.estimated")).to_have_count(1)
    await expect(page.locator("#estimated")).to_be_visible()
    await expect(page.locator("#eta")).to_contain_text("left")
    await wait_done(page)
    await expect(page.locator("#estimated")).to_be_hidden()


async def test_cancel_aborts_the_stream_and_the_provider_sees_it(page: Page) -> None:
    called, cancelled = len(HANG.calls), len(HANG.cancelled)
    await generate(page, "Never finishes", "hang/hang-1")
    await HANG.wait_called(called + 1)
    await expect(page.locator("#cancel")).to_be_enabled()
    await page.click("#cancel")
    await HANG.wait_cancelled()
    assert len(HANG.cancelled) == cancelled + 1
    await expect(page.locator("#progress")).to_have_attribute("data-state", "cancelled")
    await expect(page.locator("#phase")).to_have_text("Generate: cancelled")
    await expect(page.locator("#generate")).to_be_enabled()
    await expect(page.locator("#cancel")).to_be_disabled()
    await expect(page.locator("#action-error")).to_be_empty()


async def test_fallback_is_shown_as_it_happens_and_in_the_result(page: Page) -> None:
    await generate(page, "Blue planet with rings", "down/down-1")
    await wait_done(page)
    await expect(page.locator("#fallbacks li")).to_contain_text(["local/local"])
    await expect(page.locator("#fallback-used")).to_have_text("yes: local / local served instead of down / down-1")
    await expect(page.locator("#result-meta .attempts")).to_contain_text("down for maintenance")


# History ----------------------------------------------------------------------------------
async def test_iterate_adds_a_thumbnail_and_turns_show_their_details(page: Page) -> None:
    await generate(page, "Blue planet with rings")
    await wait_done(page)
    thumbnails = page.locator("#history li.turn img")
    await expect(thumbnails).to_have_count(1)
    await expect(page.locator("#iterate")).to_be_enabled()
    await page.fill("#prompt", "Add a small moon")
    await page.click("#iterate")
    await wait_done(page)
    await expect(thumbnails).to_have_count(2)
    await expect(page.locator("#result-meta h2")).to_have_text("Iterated")

    await page.locator("#history li.turn button").first.click()
    await expect(page.locator("#result-meta h2")).to_have_text("Turn 1: generate")
    await expect(page.locator("#result-meta")).to_contain_text("Blue planet with rings")
    await expect(page.locator("#result-meta")).to_contain_text("local / local")
    first_image = await page.locator("#history li.turn img").first.get_attribute("src")
    await expect(page.locator("#result-image")).to_have_attribute("src", first_image or "")

    png = await page.screenshot(full_page=True)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    await asyncio.to_thread(save_screenshot, png)


async def test_an_existing_session_can_be_picked(stack: Stack, page: Page) -> None:
    async with stack.client() as client:
        created = (await client.post("/session", json={"project": "picked", "mode": "single"})).json()
        done = await client.post(f"/session/{created['sessionId']}/generate", json={"prompt": "Red kite"})
        assert done.status_code == 200, done.text
    await page.click("#sessions-refresh")
    await expect(page.locator(f"#session-pick option[value='{created['sessionId']}']")).to_have_count(1)
    await page.select_option("#session-pick", created["sessionId"])
    await expect(page.locator("#session-banner")).to_contain_text(created["sessionId"])
    await expect(page.locator("#history li.turn img")).to_have_count(1)
    await expect(page.locator("#result-image")).to_be_visible()
    await expect(page.locator("#iterate")).to_be_enabled()


# Catalogue --------------------------------------------------------------------------------
async def test_unconfigured_providers_are_shown_as_such(page: Page) -> None:
    await expect(page.locator("#model optgroup[label='offline (not configured)']")).to_have_count(1)
    await expect(page.locator("#model option[value='offline/offline-1']")).to_contain_text("not configured")
    await page.select_option("#model", "offline/offline-1")
    await expect(page.locator("#model-note")).to_contain_text("no key configured")
    await page.select_option("#model", "local/local")
    await expect(page.locator("#model-note")).to_contain_text("not an AI model")


# Layers -----------------------------------------------------------------------------------
async def test_layers_separate_lock_hide_and_export(stack: Stack, page: Page) -> None:
    await page.select_option("#mode", "layered")
    await page.click("#create-session")
    await expect(page.locator("#layers-panel")).to_be_visible()
    await generate(page, "Blue planet with rings")
    await wait_done(page)
    await page.click("#separate")
    rows = page.locator("#layer-list li")
    await expect(rows.nth(1)).to_be_visible()
    count = await rows.count()
    await expect(page.locator("#composite img")).to_have_count(count)

    top = rows.first
    layer_id = await top.get_attribute("data-layer")
    lock = top.locator("button.lock")
    await expect(lock).to_have_attribute("aria-pressed", "false")
    await lock.click()
    await expect(page.locator(f"#layer-list li[data-layer='{layer_id}'] button.lock")).to_have_attribute(
        "aria-pressed", "true"
    )
    session_id = (await page.input_value("#session-pick")).strip()
    listed = (await http(stack, f"/session/{session_id}/layers")).json()["layers"]
    assert {layer["layerId"]: layer.get("locked", False) for layer in listed}[layer_id] is True

    composite_layer = page.locator(f"#composite img[data-layer='{layer_id}']")
    await expect(composite_layer).to_be_visible()
    await page.locator(f"#layer-list li[data-layer='{layer_id}'] input[type=checkbox]").uncheck()
    await expect(composite_layer).to_be_hidden()

    async with page.expect_download() as download_info:
        await page.click("#export")
    download = await download_info.value
    assert download.suggested_filename == f"{session_id}-layers.zip"
    archive = await asyncio.to_thread(Path(await download.path()).read_bytes)
    assert archive.startswith(b"PK")

    await page.fill("#prompt", "Make the sky orange")
    await page.click("#iterate")
    await wait_done(page)
    relisted = page.locator(f"#layer-list li[data-layer='{layer_id}'] button.lock")
    await expect(relisted).to_have_attribute("aria-pressed", "true")
    png = await page.screenshot(full_page=True)
    await asyncio.to_thread(save_artifact, "playground-layers.png", png)


# Errors -----------------------------------------------------------------------------------
async def test_invalid_prompt_is_explained_next_to_the_prompt(page: Page) -> None:
    await generate(page, "x" * 4001)
    message = page.locator('[data-error-for~="prompt"]')
    await expect(message).to_contain_text("at most 4000")
    await expect(page.locator("#prompt")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#generate")).to_be_enabled()
    await page.fill("#prompt", "Blue planet with rings")
    await page.click("#generate")
    await wait_done(page)
    await expect(message).to_be_empty()


async def test_undecodable_reference_is_explained_next_to_the_references(page: Page) -> None:
    good = {"name": "good.png", "mimeType": "image/png", "buffer": png_bytes(32, 32)}
    broken = {"name": "broken.png", "mimeType": "image/png", "buffer": b"not an image at all"}
    await page.set_input_files("#references", [good, broken])
    await expect(page.locator("#reference-list img")).to_have_count(2)
    await expect(page.locator("#reference-count")).to_have_text("2 / 14")
    await generate(page, "Blue planet with rings")
    message = page.locator('[data-error-for~="referenceImages"]')
    await expect(message).to_contain_text("not a decodable image")
    await page.get_by_role("button", name="Remove broken.png").click()
    await expect(message).to_be_empty()
    await page.click("#generate")
    await wait_done(page)


async def test_more_than_fourteen_references_are_refused_before_sending(page: Page) -> None:
    streams: list[str] = []
    page.on("request", lambda request: request.url.endswith(":stream") and streams.append(request.url))
    files = [{"name": f"ref{i}.png", "mimeType": "image/png", "buffer": png_bytes(16, 16)} for i in range(15)]
    await page.set_input_files("#references", files)
    await expect(page.locator("#reference-list img")).to_have_count(14)
    await expect(page.locator("#reference-count")).to_have_text("14 / 14")
    await expect(page.locator('[data-error-for~="referenceImages"]')).to_contain_text(
        "At most 14 reference images: ref14.png was not added."
    )
    assert streams == []
