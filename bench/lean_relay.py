"""
The minimal relay of C{bench/minimal_relay.py} with Twisted's HTTP client
(C{Agent}, its pool, C{readBody}) replaced by a hand-written keep-alive
HTTP/1.1 client of a few dozen lines that understands only what the demo
upstream sends (a status line, headers, a C{Content-Length} body).  Not
llamaswap and not a relay anyone should run: it shows how much of the
framework's limit is Twisted's client, i.e. what a lean upstream client
on llamaswap's hot path could at most give back.

Run: python bench/lean_relay.py LISTEN_PORT UPSTREAM_PORT
(or C{python bench/proxy.py --relay lean}).
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site


class LeanClient(Protocol):
    """
    One upstream connection: one request at a time, the response parsed
    for its status, content type and C{Content-Length} body.
    """

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.buffer = b""
        self.waiting: Deferred[tuple[int, bytes, bytes]] | None = None
        self.head: tuple[int, bytes] | None = None
        self.length = 0

    def send(self, data: bytes) -> Deferred[tuple[int, bytes, bytes]]:
        self.waiting = Deferred()
        self.buffer, self.head = b"", None
        self.transport.write(data)  # type: ignore[union-attr]
        return self.waiting

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if self.head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buffer[:end].split(b"\r\n")
            self.buffer = self.buffer[end + 4 :]
            kind, self.length = b"application/json", 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    self.length = int(value)
                elif name == b"content-type":
                    kind = value.strip()
            self.head = (int(lines[0].split(b" ", 2)[1]), kind)
        if len(self.buffer) >= self.length and self.waiting is not None:
            waiting, self.waiting = self.waiting, None
            self.pool.idle.append(self)
            waiting.callback((*self.head, self.buffer[: self.length]))

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self in self.pool.idle:
            self.pool.idle.remove(self)
        if self.waiting is not None:
            waiting, self.waiting = self.waiting, None
            waiting.errback(reason)


class Pool:
    """
    Idle connections to the one upstream; a new one when none is idle.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: deque[LeanClient] = deque()

    def connection(self) -> Deferred[LeanClient]:
        if self.idle:
            return succeed(self.idle.pop())
        connected: Deferred[LeanClient] = Deferred()
        pool = self

        class Connecting(ClientFactory):
            def buildProtocol(self, addr: Any) -> LeanClient:
                client = LeanClient(pool)
                reactor.callLater(0, connected.callback, client)  # type: ignore[attr-defined]
                return client

            def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
                connected.errback(reason)

        reactor.connectTCP("127.0.0.1", self.port, Connecting())  # type: ignore[attr-defined]
        return connected


class Relay(Resource):
    isLeaf = True

    def __init__(self, pool: Pool) -> None:
        super().__init__()
        self.pool = pool

    def render(self, request: Request) -> object:
        body = request.content.read()
        data = (
            b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (request.method, request.uri, len(body), body)
        )
        d = self.pool.connection()
        d.addCallback(lambda client: client.send(data))
        d.addCallback(self.reply, request)
        d.addErrback(self.fail, request)
        return NOT_DONE_YET

    def reply(self, answer: tuple[int, bytes, bytes], request: Request) -> None:
        code, kind, body = answer
        request.setResponseCode(code)
        request.setHeader(b"content-type", kind)
        request.write(body)
        request.finish()

    def fail(self, failure: Failure, request: Request) -> None:
        request.setResponseCode(502)
        request.finish()


def main(listen: int, upstream: int) -> None:
    site = Site(Relay(Pool(upstream)))
    site.noisy = False
    port = reactor.listenTCP(listen, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    print(f"listening on http://127.0.0.1:{port.getHost().port}", flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
