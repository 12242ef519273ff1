"""
A stand-in llamaswap for the parent-death test: supervises one upstream
(C{argv} as JSON in C{sys.argv[1]}, its URL in C{sys.argv[2]}) with the real
reactor, prints C{PID <pid>} once it is ready and C{LINE <text>} for each
output line, and then waits to be killed.
"""

import json
import sys

from twisted.internet import reactor


def main() -> None:
    """
    Start the upstream and run until killed.
    """
    from twisted.web.client import Agent, HTTPConnectionPool

    from llamaswap.upstream import Supervisor, UpstreamSpec

    spec = UpstreamSpec(modelID="orphan", argv=json.loads(sys.argv[1]), proxy=sys.argv[2])
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    supervisor = Supervisor(spec, processReactor=reactor, clock=reactor, agent=agent)

    def line(model: str, stream: str, text: str) -> None:
        sys.stdout.write(f"LINE {text}\n")
        sys.stdout.flush()

    def ready(_: object) -> None:
        sys.stdout.write(f"PID {supervisor.pid}\n")
        sys.stdout.flush()

    supervisor.addOutputObserver(line)
    supervisor.ensureReady().addCallback(ready)
    reactor.run()


if __name__ == "__main__":
    main()
