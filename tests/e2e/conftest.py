"""Fixtures for the browser tests: a Netra server on a free loopback port and a headless
Chromium (Debian's, never one Playwright downloads)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Generator, Iterator

import pytest
from playwright.async_api import Browser, async_playwright

from .harness import OUTPUT, NetraServer, Pages, ServerError, launch_chromium


@pytest.fixture
def netra(request: pytest.FixtureRequest) -> Iterator[NetraServer]:
    """A server of this test alone; its log is test-output/server-<test>.log. A test marked
    `@pytest.mark.netra_args("--flag", …)` starts it with those flags."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    log_path = OUTPUT / f"server-{name}.log"
    log_path.unlink(missing_ok=True)
    marker = request.node.get_closest_marker("netra_args")
    server = NetraServer(log_path=log_path, extra_args=tuple(marker.args) if marker else ())
    request.node.netra_server = server
    failure = None
    try:
        server.start()
    except ServerError as exc:
        failure = str(exc)
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        missing = None
        try:
            chromium = await launch_chromium(playwright)
        except FileNotFoundError as exc:
            missing = str(exc)
        if missing is not None:
            pytest.fail(missing, pytrace=False)  # a missing browser fails, it never skips
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def pages(browser: Browser, netra: NetraServer) -> AsyncIterator[Pages]:
    """Opens pages of the test's server; fails the test if a page threw an uncaught error."""
    opened = Pages(browser, netra)
    try:
        yield opened
        errors = [f"{tab.page.url}: {e}" for tab in opened.tabs for e in tab.errors]
        assert not errors, "uncaught errors in the pages:\n" + "\n".join(errors)
    finally:
        await opened.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of the test's server log to its failure report."""
    report = yield
    server = getattr(item, "netra_server", None)
    if server is not None and report.failed:
        report.sections.append(("netra server log (tail)", server.log_tail(60)))
    return report
