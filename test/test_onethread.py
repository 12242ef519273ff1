"""
Upstreams that serve one connection at a time (Python's C{http.server}):
llamaswap's connection opened ahead of a start (L{llamaswap.web.warm})
must never leave such a server sitting on it while a health probe waits
on another connection.  Real processes on 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
import textwrap

from twisted.trial.unittest import TestCase

from .harness import startLlamaSwap

#: A single-threaded HTTP/1.0 server.  Each start counts itself in
#: C{COUNTER}; it announces its readiness ("listening on") except on every
#: third start, where it prints another line instead (so a start trusted to
#: be ready at its line has to fall back on a probe).
SERVER = textwrap.dedent(
    """
    import sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    port, counter = int(sys.argv[1]), sys.argv[2]
    try:
        starts = int(open(counter).read())
    except OSError:
        starts = 0
    open(counter, "w").write(str(starts + 1))

    class Handler(BaseHTTPRequestHandler):
        def answer(self):
            body = b'{"object": "chat.completion", "start": %d}' % starts
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self.answer()

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.answer()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", port), Handler)
    print("loading the model", flush=True)
    if starts % 3 == 2:
        print("serving", flush=True)
    else:
        print("listening on http://127.0.0.1:%d" % port, flush=True)
    server.serve_forever()
    """
)


class OneConnectionAtATimeTests(TestCase):
    timeout = 40

    async def test_startsAndSwaps(self) -> None:
        """
        Twelve starts of such a server, most trusted to be ready at their
        line and some of those without it: each answers at once.  (Before
        the warm connection was dropped once its start was over, a request
        that went out while it was still being made could wait behind it
        for good, in about one run of three.)
        """
        directory = self.mktemp()
        os.makedirs(directory)
        script = os.path.join(directory, "server.py")
        with open(script, "w") as f:
            f.write(SERVER)
        counter = os.path.join(directory, "starts")
        running = await startLlamaSwap(
            self,
            f"""
healthCheckTimeout: 20
models:
  one:
    cmd: {sys.executable} {script} ${{PORT}} {counter}
""",
        )
        for start in range(12):
            status, body = await running.chat("one")
            self.assertEqual((status, body.get("start")), (200, start), body)
            # Answered once the server is stopped.
            response = await running.post("/api/models/unload/one", json={})
            self.assertEqual(response.code, 200, await response.text())
