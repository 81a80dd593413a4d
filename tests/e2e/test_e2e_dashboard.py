"""The operator dashboard in a real headless Chromium, against a node delivering the mail
simulator's traffic: sign-in, every page without a console error, live updates, the
suspend button (checked through the admin API) and a message search with its timeline.

Skips without Chromium, chromedriver or selenium (fails under ``CI``); see
tests/support/browser.py. ``POSTLINE_SCREENSHOTS=docs/img`` saves the pictures of
docs/dashboard.md on the way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from postline.control.tokens import generate_token, hash_token
from postline.sim.profiles import Profile
from support.browser import chromium, console_errors, shoot
from support.e2e import domain, internet
from support.node import api_client, wait_for

# Deferred mail stays queued a while, so the destinations page has something to show.
SLOW_RETRY = """
[retry]
first = "10m"
multiplier = 2.0
max_interval = "1h"
max_age = "1d"
[queue]
scan_interval = "15s"
"""


def _until(driver: Any, check: Callable[[Any], Any], timeout: float = 15.0) -> Any:
    """Poll ``check(driver)`` (in the test's thread) until truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check(driver)
        except Exception:  # the element is not there (yet)
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"page {driver.current_url} not ready: {check}")
        time.sleep(0.1)


def _visit(driver: Any, base: str, path: str, ready: str, shot: str) -> list[str]:
    """Open a page, wait for the element ``ready`` (a CSS selector), take its picture
    (``shot``: its name, empty for none); the console errors it logged."""
    from selenium.webdriver.common.by import By

    driver.get(base + path)
    _until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ready))
    shoot(driver, shot)
    return console_errors(driver)


async def test_dashboard_in_chromium(tmp_path: Path) -> None:
    specs = [
        domain("plain.test"),
        domain("grey.test", Profile(greylist=30.0)),
        domain("mail.example.test", hosts=2),
    ]
    async with internet(tmp_path, specs, node_extra=SLOW_RETRY) as e:
        secret = generate_token()
        await e.node.store.add_admin_token("ops", hash_token(secret), secret[:11])
        # Traffic: delivered, bounced (unknown users), deferred (greylisted, temporary
        # failures), with tags to search by.
        to = [f"user{i}@plain.test" for i in range(20)] + [
            f"user{i}@mail.example.test" for i in range(10)
        ]
        await e.send_many(to)
        await e.send(["unknown-1@plain.test", "unknown-2@mail.example.test"], tags=["promo"])
        await e.send([f"late{i}@grey.test" for i in range(6)], tags=["digest"])
        await e.send(["tempfail-1@mail.example.test"], tags=["digest"])
        target = await e.send("Ann.Lee@plain.test", tags=["invoice", "2024-q3"])

        async def delivered() -> bool:
            return (await e.message(target["id"]))["recipients"][0]["status"] == "delivered"

        await wait_for(delivered, timeout=30, interval=0.2)
        assert e.node.api_address is not None
        host, port = e.node.api_address
        base = f"http://{host}:{port}"

        async def deferred() -> bool:
            page = (await admin.get("/admin/v1/queues", params={"domain": "grey.test"})).json()
            return bool(page["queues"]) and page["queues"][0]["deferred"] == 6

        async with api_client(e.node, secret) as admin:
            await wait_for(deferred, timeout=30, interval=0.2)
            # The per-minute counts reach the store within the flush interval.
            await asyncio.sleep(6)
            with chromium(tmp_path / "profile") as driver:
                await _browse(driver, base, secret, target["id"], admin)


async def _browse(driver: Any, base: str, secret: str, message_id: str, admin: Any) -> None:
    from selenium.webdriver.common.by import By

    def run(fn: Callable[[], Any]) -> Any:
        return asyncio.to_thread(fn)

    # Sign in with the admin token.
    def sign_in() -> list[str]:
        driver.get(base + "/ui")
        _until(driver, lambda d: d.find_elements(By.ID, "token"))
        shoot(driver, "dashboard-login")
        driver.find_element(By.ID, "token").send_keys(secret)
        driver.find_element(By.ID, "sign-in").click()
        _until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".chart svg polyline"))
        return console_errors(driver)

    assert await run(sign_in) == []
    assert driver.current_url == base + "/ui"

    # The overview: five charts drawn, queue cards, and the feed polled (no reload).
    def overview() -> tuple[list[str], int, str]:
        charts = driver.find_elements(By.CSS_SELECTOR, ".chart svg polyline")
        delivered = driver.find_element(
            By.CSS_SELECTOR, '.chart[data-series="delivered"] .total'
        ).text
        _until(
            driver,
            lambda d: d.execute_script(
                "return performance.getEntriesByType('resource')"
                ".filter(e => e.name.endsWith('/ui/api/overview')).length"
            ),
            timeout=12,
        )
        shoot(driver, "dashboard-overview")
        return console_errors(driver), len(charts), delivered

    errors, charts, delivered = await run(overview)
    assert errors == [] and charts == 5
    assert not delivered.startswith("0 "), delivered

    # Every other page loads without a console error.
    pages = [
        ("/ui/destinations", "#destinations-table", "dashboard-destinations"),
        ("/ui/tenants", "#tenants-table", "dashboard-tenants"),
        ("/ui/suppressions?tenant=", "#suppressions-form", ""),
        ("/ui/domains", "#domains", "dashboard-domains"),
        ("/ui/messages", "#search-form", ""),
    ]
    for path, ready, shot in pages:
        assert await run(lambda p=path, r=ready, s=shot: _visit(driver, base, p, r, s)) == []
    acme = (await admin.get("/admin/v1/tenants")).json()["tenants"][0]["id"]
    path = f"/ui/suppressions?tenant={acme}"
    shot = "dashboard-suppressions"
    errors = await run(lambda: _visit(driver, base, path, "#suppressions", shot))
    assert errors == []
    rows = await run(lambda: driver.find_element(By.ID, "suppressions").text)
    assert "unknown-1@plain.test" in rows

    # Suspend grey.test with its button; the admin API shows the hold.
    def suspend() -> str:
        driver.get(base + "/ui/destinations")
        row = _until(
            driver,
            lambda d: next(
                r
                for r in d.find_elements(By.CSS_SELECTOR, "#destinations-table tbody tr")
                if r.find_element(By.TAG_NAME, "strong").text == "grey.test"
            ),
        )
        row.find_element(By.XPATH, ".//button[text()='Suspend']").click()
        notice = _until(driver, lambda d: d.find_element(By.ID, "notice").text)
        _until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#destinations-table"))
        shoot(driver, "dashboard-destinations-suspended")
        assert console_errors(driver) == []
        return str(notice)

    notice = await run(suspend)
    assert notice.startswith("suspended */grey.test: 6 queued recipients held"), notice
    page = (await admin.get("/admin/v1/queues", params={"domain": "grey.test"})).json()
    [held] = page["queues"]
    assert held["suspended"] is True and held["suspensions"][0]["tenant"] == "*"
    audit = (await admin.get("/admin/v1/audit")).json()["entries"]
    assert [a["action"] for a in audit][-1] == "queue.suspend"

    # Search by recipient (another case), open the message, see its timeline.
    def search() -> tuple[list[str], list[str]]:
        driver.get(base + "/ui/messages")
        box = _until(driver, lambda d: d.find_element(By.ID, "q"))
        box.send_keys("ann.lee@PLAIN.test")
        driver.find_element(By.ID, "search").click()
        link = _until(driver, lambda d: d.find_element(By.CSS_SELECTOR, "a.message-link"))
        shoot(driver, "dashboard-messages")
        link.click()
        events = _until(
            driver,
            lambda d: [
                li.get_attribute("class")
                for li in d.find_elements(By.CSS_SELECTOR, "#timeline li.event")
            ],
        )
        shoot(driver, "dashboard-message")
        return console_errors(driver), events

    errors, events = await run(search)
    assert errors == []
    assert events[0] == "event accepted" and "event delivered" in events
    assert await run(lambda: driver.current_url) == f"{base}/ui/messages/{message_id}"

    # Sign out: back to the sign-in form, and the pages need it again.
    def sign_out() -> str:
        driver.find_element(By.ID, "logout").click()
        _until(driver, lambda d: d.find_elements(By.ID, "token"))
        driver.get(base + "/ui/tenants")
        _until(driver, lambda d: d.find_elements(By.ID, "token"))
        assert console_errors(driver) == []
        return str(driver.current_url)

    assert (await run(sign_out)).startswith(base + "/ui/login?next=")
