"""Headless Chromium for the tests of orch's web pages (the live stream, the dashboards), driven by Selenium.

Debian's `chromium` and `chromium-driver` packages are used as installed (.ci/run installs them when missing);
Selenium Manager is never asked to download a browser or a driver. Without Chromium a browser test is skipped,
except in CI (`CI` or `ORCH_CI` set, as .ci/run does), where it fails: CI must run every test.

    def test_page(browser):
        browser.get(url)
        save_screenshot(browser, tmp_path / "page.png")
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

WINDOW = (1280, 800)
PAGE_LOAD_TIMEOUT_S = 30


def in_ci() -> bool:
    """True under CI, where a missing browser is a failure, not a skip."""
    return bool(os.environ.get("CI") or os.environ.get("ORCH_CI"))


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) as installed on this machine, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def start_chromium(window: tuple[int, int] = WINDOW):  # noqa: ANN201 (selenium is imported here, not at the top)
    """A new headless Chromium session; skipped (failed in CI) when Chromium or its driver is not installed."""
    paths = chromium_paths()
    if paths is None:
        reason = "needs Debian's chromium and chromium-driver (.ci/run installs them)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-extensions", "--no-first-run", f"--window-size={window[0]},{window[1]}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=paths[1]), options=options)
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    return driver


@pytest.fixture
def browser() -> Iterator:
    """A headless Chromium session for one test (import this fixture into the test module)."""
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


def save_screenshot(driver, path: Path) -> Path:  # noqa: ANN001 (a selenium WebDriver)
    """The browser's viewport as a PNG at `path` (its folder made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(path)):
        raise RuntimeError(f"the browser could not save a screenshot to {path}")
    return path
