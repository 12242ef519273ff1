"""
The web UI in a real browser against a real llamaswap: each page works, and
what happens elsewhere (another client's request, a model loading) shows up
live.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.request
from datetime import datetime, timezone
from typing import Any

from twisted.trial.unittest import TestCase

from ..test_system_twistd import FAKE_NVIDIA_SMI
from .driver import Browser, inBrowser, startServer

MODELS = """\
  demo-fast:
    cmd: ${demo} --tokens 8
    name: Demo fast
    description: answers at once
    aliases: [fast]
    memory: 1GiB
    capabilities:
      in: [text, image]
      out: [text]
      tools: true
      context: 8192
  demo-slow:
    cmd: ${demo} --startup-delay 1.5 --tokens 12 --token-delay 0.15
    name: Demo slow
  demo-hidden:
    cmd: ${demo}
    unlisted: true
"""
PROFILES = """\
profiles:
  quick:
    description: the fast one
    pins:
      chat: demo-fast
"""


def post(url: str, body: dict[str, Any], timeout: float = 60) -> Any:
    """
    A JSON POST from another client (not the browser).
    """
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def waitFor(check: Any, timeout: float, what: str) -> Any:
    """
    Poll C{check()} (in the browser thread) until it is truthy.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def modelRow(b: Browser, name: str) -> Any:
    return b.page.locator(".model-row", has=b.page.get_by_role("link", name=name, exact=True))


class ModelsPageTests(TestCase):
    timeout = 180

    async def test_listLoadUnload(self) -> None:
        """
        The models page lists every listed model (unlisted ones behind the
        switch); Load shows the progress bar while the model starts, then
        ready; Unload stops it.  Opened as C{/ui/models} (a path), the app
        moves to C{#/models}.
        """
        server = await startServer(self, MODELS, PROFILES)

        def scenario(b: Browser, url: str) -> None:
            page = b.page
            page.goto(url + "/ui/models")
            page.wait_for_selector(".model-row")
            self.assertTrue(page.url.endswith("/ui/#/models"), page.url)
            names = page.locator(".model-name").all_inner_texts()
            self.assertEqual(names, ["Demo fast", "Demo slow"])
            self.assertIn("demo-fast · fast", page.locator(".model-row").first.inner_text())
            self.assertIn("function calling", page.locator(".model-row").first.inner_text())
            self.assertIn("mem 1.0 GB", page.locator(".model-row").first.inner_text())
            page.get_by_role("switch", name="Show unlisted").check()
            page.wait_for_selector("text=demo-hidden")
            self.assertEqual(page.locator(".model-row").count(), 3)
            profilesCard = page.locator(".card", has_text="Profiles")
            self.assertIn("quick", profilesCard.inner_text())
            b.shot("models")

            # The card and the header's picker switch the same profile.
            profilesCard.get_by_role("button", name="Activate").click()
            profilesCard.locator(".tag", has_text="active").wait_for()
            picker = page.get_by_label("Active profile")
            waitFor(lambda: picker.input_value() == "quick", 10, "the picker to follow")
            picker.select_option("")
            profilesCard.get_by_role("button", name="Activate").wait_for()
            self.assertEqual(profilesCard.locator(".tag", has_text="active").count(), 0)

            slow = modelRow(b, "Demo slow")
            slow.get_by_role("button", name="Load demo-slow", exact=True).click()
            slow.locator(".load-progress [role=progressbar]").wait_for()
            self.assertEqual(slow.locator(".state").inner_text(), "starting")
            self.assertIn("Loading", slow.locator(".load-text").inner_text())
            b.shot("models-loading")
            slow.locator(".state-ready").wait_for()
            self.assertEqual(slow.locator(".load-progress").count(), 0)
            self.assertIn("1 ready", page.locator(".models-card .card-head").inner_text())
            self.assertIn("(1 loaded)", page.title())
            slow.get_by_role("button", name="Unload demo-slow", exact=True).click()
            slow.locator(".state-stopped").wait_for()

            # A second load knows how long the first took: a progress
            # percentage and an ETA instead of an open-ended bar.
            slow.get_by_role("button", name="Load demo-slow", exact=True).click()
            slow.locator(".load-progress").wait_for()
            waitFor(lambda: "left" in slow.locator(".load-text").inner_text()
                    or "almost" in slow.locator(".load-text").inner_text(), 10, "an ETA")
            self.assertIsNotNone(slow.locator("[role=progressbar]").get_attribute("aria-valuenow"))
            slow.locator(".state-ready").wait_for()

            page.get_by_role("link", name="Demo slow", exact=True).click()
            page.wait_for_selector("h1:has-text('Demo slow')")
            page.get_by_role("tab", name="Details").click()
            command = page.locator(".code-block", has_text="llamaswap.demo")
            command.wait_for()
            self.assertIn("--startup-delay 1.5", command.inner_text())
            page.get_by_role("tab", name="Logs").click()
            page.locator("pre.log", has_text="model demo loaded").wait_for()
            b.shot("model-logs")

        await inBrowser(self, server, scenario)


class PlaygroundTests(TestCase):
    timeout = 180

    async def test_chatStreams(self) -> None:
        """
        A chat answer streams into the page token by token, then shows its
        statistics; markdown from the user stays text.
        """
        server = await startServer(self, MODELS)

        def scenario(b: Browser, url: str) -> None:
            page = b.page
            page.goto(url + "/ui/#/playground")
            picker = page.get_by_label("Chat model")
            picker.wait_for()
            waitFor(lambda: picker.locator("option[value='demo-slow']").count(), 10, "the model list")
            self.assertEqual(picker.locator("option[value='fast']").count(), 1)
            picker.select_option("demo-slow")
            page.get_by_role("textbox", name="Message", exact=True).fill("say <b>hi</b>")
            page.get_by_role("button", name="Send").click()
            answer = page.locator(".bubble.assistant .markdown")
            seen: list[str] = []

            def grew() -> bool:
                text = answer.inner_text() if answer.count() else ""
                if text and (not seen or text != seen[-1]):
                    seen.append(text)
                return page.locator(".bubble-tools").count() > 0

            waitFor(grew, 60, "the answer to finish")
            self.assertGreaterEqual(len(seen), 3, f"the answer did not stream: {seen}")
            for shorter, longer in zip(seen, seen[1:]):
                self.assertTrue(longer.startswith(shorter), (shorter, longer))
            self.assertEqual(len(seen[-1].split()), 12)
            self.assertIn("12 tokens", page.locator(".bubble-tools").inner_text())
            self.assertEqual(page.locator(".bubble.user b").count(), 0)
            self.assertIn("say <b>hi</b>", page.locator(".bubble.user").inner_text())
            b.shot("playground-chat")

            page.get_by_role("tab", name="Load test").click()
            page.get_by_label("Model", exact=True).select_option("demo-fast")
            page.get_by_label("Requests to add").fill("3")
            page.get_by_role("button", name="Add").click()
            page.get_by_role("button", name=re.compile("^Go")).click()
            page.locator(".timeline svg").wait_for()
            waitFor(lambda: page.locator("td", has_text="done").count() == 3, 60, "three load-test requests")
            self.assertGreater(page.locator(".seg-streaming").count(), 0)
            b.shot("playground-loadtest")

            # The same chat over Anthropic's Messages API.
            page.get_by_role("tab", name="Chat").click()
            page.get_by_text("Settings", exact=True).click()
            page.get_by_label("Endpoint").select_option("v1/messages")
            page.get_by_role("button", name="New chat").click()
            page.get_by_role("textbox", name="Message", exact=True).fill("hello over messages")
            page.get_by_role("button", name="Send").click()
            page.locator(".bubble-tools").wait_for(timeout=60000)
            self.assertEqual(len(answer.inner_text().split()), 12)
            self.assertEqual(page.locator(".bubble.assistant .note-error").count(), 0)

        await inBrowser(self, server, scenario)


class ActivityTests(TestCase):
    timeout = 180

    async def test_liveActivityAndCapture(self) -> None:
        """
        A request by another client appears in the history without a
        reload; its capture opens with the request body.  A slow request
        shows in flight and can be cancelled.
        """
        server = await startServer(self, MODELS)

        def scenario(b: Browser, url: str) -> None:
            page = b.page
            page.goto(url + "/ui/#/activity")
            page.get_by_text("No requests recorded yet.").wait_for()
            post(url + "/v1/chat/completions",
                 {"model": "demo-fast", "messages": [{"role": "user", "content": "capture me please"}]})
            row = page.locator(".activity-table tbody tr").first
            row.wait_for()
            self.assertIn("demo-fast", row.inner_text())
            self.assertIn("200", row.inner_text())
            page.wait_for_selector(".stat-value:text-is('1')")
            page.get_by_role("button", name="View").first.click()
            dialog = page.locator("dialog")
            dialog.locator("pre", has_text="capture me please").wait_for()
            b.shot("activity-capture")
            dialog.get_by_role("tab", name="Response").click()
            dialog.locator("h3", has_text="Body").wait_for()
            page.keyboard.press("Escape")
            page.wait_for_selector("dialog", state="detached")

            # Filters go to the server (min_id); columns can be hidden.
            page.get_by_label("From ID").fill("2")
            page.get_by_text("No requests match the filters.").wait_for()
            page.get_by_role("button", name="Clear filters").click()
            row.wait_for()
            page.get_by_text("Columns", exact=True).click()
            page.locator(".column-list").get_by_label("TTFB").uncheck()
            self.assertEqual(page.locator(".activity-table th", has_text="TTFB").count(), 0)
            page.get_by_text("Columns", exact=True).click()

            errors: list[BaseException] = []

            def slow() -> None:
                try:
                    post(url + "/v1/chat/completions", {"model": "demo-slow", "stream": False,
                                                        "messages": [{"role": "user", "content": "slow"}]})
                except BaseException as e:  # cancelled: the connection is cut
                    errors.append(e)

            client = threading.Thread(target=slow)
            client.start()
            inflight = page.locator(".inflight-table tbody tr")
            inflight.first.wait_for()
            self.assertIn("demo-slow", inflight.first.inner_text())
            b.shot("activity-inflight")
            inflight.first.get_by_role("button", name=re.compile("^Cancel")).click()
            page.get_by_text("No requests in flight.").wait_for()
            client.join(30)
            self.assertFalse(client.is_alive())
            b.shot("activity")

        await inBrowser(self, server, scenario)


class LogsTests(TestCase):
    timeout = 180

    async def test_logsStream(self) -> None:
        """
        The proxy and upstream logs follow live; one model's log streams
        from C{/logs/stream/<id>}; the filter hides other lines.
        """
        server = await startServer(self, MODELS)

        def scenario(b: Browser, url: str) -> None:
            page = b.page
            page.goto(url + "/ui/#/logs")
            proxy = page.locator("pre.log[aria-label='proxy log']")
            proxy.wait_for()
            post(url + "/v1/chat/completions", {"model": "demo-fast", "messages": [{"role": "user", "content": "x"}]})
            page.locator("pre.log[aria-label='upstream log']", has_text="[demo-fast]").wait_for()
            proxy.filter(has_text="/v1/chat/completions").wait_for()
            page.get_by_label("Filter proxy log").fill("chat/completions")
            waitFor(lambda: all("chat/completions" in line for line in proxy.inner_text().splitlines()),
                    10, "the filter")
            b.shot("logs")
            page.get_by_role("tab", name="One model").click()
            page.get_by_label("Model").select_option("demo-fast")
            page.locator("pre.log[aria-label='demo-fast log']", has_text="POST /v1/chat/completions").wait_for()
            post(url + "/v1/chat/completions", {"model": "demo-fast", "messages": [{"role": "user", "content": "y"}]})
            waitFor(lambda: page.locator("pre.log[aria-label='demo-fast log']").inner_text()
                    .count("POST /v1/chat/completions") >= 2, 20, "the live model log")

            # Tabs work from the keyboard.
            page.get_by_role("tab", name="Both").focus()
            page.keyboard.press("ArrowRight")
            self.assertEqual(page.get_by_role("tab", name="Proxy").get_attribute("aria-selected"), "true")
            self.assertEqual(page.evaluate("document.activeElement.textContent"), "Proxy")
            self.assertEqual(page.locator("pre.log").count(), 1)

        await inBrowser(self, server, scenario)


class SystemPagesTests(TestCase):
    timeout = 180

    async def test_systemPages(self) -> None:
        """
        Performance, hardware, config and settings render (with a fake
        nvidia-smi on PATH); where this llamaswap lacks the endpoint they
        say "not available" instead of failing.  The theme switch works.
        """
        tools = os.path.abspath(self.mktemp())
        os.makedirs(tools)
        smi = os.path.join(tools, "nvidia-smi")
        with open(smi, "w") as f:
            f.write(FAKE_NVIDIA_SMI)
        os.chmod(smi, 0o755)
        server = await startServer(self, MODELS, path=[tools])

        def scenario(b: Browser, url: str) -> None:
            page = b.page
            for name, ready in (
                ("performance", ".line-chart, .note"),
                ("hardware", ".card, .note"),
                ("config", ".card"),
            ):
                page.goto(f"{url}/ui/#/{name}")
                page.wait_for_selector(f"main :is({ready})")
                page.wait_for_function("() => !document.querySelector('main').innerText.includes('Loading…')")
                text = page.locator("main").inner_text()
                self.assertTrue(text.strip(), name)
                self.assertEqual(page.locator("main .note-error").count(), 0, f"{name}: {text}")
                b.shot(name)
            page.goto(url + "/ui/#/config")
            page.get_by_role("button", name="Reload from disk").click()
            page.wait_for_selector("main .card .note")
            b.shot("config-reload")

            page.goto(url + "/ui/#/settings")
            page.get_by_text("Version").wait_for()
            page.locator("dd", has_text=re.compile(r"\d+\.\d+")).first.wait_for()
            page.get_by_label("Dark").check()
            self.assertEqual(page.evaluate("document.documentElement.dataset.theme"), "dark")
            b.shot("settings-dark")
            page.reload()
            page.wait_for_selector(".sidebar")
            self.assertEqual(page.evaluate("document.documentElement.dataset.theme"), "dark")
            page.goto(url + "/ui/#/models")
            page.wait_for_selector(".model-row")
            b.shot("models-dark")
            page.set_viewport_size({"width": 390, "height": 844})
            page.get_by_role("button", name="Menu").click()
            page.get_by_role("link", name="Activity", exact=True).click()
            page.wait_for_selector(".stats")
            self.assertEqual(page.evaluate("document.documentElement.scrollWidth"), 390)
            b.shot("phone-activity")

        await inBrowser(self, server, scenario)


class LibraryTests(TestCase):
    timeout = 120

    async def test_markdownAndRedaction(self) -> None:
        """
        The markdown renderer never lets markup or script URLs through; the
        command redaction hides secret flags and variables only.
        """
        server = await startServer(self, MODELS)

        def scenario(b: Browser, url: str) -> None:
            page = b.page
            page.goto(url + "/ui/#/settings")
            page.wait_for_selector(".sidebar")
            result = page.evaluate("""async () => {
                const md = await import('./lib/markdown.js');
                const rd = await import('./lib/redact.js');
                return {
                    xss: md.renderMarkdown('<img src=x onerror=alert(1)> [a](javascript:alert(1)) ' +
                        '[b](https://x.example/?q=1&r=2) **bold** `<i>`\\n\\n```js\\n<script>1</script>\\n```\\n- one\\n- two'),
                    cmd: rd.redactCommand('llama-server --api-key abc --tokens 20 --token-delay 0.1 ' +
                        '--hf-token=xyz HF_TOKEN=q --password p -m https://u:pw@h/x --port 8'),
                    cfg: rd.redactValue({apiKeys: ['k1'], peers: {p: {apiKey: 'k2', models: ['m']}},
                        models: {m: {cmd: 'x --api-key k3', ttl: 5}}}),
                };
            }""")
            xss = result["xss"]
            self.assertNotIn("<img", xss)
            self.assertNotIn("<script", xss)
            self.assertNotIn('href="javascript', xss)
            self.assertIn("&lt;img src=x onerror=alert(1)&gt;", xss)
            self.assertIn('<a href="https://x.example/?q=1&amp;r=2"', xss)
            self.assertIn("<strong>bold</strong>", xss)
            self.assertIn("<code>&lt;i&gt;</code>", xss)
            self.assertIn('<pre><code class="language-js">&lt;script&gt;1&lt;/script&gt;</code></pre>', xss)
            self.assertIn("<ul><li>one</li><li>two</li></ul>", xss)
            self.assertEqual(
                result["cmd"],
                "llama-server --api-key *** --tokens 20 --token-delay 0.1 --hf-token=*** "
                "HF_TOKEN=*** --password *** -m https://u:***@h/x --port 8",
            )
            self.assertEqual(result["cfg"], {
                "apiKeys": ["***"], "peers": {"p": {"apiKey": "***", "models": ["m"]}},
                "models": {"m": {"cmd": "x --api-key ***", "ttl": 5}},
            })

        await inBrowser(self, server, scenario)


KEYS = """\
apiKeys:
  - sk-ui-full
  - {key: sk-ui-watch, name: watcher, scopes: [monitor]}
"""


def signIn(b: Browser, key: str) -> None:
    """
    Type C{key} into the login form and submit it.
    """
    page = b.page
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


class LoginTests(TestCase):
    timeout = 180

    async def test_loginForm(self) -> None:
        """
        With API keys the page loads without one and shows its login form
        (no Basic dialog: the assets are open and the UI's requests say they
        are scripted); a wrong key is refused there, the right one opens
        the app, whose event stream and API calls ride on the session
        cookie; signing out brings the form back.  A monitor-only key sees
        the activity but the buttons needing other scopes say so.
        """
        server = await startServer(self, MODELS, KEYS + PROFILES)
        page = await server.get("/ui/")
        self.assertEqual(page.code, 200)
        await page.content()
        # curl-style clients still get the Basic challenge from the API.
        refused = await server.get("/api/events")
        self.assertEqual(refused.code, 401)
        self.assertIn(b"Basic", refused.headers.getRawHeaders(b"www-authenticate")[0])
        await refused.content()

        def scenario(b: Browser, url: str) -> None:
            page = b.page
            page.goto(url + "/ui/#/models")
            form = page.locator("form.login-form")
            form.wait_for()
            self.assertEqual(page.locator(".sidebar").count(), 0)
            self.assertEqual(page.get_by_label("API key").get_attribute("type"), "password")
            b.shot("login")
            signIn(b, "sk-wrong")
            alert = page.get_by_role("alert")
            alert.wait_for()
            self.assertEqual(alert.inner_text(), "That key is not valid.")
            self.assertEqual(page.get_by_label("API key").get_attribute("aria-invalid"), "true")
            b.shot("login-wrong-key")

            signIn(b, "sk-ui-full")
            page.wait_for_selector(".model-row")
            page.wait_for_selector(".brand .dot-ready")
            self.assertIn("Signed in as", page.locator(".session-box").inner_text())
            fast = modelRow(b, "Demo fast")
            fast.get_by_role("button", name="Load demo-fast", exact=True).click()
            fast.locator(".state-ready").wait_for()  # modelStatus over the EventSource
            page.goto(url + "/ui/#/activity")
            page.wait_for_selector(".stats")
            b.shot("signed-in-activity")
            page.get_by_role("button", name="Sign out").click()
            form.wait_for()
            self.assertEqual(page.locator(".sidebar").count(), 0)
            page.reload()
            form.wait_for()

            signIn(b, "sk-ui-watch")
            page.wait_for_selector(".stats")
            self.assertIn("watcher", page.locator(".session-box").inner_text())
            page.goto(url + "/ui/#/models")
            fast = modelRow(b, "Demo fast")
            unload = fast.get_by_role("button", name="Unload demo-fast", exact=True)
            unload.wait_for()
            self.assertTrue(unload.is_disabled())
            self.assertIn("needs the admin scope", fast.inner_text())
            slow = modelRow(b, "Demo slow")
            self.assertTrue(slow.get_by_role("button", name="Load demo-slow", exact=True).is_disabled())
            self.assertIn("needs the inference scope", slow.inner_text())
            self.assertTrue(page.get_by_role("button", name="Unload all").is_disabled())
            profiles = page.locator(".scope-gate", has_text="Profiles")
            self.assertTrue(profiles.get_by_role("button", name="Activate").is_disabled())
            self.assertIn("Switching profiles needs the admin scope.", profiles.inner_text())
            self.assertTrue(page.get_by_label("Active profile").is_disabled())
            b.shot("monitor-key-models")
            page.goto(url + "/ui/#/config")
            self.assertTrue(page.get_by_role("button", name="Reload from disk").is_disabled())
            self.assertIn("needs the admin scope", page.locator("main .card-head").inner_text())
            page.get_by_text("Viewing the configuration needs the admin scope").wait_for()
            page.goto(url + "/ui/#/logs")
            page.locator("pre.log").first.wait_for()

        await inBrowser(self, server, scenario, allowed=("/api/login",))


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def performanceDocument(now: float) -> dict[str, Any]:
    """
    An C{/api/performance} answer in the documented shape (http-behaviour
    §7.10): two minutes of samples every 5 s, one GPU.
    """
    times = [now - 120 + 5 * i for i in range(25)]
    sys = [{
        "timestamp": rfc3339(t), "cpu_util_per_core": [10 + i, 30 + i, 50, 70],
        "mem_total_mb": 32000, "mem_used_mb": 12000 + 100 * i, "mem_free_mb": 20000 - 100 * i,
        "swap_total_mb": 2048, "swap_used_mb": 10, "load_avg_1": 1.5, "load_avg_5": 1.2,
        "load_avg_15": 0.9, "net_io": [{"name": "eth0", "bytes_recv": 1000 * i, "bytes_sent": 500 * i}],
    } for i, t in enumerate(times)]
    gpu = [{
        "timestamp": rfc3339(t), "id": 0, "name": "Fake GPU 9000", "uuid": "GPU-0000",
        "temp_c": 50 + i % 5, "vram_temp_c": 0, "gpu_util_pct": (i * 7) % 100, "mem_util_pct": 20,
        "mem_used_mb": 1024 + 50 * i, "mem_total_mb": 8192, "fan_speed_pct": 40, "power_draw_w": 99.5,
    } for i, t in enumerate(times)]
    return {"enabled": True, "sys_stats": sys, "gpu_stats": gpu}


HARDWARE = {
    "schema_version": 1,
    "captured_at": "2026-12-04T06:00:00Z",
    "capture": {"scope": "host", "method": "procfs+nvidia-smi",
                "detector": {"name": "llamaswap", "version": "0.1.0"}},
    "architecture": "x86_64",
    "operating_system": {"name": "Debian GNU/Linux", "version": "12", "kernel": "6.1.0"},
    "environment": {"container": False, "virtualization": "none"},
    "cpu": {"model": "Fake CPU 3000", "cores": 8, "threads": 16},
    "memory": {"capacity_bytes": 32 * 1024 ** 3},
    "accelerators": [{"vendor": "nvidia", "name": "Fake GPU 9000", "memory_bytes": 8192 * 1024 ** 2,
                      "driver_version": "555.42"}],
}


class DocumentedShapesTests(TestCase):
    timeout = 120

    async def test_charts(self) -> None:
        """
        Against answers in the documented shapes (served by the browser,
        as the machine's own would vary), the performance page draws its
        charts and the hardware page its facts.
        """
        server = await startServer(self, MODELS)

        def scenario(b: Browser, url: str) -> None:
            page = b.page

            def fulfil(document: Any, status: int = 200) -> Any:
                return lambda route: route.fulfill(
                    status=status, content_type="application/json", body=json.dumps(document))

            page.route(re.compile(r".*/api/performance(\?.*)?$"), fulfil(performanceDocument(time.time())))
            page.route("**/api/hardware", fulfil(HARDWARE))
            page.goto(url + "/ui/#/performance")
            page.locator(".line-chart polyline").first.wait_for()
            titles = page.locator(".card h2").all_inner_texts()
            for title in ("CPU", "Memory", "Load average", "GPU utilisation", "GPU memory",
                          "GPU temperature", "GPU power"):
                self.assertIn(title, titles)
            # CPU 1, memory and swap 2, load 3, one GPU in four charts.
            self.assertEqual(page.locator(".line-chart polyline").count(), 10)
            b.shot("performance-charts")
            page.get_by_label("Window").select_option("60")
            page.locator(".line-chart polyline").first.wait_for()

            page.goto(url + "/ui/#/hardware")
            page.get_by_text("Fake CPU 3000").wait_for()
            self.assertIn("32 GB", page.locator(".card", has_text="Memory").first.inner_text())
            accelerator = page.locator(".card", has_text="Accelerators (1)").inner_text()
            self.assertIn("555.42", accelerator)
            self.assertIn("8.0 GB", accelerator)
            b.shot("hardware-facts")

        await inBrowser(self, server, scenario)


BROKEN_MODEL = """\
  demo-new:
    cmd: ${demo}
    ttl: soon
"""
FIXED_MODEL = """\
  demo-new:
    cmd: ${demo}
    name: Demo new
"""


class ConfigReloadTests(TestCase):
    timeout = 180

    async def test_brokenThenFixed(self) -> None:
        """
        Against the real C{/api/config} and C{/api/config/reload}: the
        config page shows the running configuration with its secrets
        masked; once the file on disk is broken it names the problem
        (file:line: key path: message), Reload is refused with a 422 and
        the old configuration keeps serving; once fixed, Reload applies it
        and the new model appears on the models page.
        """
        server = await startServer(self, MODELS, "apiKeys: [sk-config-secret]\n")
        with open(server.configPath) as f:
            original = f.read()

        def rewrite(text: str) -> None:
            with open(server.configPath, "w") as f:
                f.write(text)

        def scenario(b: Browser, url: str) -> None:
            page = b.page
            page.goto(url + "/ui/#/config")
            signIn(b, "sk-config-secret")
            block = page.locator("main pre.config")
            block.wait_for()
            shown = block.inner_text()
            self.assertIn('"demo-fast"', shown)
            self.assertNotIn("sk-config-secret", shown)
            self.assertIn("***", shown)
            self.assertIn("config.yaml", page.locator("main .card").inner_text())
            self.assertEqual(page.locator("main .problems").count(), 0)

            rewrite(original + BROKEN_MODEL)
            page.reload()
            problem = page.locator("main .problems li").first
            problem.wait_for()
            error = problem.inner_text()
            self.assertRegex(error, r"config\.yaml:\d+: models\.demo-new\.ttl: ")
            self.assertIn("a reload would be refused", page.locator("main .note-error").first.inner_text())
            b.shot("config-file-errors")

            page.get_by_role("button", name="Reload from disk").click()
            refusedNote = page.locator("main .note-error", has_text="running configuration is unchanged")
            refusedNote.wait_for()
            self.assertIn("Not reloaded: 1 error", refusedNote.inner_text())
            page.locator("main .problems li", has_text="models.demo-new.ttl").first.wait_for()
            b.shot("config-reload-refused")
            page.goto(url + "/ui/#/models")
            page.wait_for_selector(".model-row")
            self.assertEqual(page.locator(".model-name").all_inner_texts(), ["Demo fast", "Demo slow"])

            rewrite(original + FIXED_MODEL)
            page.goto(url + "/ui/#/config")
            page.get_by_role("button", name="Reload from disk").click()
            summary = page.locator(".reload-summary")
            summary.wait_for()
            text = summary.inner_text()
            self.assertIn("Added", text)
            self.assertIn("demo-new", text)
            self.assertIn("3 models unchanged", text)
            self.assertEqual(page.locator("main .problems").count(), 0)
            b.shot("config-reloaded")
            page.goto(url + "/ui/#/models")
            modelRow(b, "Demo new").wait_for()
            page.reload()
            page.goto(url + "/ui/#/config")
            page.locator("details.last-reload").wait_for()
            self.assertIn("Last reload (api): applied", page.locator("details.last-reload summary").inner_text())

        await inBrowser(self, server, scenario, allowed=("/api/config/reload",))


class ReconnectTests(TestCase):
    timeout = 120

    async def test_eventStreamReconnects(self) -> None:
        """
        When the event stream cannot connect, the UI says it is offline (top
        bar and tab title) and retries with back-off until it is back.
        """
        server = await startServer(self, MODELS)

        def scenario(b: Browser, url: str) -> None:
            page = b.page
            attempts: list[float] = []

            def flaky(route: Any) -> None:
                attempts.append(time.monotonic())
                if len(attempts) <= 3:
                    route.abort()
                else:
                    route.continue_()

            page.route("**/api/events", flaky)
            page.goto(url + "/ui/#/models")
            page.get_by_text("offline, reconnecting").wait_for()
            self.assertTrue(page.title().startswith("⚠ offline"), page.title())
            page.wait_for_selector(".brand .dot-ready", timeout=30000)
            page.wait_for_selector(".model-row")
            self.assertFalse(page.title().startswith("⚠"), page.title())
            self.assertEqual(len(attempts), 4)
            gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:])]
            self.assertTrue(gaps[2] > gaps[0], f"no back-off: {gaps}")

        await inBrowser(self, server, scenario, allowed=("/api/events",))


#: A 1×1 PNG.
PIXEL = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


class PlaygroundFormsTests(TestCase):
    timeout = 120

    async def test_forms(self) -> None:
        """
        Images, speech, transcription and rerank send their documented
        requests and show the answers (served by the browser: the demo
        upstream has none of these APIs).
        """
        server = await startServer(self, MODELS)

        def scenario(b: Browser, url: str) -> None:
            page = b.page
            sent: dict[str, Any] = {}

            def answer(name: str, body: bytes, contentType: str) -> Any:
                def handle(route: Any) -> None:
                    request = route.request
                    sent[name] = (request.method, request.headers.get("content-type", ""),
                                  request.post_data_buffer)
                    route.fulfill(status=200, content_type=contentType, body=body)
                return handle

            page.route("**/v1/images/generations",
                       answer("images", json.dumps({"data": [{"b64_json": PIXEL}]}).encode(), "application/json"))
            page.route("**/v1/audio/speech", answer("speech", b"RIFF\x24\x00\x00\x00WAVE", "audio/wav"))
            page.route("**/v1/audio/voices*", answer("voices", b'{"voices": ["alba", "bob"]}', "application/json"))
            page.route("**/v1/audio/transcriptions",
                       answer("transcription", b'{"text": "hello from audio"}', "application/json"))
            page.route("**/v1/rerank", answer("rerank", json.dumps({"results": [
                {"index": 0, "relevance_score": 0.1}, {"index": 1, "relevance_score": 0.9}]}).encode(),
                "application/json"))
            page.goto(url + "/ui/#/playground")
            waitFor(lambda: page.locator("option[value='demo-fast']").count(), 10, "the model list")

            page.get_by_role("tab", name="Images").click()
            page.get_by_label("Model", exact=True).select_option("demo-fast")
            page.get_by_label("Prompt").fill("a red pixel")
            page.get_by_role("button", name="Generate").click()
            page.locator(".gallery img").wait_for()
            self.assertEqual(json.loads(sent["images"][2])["prompt"], "a red pixel")

            page.get_by_role("tab", name="Speech").click()
            page.get_by_label("Model", exact=True).select_option("demo-fast")
            # The voice field is free text until the model's voice list answers.
            page.locator("label", has_text="Voice").locator("select").wait_for()
            page.get_by_label("Voice").select_option("bob")
            page.get_by_label("Text").fill("say this")
            page.get_by_role("button", name="Speak").click()
            page.locator("audio").wait_for(state="attached")
            self.assertEqual(json.loads(sent["speech"][2]),
                             {"model": "demo-fast", "input": "say this", "voice": "bob"})

            page.get_by_role("tab", name="Transcription").click()
            page.get_by_label("Model", exact=True).select_option("demo-fast")
            page.get_by_label("Audio file").set_input_files(
                {"name": "a.wav", "mimeType": "audio/wav", "buffer": b"RIFF\x24\x00\x00\x00WAVE"})
            page.get_by_role("button", name="Transcribe").click()
            page.get_by_text("hello from audio").wait_for()
            method, contentType, body = sent["transcription"]
            self.assertTrue(contentType.startswith("multipart/form-data"), contentType)
            self.assertIn(b'name="model"\r\n\r\ndemo-fast', body)
            self.assertIn(b'filename="a.wav"', body)

            page.get_by_role("tab", name="Rerank").click()
            page.get_by_label("Model", exact=True).select_option("demo-fast")
            page.get_by_label("Query").fill("which")
            page.get_by_label("Documents, one per line").fill("first doc\nsecond doc")
            page.get_by_role("button", name="Rerank").last.click()
            rows = page.locator("main table tbody tr")
            rows.first.wait_for()
            self.assertEqual(rows.all_inner_texts(), ["0.900\tsecond doc", "0.100\tfirst doc"])
            self.assertEqual(json.loads(sent["rerank"][2])["documents"], ["first doc", "second doc"])
            b.shot("playground-rerank")

            # A reasoning model's stream: the reasoning in its own fold, the
            # answer as markdown (and model output never as markup).
            def chunk(**delta: str) -> str:
                return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta}]}) + "\n\n"

            stream = (chunk(reasoning_content="Let me think. ") + chunk(reasoning_content="Done thinking.")
                      + chunk(content="Here is **bold** and code:\n\n```py\nprint(1)\n```\n")
                      + chunk(content="<img src=x onerror=alert(1)>") + "data: [DONE]\n\n")
            page.route("**/v1/chat/completions", answer("chat", stream.encode(), "text/event-stream"))
            page.get_by_role("tab", name="Chat").click()
            page.get_by_label("Chat model").select_option("demo-fast")
            page.get_by_role("textbox", name="Message", exact=True).fill("think")
            page.get_by_role("button", name="Send").click()
            page.locator(".bubble-tools").wait_for()
            bubble = page.locator(".bubble.assistant")
            bubble.locator(".reasoning summary").click()
            self.assertEqual(bubble.locator(".reasoning-text").inner_text(), "Let me think. Done thinking.")
            self.assertEqual(bubble.locator(".markdown strong").inner_text(), "bold")
            self.assertEqual(bubble.locator(".markdown pre code").inner_text(), "print(1)")
            self.assertEqual(bubble.locator(".markdown img").count(), 0)
            self.assertIn("<img src=x onerror=alert(1)>", bubble.locator(".markdown").inner_text())
            self.assertEqual(json.loads(sent["chat"][2])["stream"], True)
            b.shot("playground-reasoning")

        await inBrowser(self, server, scenario)
