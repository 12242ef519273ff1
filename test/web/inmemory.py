"""
The whole resource tree of llamaswap, served in memory: handler tests send
requests with L{treq.testing.StubTreq} (no socket, no process, no real
time) to the very site the app serves, built by
L{llamaswap.web.site.buildSite} from in-memory collaborators:

 - a real L{Router} over L{FakeUpstream} supervisors that start, become
   ready and stop when the test says so;
 - a real L{Forwarder} (and L{PeerRouter}) over a L{ProtocolAgent}, whose
   upstream exchanges the test answers with raw HTTP bytes, and a real
   L{Tunneler} whose upstream connections are in-memory transports;
 - the real observability service and its tracker and metrics, started
   on a L{MemoryReactorClock}; its activity store is real SQLite, run on
   the test's thread (L{InThreadPool}: the fake reactor runs no threads).

The client is L{StubTreq}, talking to the same L{Site} the app serves
(L{buildSite}) over in-memory connections.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from attrs import frozen
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.load import loadConfigText
from llamaswap.config.model import Config
from llamaswap.holder import Holder
from llamaswap.observe.hardware import HardwareDetector
from llamaswap.observe.monitors import LogMonitors
from llamaswap.observe.performance import PerformanceMonitor
from llamaswap.observe.service import ObservabilityService
from llamaswap.observe.store import InThreadPool
from llamaswap.observe.tracking import Tracker
from llamaswap.routing.router import Router
from llamaswap.upstream.lifecycle import State
from llamaswap.upstream.registry import Upstreams
from llamaswap.web.forward import Forwarder
from llamaswap.web.peers import PeerRouter
from llamaswap.web.site import WebParts, buildSite
from llamaswap.web.tunnel import Tunneler

from ..routing.test_router import FakeSupervisor
from .helpers import ProtocolAgent, UpstreamExchange
from .test_tunnel import MemoryEndpoint

BASE = "http://llamaswap.test"


def _noCommands(argv: Any, timeout: float) -> Deferred[Any]:
    """
    A command runner for a machine with no GPU tools.
    """
    return fail(FileNotFoundError(argv[0]))


@frozen
class _Spec:
    proxy: str


class FakeUpstream(FakeSupervisor):
    """
    A supervisor of the model C{modelID} served at C{proxy}, started and
    stopped by the test (see L{FakeSupervisor}).
    """

    def __init__(self, modelID: str, proxy: str, state: State = State.STOPPED) -> None:
        super().__init__(modelID, state)
        self.spec = _Spec(proxy)
        self.outputObservers: list[Callable[[str, str, str], None]] = []

    def addOutputObserver(self, observer: Callable[[str, str, str], None]) -> Callable[[], None]:
        """
        Register C{observer(modelID, stream, line)} for the output.
        """
        self.outputObservers.append(observer)
        return lambda: self.outputObservers.remove(observer)


@frozen
class Answer:
    """
    A response as the client got it.
    """

    code: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


class InMemoryLlamaSwap:
    """
    One configuration's handlers over in-memory collaborators.

    @ivar upstream: the agent local models are relayed through.
    @ivar peerAgent: the agent peers are relayed through.
    """

    def __init__(self, test: SynchronousTestCase, configText: str, **parts: Any) -> None:
        self.test = test
        self.clock = MemoryReactorClock()
        self.clock.advance(1_700_000_000)
        self.config: Holder[Config] = Holder(
            loadConfigText(configText, "test.yaml", environ={}).config
        )
        config = self.config.value
        self.activeProfile: Holder[str | None] = Holder(None)
        self.supervisors: Upstreams[FakeUpstream] = Upstreams(
            {m.id: FakeUpstream(m.id, m.proxy) for m in config.models.values()}
        )
        self.router = Router(config, self.supervisors, self.clock)
        self.upstream = ProtocolAgent(self.clock)
        self.tunnels = MemoryEndpoint()
        self.tunnelURLs: list[bytes] = []
        self.peerAgent = ProtocolAgent(self.clock)
        self.peers = PeerRouter(config, self.peerAgent, self.clock)
        self.logs = LogMonitors(list(config.models))
        self.observability = ObservabilityService(
            self.config,
            self.supervisors,
            self.clock,
            activeProfile=self.activeProfile,
            logs=self.logs,
            processMetrics=False,
            openPool=InThreadPool,
        )
        self.tracker: Tracker = self.observability.tracker
        self.observability.startService()
        test.addCleanup(self.observability.stopService)
        fields: dict[str, Any] = dict(
            config=self.config,
            activeProfile=self.activeProfile,
            router=self.router,
            forwarder=Forwarder(self.upstream, self.clock),
            peers=self.peers,
            tunneler=Tunneler(None, self.clock, endpointFor=self._tunnelEndpoint),
            tracker=self.tracker,
            observability=self.observability,
            logs=self.logs,
            clock=self.clock,
            performance=PerformanceMonitor(self.clock, _noCommands, config.performance),
            hardware=HardwareDetector(self.clock, _noCommands),
        )
        fields.update(parts)
        self.parts = WebParts(**fields)
        self.site = buildSite(self.parts, reactor=self.clock)
        self.resource = self.site.resource
        self.client = StubTreq(self.resource)
        # StubTreq serves the resource from a plain Site of its own; serve
        # it from llamaswap's (form bodies unparsed, the access log) instead.
        # treq offers no public way to pass a Site.
        self.client._agent._serverFactory = self.site

    def _tunnelEndpoint(self, url: bytes, timeout: float | None) -> MemoryEndpoint:
        self.tunnelURLs.append(url)
        return self.tunnels

    # -- requests ---------------------------------------------------------------

    def request(self, method: str, path: str, **kw: Any) -> Deferred[Any]:
        """
        Send a request; the L{Deferred} fires with the treq response.
        """
        return self.client.request(method, BASE + path, **kw)  # type: ignore[no-any-return]

    def answer(self, pending: Deferred[Any]) -> Answer:
        """
        The finished response of C{pending} (the request must be over).
        """
        self.flush()
        response = self.test.successResultOf(pending)
        body = self.client.content(response)
        self.flush()
        return Answer(response.code, response.headers, self.test.successResultOf(body))

    def send(self, method: str, path: str, **kw: Any) -> Answer:
        """
        Send a request that is answered at once.
        """
        return self.answer(self.request(method, path, **kw))

    def chat(self, model: str, path: str = "/v1/chat/completions", **extra: Any) -> Deferred[Any]:
        """
        Start a chat completion for C{model}.
        """
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
        return self.request("POST", path, json=body)

    def flush(self) -> None:
        self.client.flush()

    def roundTrip(
        self, method: str, path: str, reply: bytes = b'{"ok":true}', **kw: Any
    ) -> tuple[Answer, UpstreamExchange | None]:
        """
        Send a request, let every model it starts become ready, answer
        what reaches an upstream with C{reply}.

        @return: the client's answer and the upstream exchange (L{None}
            when nothing was relayed).
        """
        before = len(self.upstream.exchanges), len(self.peerAgent.exchanges)
        pending = self.request(method, path, **kw)
        self.flush()
        self.settle()
        exchange = None
        if len(self.upstream.exchanges) > before[0]:
            exchange = self.respond(reply)
        elif len(self.peerAgent.exchanges) > before[1]:
            exchange = self.respond(reply, peer=True)
        return self.answer(pending), exchange

    # -- upstreams ----------------------------------------------------------------

    def ready(self, *models: str) -> None:
        """
        Make C{models} ready at once (their pending starts succeed).
        """
        for model in models:
            supervisor = self.supervisors[model]
            if supervisor.state is not State.READY:
                if supervisor.state is not State.STARTING:
                    supervisor.setState(State.STARTING)
                supervisor.becomeReady()
        self.flush()

    def advance(self, seconds: float, step: float = 0.05) -> None:
        """
        Let C{seconds} pass on the clock in small steps, delivering what
        is written as it goes.
        """
        steps = round(seconds / step)
        for _ in range(steps):
            self.clock.advance(step)
            self.flush()

    def settle(self) -> None:
        """
        Let every stop and start in progress complete (stops first, as a
        swap needs).
        """
        for state, complete in [
            (State.STOPPING, FakeUpstream.becomeStopped),
            (State.STARTING, FakeUpstream.becomeReady),
        ]:
            for supervisor in list(self.supervisors.values()):
                if supervisor.state is state:
                    complete(supervisor)
                    self.flush()

    def exchange(self, index: int = -1, peer: bool = False) -> UpstreamExchange:
        """
        An upstream exchange (the latest by default).
        """
        agent = self.peerAgent if peer else self.upstream
        self.test.assertTrue(agent.exchanges, "nothing was relayed upstream")
        return agent.exchanges[index]

    def respond(
        self,
        body: bytes = b'{"ok":true}',
        status: bytes = b"200 OK",
        contentType: bytes = b"application/json",
        index: int = -1,
        peer: bool = False,
    ) -> UpstreamExchange:
        """
        Answer an upstream exchange with a whole response.
        """
        exchange = self.exchange(index, peer)
        exchange.respond(
            b"HTTP/1.1 " + status + b"\r\ncontent-type: " + contentType
            + b"\r\ncontent-length: %d\r\n\r\n" % (len(body),) + body
        )
        self.flush()
        return exchange


__all__ = ["Answer", "FakeUpstream", "InMemoryLlamaSwap"]
