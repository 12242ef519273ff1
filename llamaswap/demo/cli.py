# -*- test-case-name: test.test_demo -*-
"""
The demo upstream's command line, C{python -m llamaswap.demo}, and the
process-level behaviours tests need from a stand-in llama-server: a slow start,
failing during start, ignoring SIGTERM, crashing, and a forked grandchild that
holds the output pipes.

After listening it prints exactly one line,
C{demo upstream listening on http://HOST:PORT}, so a parent can read the port
chosen for C{--port 0}.  Further output is one log line per event on stdout.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from types import FrameType
from typing import Any, Callable, Protocol, TextIO, TypeVar

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError, ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python.failure import Failure

from llamaswap.demo.server import DemoOptions, DemoUpstream, makeSite

GRANDCHILD_GRACE = 2.0
"""
Seconds the grandchild gets to exit after SIGTERM before SIGKILL.
"""

GRANDCHILD_ORPHAN_LINGER = 30.0
"""
Seconds the grandchild lives on once orphaned (after a crash or SIGKILL of
the demo), like a worker that outlives its server, before exiting by itself so
that a test that forgot it does not leak it for long.
"""

GRANDCHILD_SCRIPT = """\
import os, sys, time
parent, linger = int(sys.argv[1]), float(sys.argv[2])
sys.stdout.write("demo grandchild %d started by %d\\n" % (os.getpid(), parent))
sys.stdout.flush()
while os.getppid() == parent:
    time.sleep(0.2)
time.sleep(linger)
"""
"""
What the grandchild runs: a plain Python sleeper, deliberately not a Twisted
program, that notices when it is orphaned.
"""


class DemoReactor(Protocol):
    """
    The reactor methods the demo process uses (the global reactor provides
    them all: C{IReactorCore}, C{IReactorTime}, C{IReactorProcess},
    C{IReactorTCP} and C{IReactorFromThreads}).
    """

    def callLater(self, delay: float, f: Callable[..., Any], *a: Any, **kw: Any) -> IDelayedCall:
        """
        See L{twisted.internet.interfaces.IReactorTime.callLater}.
        """

    def seconds(self) -> float:
        """
        See L{twisted.internet.interfaces.IReactorTime.seconds}.
        """

    def callFromThread(self, f: Callable[..., Any], *a: Any, **kw: Any) -> None:
        """
        See L{twisted.internet.interfaces.IReactorFromThreads.callFromThread}.
        """

    def stop(self) -> None:
        """
        See L{twisted.internet.interfaces.IReactorCore.stop}.
        """

    def spawnProcess(self, *a: Any, **kw: Any) -> IProcessTransport:
        """
        See L{twisted.internet.interfaces.IReactorProcess.spawnProcess}.
        """


N = TypeVar("N", int, float)


def _argument(
    parse: Callable[[str], N], notOne: str, valid: Callable[[N], bool], invalid: str
) -> Callable[[str], N]:
    """
    An argparse C{type}: C{parse} the argument, refusing what it cannot
    parse (C{notOne}) and what is not C{valid} (C{invalid}).
    """

    def argument(value: str) -> N:
        try:
            number = parse(value)
        except ValueError:
            raise argparse.ArgumentTypeError("%s: %r" % (notOne, value))
        if not valid(number):
            raise argparse.ArgumentTypeError("%s: %r" % (invalid, value))
        return number

    return argument


#: A non-negative, finite number of seconds.
nonNegativeFloat = _argument(
    float, "not a number", lambda n: 0 <= n < math.inf, "must be a non-negative number"
)
#: A non-negative integer.
nonNegativeInt = _argument(int, "not an integer", lambda n: n >= 0, "must not be negative")


def parseArguments(argv: list[str] | None = None) -> argparse.Namespace:
    """
    Parse the command line.

    @param argv: The arguments without the program name; C{sys.argv[1:]} if
        L{None}.
    @return: The parsed arguments.
    """
    parser = argparse.ArgumentParser(
        prog="python -m llamaswap.demo",
        description="A small OpenAI/Anthropic-compatible server standing in for llama-server.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument(
        "--port", type=nonNegativeInt, default=0, help="port to listen on; 0 picks a free one"
    )
    parser.add_argument("--model", default="demo", help="model name to report")
    parser.add_argument(
        "--startup-delay",
        type=nonNegativeFloat,
        default=0.0,
        metavar="SECONDS",
        help="answer 503 'Loading model' for this long after start",
    )
    parser.add_argument(
        "--tokens", type=nonNegativeInt, default=8, metavar="N", help="tokens per completion"
    )
    parser.add_argument(
        "--token-delay",
        type=nonNegativeFloat,
        default=0.0,
        metavar="SECONDS",
        help="delay between generated tokens",
    )
    parser.add_argument(
        "--respond", metavar="TEXT", help="fixed completion text instead of generated words"
    )
    parser.add_argument(
        "--exit-during-start",
        type=int,
        metavar="CODE",
        help="write a few lines to stderr and exit with CODE before becoming healthy",
    )
    parser.add_argument("--ignore-sigterm", action="store_true", help="survive SIGTERM")
    parser.add_argument(
        "--crash-after",
        type=nonNegativeFloat,
        metavar="SECONDS",
        help="exit 1 abruptly after this long, without any cleanup",
    )
    parser.add_argument(
        "--fork-grandchild",
        action="store_true",
        help="spawn a sleeping grandchild that shares stdout/stderr and the process group",
    )
    parser.add_argument("--silent", action="store_true", help="no per-request log lines")
    return parser.parse_args(argv)


def optionsFromArguments(args: argparse.Namespace) -> DemoOptions:
    """
    The HTTP behaviour the command line asks for.

    @param args: From L{parseArguments}.
    @return: The options; with C{--exit-during-start} the model never loads.
    """
    startupDelay = math.inf if args.exit_during_start is not None else args.startup_delay
    return DemoOptions(
        model=args.model,
        startupDelay=startupDelay,
        tokens=args.tokens,
        tokenDelay=args.token_delay,
        respond=args.respond,
        silent=args.silent,
    )


class GrandchildProtocol(ProcessProtocol):
    """
    Watches the grandchild: closes its stdin and fires L{ended} when it is gone.

    @ivar ended: Fires with L{None} once the grandchild has exited.
    """

    log = Logger()

    def __init__(self) -> None:
        self.ended: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        """
        The grandchild reads nothing.
        """
        self.transport.closeStdin()  # type: ignore[union-attr]

    def processEnded(self, reason: Failure) -> None:
        """
        Log how it ended and fire L{ended}.
        """
        self.log.info("grandchild ended: {reason}", reason=reason.getErrorMessage())
        self.ended.callback(None)


@define(eq=False, slots=False)
class DemoProcess:
    """
    The process-level behaviours, driven by the reactor once it runs.

    @ivar exitCode: What C{main} returns once the reactor stops.
    """

    log = Logger()

    _reactor: DemoReactor
    _upstream: DemoUpstream
    _args: argparse.Namespace
    _stderr: TextIO
    _grandchild: IProcessTransport | None = field(default=None, init=False)
    _grandchildProtocol: GrandchildProtocol | None = field(default=None, init=False)
    exitCode: int = field(default=0, init=False)

    def start(self) -> None:
        """
        Set up everything that needs a running reactor.
        """
        args = self._args
        if args.fork_grandchild:
            self._spawnGrandchild()
        if args.ignore_sigterm:
            signal.signal(signal.SIGTERM, self._ignoreSigterm)
        if args.exit_during_start is not None:
            self._reactor.callLater(args.startup_delay / 2, self._failStart)
        elif args.startup_delay:
            self.log.info(
                "loading model {model} for {delay}s", model=args.model, delay=args.startup_delay
            )
            self._reactor.callLater(args.startup_delay, self._announceReady)
        else:
            self._announceReady()
        if args.crash_after is not None:
            self._reactor.callLater(args.crash_after, self._crash)

    def _announceReady(self) -> None:
        """
        Log that the simulated model load finished.
        """
        self.log.info("model {model} loaded, ready", model=self._args.model)

    def _spawnGrandchild(self) -> None:
        """
        Spawn the sleeping grandchild on our stdout/stderr and in our process group.
        """
        protocol = GrandchildProtocol()
        argv = [
            sys.executable,
            "-c",
            GRANDCHILD_SCRIPT,
            str(os.getpid()),
            repr(GRANDCHILD_ORPHAN_LINGER),
        ]
        self._grandchild = self._reactor.spawnProcess(
            protocol, sys.executable, argv, env=dict(os.environ), childFDs={0: "w", 1: 1, 2: 2}
        )
        self._grandchildProtocol = protocol
        self._upstream.grandchildPid = self._grandchild.pid
        self.log.info("spawned grandchild {pid}", pid=self._grandchild.pid)

    def _ignoreSigterm(self, signum: int, frame: FrameType | None) -> None:
        """
        The SIGTERM handler for C{--ignore-sigterm}: log (from the reactor) and carry on.
        """
        self._reactor.callFromThread(self.log.info, "ignoring SIGTERM (--ignore-sigterm)")

    def _failStart(self) -> None:
        """
        C{--exit-during-start}: complain on stderr and stop with the requested status.
        """
        model = self._args.model
        code = self._args.exit_during_start
        for line in [
            "demo: loading model '%s'" % (model,),
            "demo: error: failed to load model '%s'" % (model,),
            "demo: exiting with status %d (--exit-during-start)" % (code,),
        ]:
            self._stderr.write(line + "\n")
        self._stderr.flush()
        self.exitCode = code
        self._reactor.stop()

    def _crash(self) -> None:
        """
        C{--crash-after}: exit 1 at once, skipping all cleanup.
        """
        self._stderr.write("demo: simulated crash (--crash-after), exiting 1\n")
        self._stderr.flush()
        sys.stdout.flush()
        os._exit(1)

    def stop(self) -> Deferred[None] | None:
        """
        Before shutdown: terminate the grandchild and wait until it is gone,
        escalating to SIGKILL after L{GRANDCHILD_GRACE} seconds.

        @return: A Deferred for the shutdown to wait on, or L{None}.
        """
        transport, protocol = self._grandchild, self._grandchildProtocol
        if transport is None or protocol is None or protocol.ended.called:
            return None
        try:
            transport.signalProcess("TERM")
        except ProcessExitedAlready:
            return None

        def kill() -> None:
            try:
                transport.signalProcess("KILL")
            except ProcessExitedAlready:
                pass

        killer = self._reactor.callLater(GRANDCHILD_GRACE, kill)

        def cancelKiller(result: None) -> None:
            if killer.active():
                killer.cancel()

        return protocol.ended.addCallback(cancelKiller)


def main(argv: list[str] | None = None) -> int:
    """
    Run the demo upstream until SIGTERM/SIGINT (or a simulated failure).

    @param argv: Command-line arguments without the program name.
    @return: The process exit status.
    """
    args = parseArguments(argv)
    from twisted.internet import reactor

    upstream = DemoUpstream(optionsFromArguments(args), reactor, os.getpid())
    try:
        port = reactor.listenTCP(args.port, makeSite(upstream, reactor), interface=args.host)
    except CannotListenError as e:
        sys.stderr.write("demo: cannot listen: %s\n" % (e,))
        return 2
    host = "[%s]" % (args.host,) if ":" in args.host else args.host
    sys.stdout.write(
        "demo upstream listening on http://%s:%d\n" % (host, port.getHost().port)
    )
    sys.stdout.flush()
    # Line by line, like a real server's log: a supervisor reading the pipe
    # sees "loaded, ready" when it happens, not when a buffer fills.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    # Log events so far were buffered; starting logging only now keeps the
    # listening line first on stdout.
    observer = FilteringLogObserver(
        textFileLogObserver(sys.stdout), [LogLevelFilterPredicate(LogLevel.info)]
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)

    process = DemoProcess(reactor, upstream, args, sys.stderr)
    reactor.callWhenRunning(process.start)
    reactor.addSystemEventTrigger("before", "shutdown", process.stop)
    reactor.run()
    return process.exitCode
