"""
A headless chromium for the browser tests, driven by Playwright's sync API
in a worker thread (the reactor keeps serving the twistd child meanwhile),
with a record of everything that went wrong in the page: console errors,
uncaught exceptions, failed requests and error answers.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any, Callable, Iterable, TypeVar
from urllib.parse import urlsplit

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from ..twistdproc import Twistd, startPort, startTwistd

T = TypeVar("T")

#: The browser (Debian's package; CI installs it, see .ci/run).
CHROMIUM = os.environ.get("LLAMASWAP_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
#: A demo upstream that logs each request (for the log views).
DEMO = f"{sys.executable} -m llamaswap.demo --port ${{PORT}}"
#: Endpoints other llamaswap versions may lack: the UI says "not available"
#: (404) or "disabled" (503) for them, which is not an error of the page.
OPTIONAL = ("/api/performance", "/api/hardware", "/api/config", "/api/config/reload")


def requireBrowser(test: TestCase) -> None:
    """
    Fail (not skip: CI installs both) when chromium or Playwright is
    missing.
    """
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        test.fail(
            f"chromium not found at {CHROMIUM}: install Debian's chromium package "
            "(apt-get install chromium; .ci/run does) or set LLAMASWAP_CHROMIUM"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        test.fail("Playwright for Python is missing: pip install '.[test]'")


def demoConfig(models: str, extra: str = "") -> str:
    """
    A config with the logging demo upstream as C{${demo}}.
    """
    return f'macros:\n  demo: "{DEMO}"\n' + startPort() + "captureBuffer: 5\n" + extra + f"models:\n{models}"


class PageProblems:
    """
    What went wrong in a page, collected from Playwright events.
    """

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.problems: list[str] = []
        #: Paths whose error answers the test provokes on purpose.
        self.allowed = tuple(allowed)

    def watch(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        where = urlsplit((message.location or {}).get("url", "")).path
        # A failed fetch is reported twice: as a response (below, with its
        # URL) and as this console line; the response decides.
        if message.text.startswith("Failed to load resource"):
            return
        self.problems.append(f"console error at {where}: {message.text}")

    def _failed(self, request: Any) -> None:
        failure = request.failure or ""
        path = urlsplit(request.url).path
        # Streams the page closes on purpose (a log view left, the page
        # closed at the end of the test) are aborted, not failed.
        if "ERR_ABORTED" in failure and path.startswith(("/logs/stream", "/api/events", "/upstream/")):
            return
        if path in self.allowed:
            return
        self.problems.append(f"request failed: {request.method} {path}: {failure}")

    def _response(self, response: Any) -> None:
        path = urlsplit(response.url).path
        if response.status < 400:
            return
        if path in OPTIONAL and response.status in (404, 405, 503):
            return
        if path in self.allowed:
            return
        self.problems.append(f"{response.status} for {response.request.method} {path}")


class Browser:
    """
    One headless chromium with a fresh profile and one page.
    """

    def __init__(
        self,
        screenshots: str,
        credentials: dict[str, str] | None = None,
        allowed: Iterable[str] = (),
    ) -> None:
        from playwright.sync_api import sync_playwright

        self.screenshots = screenshots
        os.makedirs(screenshots, exist_ok=True)
        self._profile = tempfile.mkdtemp(prefix="llamaswap-chromium-")
        self._playwright = sync_playwright().start()
        self.context = self._playwright.chromium.launch_persistent_context(
            self._profile,
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 860},
            http_credentials=credentials,
        )
        self.context.set_default_timeout(20000)
        self.problems = PageProblems(allowed)
        self.page = self.context.pages[0] if self.context.pages else self.context.new_page()
        self.problems.watch(self.page)

    def shot(self, name: str, fullPage: bool = True) -> str:
        path = os.path.join(self.screenshots, f"{name}.png")
        self.page.screenshot(path=path, full_page=fullPage)
        return path

    def close(self) -> None:
        try:
            self.context.close()
        finally:
            self._playwright.stop()
            shutil.rmtree(self._profile, ignore_errors=True)


def inBrowser(
    test: TestCase,
    server: Twistd,
    scenario: Callable[[Browser, str], T],
    credentials: dict[str, str] | None = None,
    allowed: Iterable[str] = (),
) -> Deferred[T]:
    """
    Run C{scenario(browser, baseURL)} in a worker thread with a fresh
    browser (answering HTTP authentication with C{credentials}: what a user
    types into the browser's prompt); afterwards the page must have had no
    problems (error answers from C{allowed} paths excepted).
    """
    screenshots = os.path.abspath(os.path.join(test.mktemp(), "screenshots"))

    def run() -> T:
        browser = Browser(screenshots, credentials, allowed)
        try:
            result = scenario(browser, server.url)
        except Exception as e:
            problems = browser.problems.problems
            if not problems:
                raise
            # A page that broke usually makes the scenario time out; the
            # page's own errors say why.
            raise AssertionError(
                f"{e}\nproblems in the page:\n" + "\n".join(problems)
            ) from e
        finally:
            problems = list(browser.problems.problems)
            browser.close()
        if problems:
            raise AssertionError("problems in the page:\n" + "\n".join(problems))
        return result

    return threads.deferToThread(run)


async def startServer(test: TestCase, models: str, extra: str = "",
                      path: Iterable[str] = ()) -> Twistd:
    """
    A running llamaswap with C{models}; C{path} directories are put in
    front of its C{PATH} (fake tools such as C{nvidia-smi}).
    """
    requireBrowser(test)
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([*path, old])
    try:
        server = await startTwistd(test, demoConfig(models, extra))
    finally:
        os.environ["PATH"] = old
    return server
