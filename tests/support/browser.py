"""A real headless Chromium driven by Selenium, for the dashboard's browser test.

Uses the machine's Chromium and chromedriver (Debian: ``apt-get install chromium
chromium-driver``), never one Selenium would download. Without them (or without the
``selenium`` package) the test skips, except when the environment variable ``CI`` is set:
CI must run the browser test, so there it fails.

:func:`shoot` saves a PNG of the page when ``POSTLINE_SCREENSHOTS`` names a directory
(``POSTLINE_SCREENSHOTS=docs/img`` refreshes the pictures of docs/dashboard.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

__all__ = ["SEVERE", "chromium", "console_errors", "shoot"]

SEVERE = "SEVERE"
_BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
_DRIVERS = ("/usr/bin/chromedriver",)


def _found(paths: tuple[str, ...], name: str) -> str | None:
    for path in paths:
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser test", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def chromium(profile_dir: Path, *, width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium (a fresh profile in ``profile_dir``) and its WebDriver."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("the selenium package is not installed (pip install -e '.[dev]')")
    browser = _found(_BROWSERS, "chromium")
    driver_path = _found(_DRIVERS, "chromedriver")
    if browser is None or driver_path is None:
        _missing("chromium and chromedriver not found (apt-get install chromium chromium-driver)")
    profile_dir.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile_dir}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=driver_path, log_output=str(profile_dir / "driver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[str]:
    """The browser console's errors since the last call (the log is read once)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == SEVERE]


def shoot(driver: Any, name: str) -> Path | None:
    """A PNG of the whole page as ``<POSTLINE_SCREENSHOTS>/<name>.png`` (None: not asked)."""
    where = os.environ.get("POSTLINE_SCREENSHOTS")
    if not where or not name:
        return None
    out = Path(where)
    out.mkdir(parents=True, exist_ok=True)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(1400, max(700, min(height + 160, 2600)))
    path = out / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    return path
