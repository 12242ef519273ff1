"""
The least a Twisted HTTP relay can do, as the framework's limit for
C{bench/proxy.py}: every request is sent to one upstream with a persistent
connection pool and its reply (status, content type, body) is sent back.
No routing, no streaming, no headers beyond those, no logging.  Not
llamaswap; a yardstick.

Run: python bench/minimal_relay.py LISTEN_PORT UPSTREAM_PORT
"""

from __future__ import annotations

import sys
from io import BytesIO

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site


class Relay(Resource):
    isLeaf = True

    def __init__(self, agent: Agent, upstream: bytes) -> None:
        super().__init__()
        self.agent = agent
        self.upstream = upstream

    def render(self, request: Request) -> object:
        body = request.content.read()
        headers = Headers({b"content-type": [b"application/json"]})
        d = self.agent.request(
            request.method, self.upstream + request.uri, headers,
            FileBodyProducer(BytesIO(body)) if body else None,
        )
        d.addCallback(self.reply, request)
        d.addErrback(self.fail, request)
        return NOT_DONE_YET

    def reply(self, response: IResponse, request: Request) -> Deferred[None]:
        request.setResponseCode(response.code)
        kind = response.headers.getRawHeaders(b"content-type", [b"application/json"])[0]
        request.setHeader(b"content-type", kind)
        return readBody(response).addCallback(self.finish, request)

    def finish(self, body: bytes, request: Request) -> None:
        request.write(body)
        request.finish()

    def fail(self, failure: object, request: Request) -> None:
        request.setResponseCode(502)
        request.finish()


def main(listen: int, upstream: int) -> None:
    pool = HTTPConnectionPool(reactor)
    pool.maxPersistentPerHost = 64
    site = Site(Relay(Agent(reactor, pool=pool), b"http://127.0.0.1:%d" % upstream))
    site.noisy = False
    port = reactor.listenTCP(listen, site, interface="127.0.0.1")
    print(f"listening on http://127.0.0.1:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
