# -*- test-case-name: test.test_tap -*-
"""
C{twistd llamaswap}: command-line options and service wiring.

L{makeService} only builds objects: twistd calls it before logging starts,
before daemonizing and before the reactor runs, so nothing here spawns a
process or opens a socket.  Work is scheduled by the services' own
C{startService}.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

from twisted.application.service import IService, Service
from twisted.python import usage

from . import __version__
from .config.errors import ConfigError
from .config.load import LoadedConfig, loadConfig
from .listen import (
    DEFAULT_LISTEN,
    DEFAULT_TLS_LISTEN,
    ListenError,
    hostBacklog,
    parseListen,
    withBacklog,
)
from .tlsgate import needsTLS, withoutTLS

#: Microseconds of polling before the reactor sleeps (L{llamaswap.idlespin}):
#: by default, and at most.
DEFAULT_IDLE_SPIN = 200.0
MAX_IDLE_SPIN = 10_000.0

#: Allocations (less deallocations) between collections of the youngest
#: generation, once started (see L{StartupFreeze}).
YOUNG_GENERATION = 20_000


class Options(usage.Options):
    """
    Options of C{twistd llamaswap} and of the C{llamaswap} console script.
    """

    synopsis = (
        "[--config FILE] [--config-dir DIR] [--models-dir DIR] [--listen ADDRESS] [options]"
    )

    optParameters = [
        ["config", "c", None, "Configuration file (YAML)."],
        [
            "config-dir",
            None,
            None,
            "Directory of additional *.yml/*.yaml files merged after --config.",
        ],
        [
            "models-dir",
            None,
            None,
            "Serve every *.gguf under DIR as a model (no configuration needed; "
            "replaces modelsDir's path).",
        ],
        [
            "listen",
            "l",
            None,
            "Address to listen on: HOST:PORT, :PORT for every interface, or a "
            "Twisted endpoint description (tcp:..., unix:..., systemd:...). "
            f"Default {DEFAULT_LISTEN} ({DEFAULT_TLS_LISTEN} with TLS).",
        ],
        ["tls-cert-file", None, None, "TLS certificate (PEM); needs --tls-key-file."],
        ["tls-key-file", None, None, "TLS private key (PEM); needs --tls-cert-file."],
        [
            "shutdown-timeout",
            None,
            30.0,
            "Seconds requests in flight may take to finish on SIGTERM/SIGINT "
            "before the upstreams are stopped.",
            float,
        ],
        [
            "idle-spin",
            None,
            DEFAULT_IDLE_SPIN,
            "Microseconds the reactor keeps polling before it sleeps (adaptive, "
            "at most this; 0: never), so that a reply arriving just after the "
            "proxy ran out of work needs no wake-up.",
            float,
        ],
    ]

    optFlags = [
        ["watch-config", "w", "Reload the configuration when its files change."],
        [
            "validate",
            None,
            "Check the configuration, print the result (like check-config) and "
            "exit: 0 if it loads, 1 if not.",
        ],
    ]

    def opt_version(self) -> None:
        """
        Print the version and exit.
        """
        print(f"llamaswap version: {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        """
        Check option combinations and make paths absolute (twistd may
        C{chdir} after this).
        """
        if not self["config"] and not self["config-dir"] and not self["models-dir"]:
            raise usage.UsageError(
                "at least one of --config, --config-dir or --models-dir must be provided"
            )
        for key in ("config", "config-dir", "models-dir", "tls-cert-file", "tls-key-file"):
            if self[key]:
                self[key] = os.path.abspath(self[key])
        if self["validate"]:
            from .cli import checkConfig

            args = [self["config"]] if self["config"] else []
            if self["config-dir"]:
                args += ["--config-dir", self["config-dir"]]
            raise SystemExit(checkConfig(args, sys.stdout, sys.stderr))
        cert, key = self["tls-cert-file"], self["tls-key-file"]
        if bool(cert) != bool(key):
            raise usage.UsageError(
                "both --tls-cert-file and --tls-key-file must be provided for TLS"
            )
        if self["shutdown-timeout"] < 0:
            raise usage.UsageError("--shutdown-timeout must not be negative")
        if not 0 <= self["idle-spin"] <= MAX_IDLE_SPIN:
            raise usage.UsageError(
                f"--idle-spin must be between 0 and {MAX_IDLE_SPIN:g} microseconds"
            )
        listen = self["listen"] or (DEFAULT_TLS_LISTEN if cert else DEFAULT_LISTEN)
        try:
            self["listenAddress"] = parseListen(listen, cert, key)
        except ListenError as e:
            raise usage.UsageError(str(e))


def loadOrExit(options: Options) -> LoadedConfig:
    """
    Load the configuration named by C{options}, or print every problem and
    exit with status 1 (no traceback: a config error is the user's to fix).
    """
    try:
        loaded = loadConfig(
            options["config"], options["config-dir"], modelsDir=options["models-dir"]
        )
    except ConfigError as e:
        print("llamaswap: failed to load config:", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(1)
    for warning in loaded.warnings:
        print(f"llamaswap: {warning}", file=sys.stderr)
    return loaded


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    Wire the configured llamaswap service: upstreams, routing, HTTP.
    """
    loaded = loadOrExit(options)
    config = loaded.config
    upstreams = [m.proxy for m in config.models.values()]
    upstreams += [p.proxy for p in config.peers.values()]
    if not needsTLS(options["listenAddress"].endpoint, upstreams):
        # Before anything imports Twisted's networking (see tlsgate).
        withoutTLS()
    if reactor is None:
        from twisted.internet import reactor
    from twisted.application import strports

    from .app import LlamaSwap
    from .drain import RequestTracker
    from .idlespin import IdleSpin
    from .modelswatch import watchedModelsFolder
    from .reload import reloadTriggers
    from .shutdown import DrainService, GracefulExit, OrderedShutdown

    # Stopped last added first: signals, listener, drain, then upstreams.
    root = OrderedShutdown()
    app = LlamaSwap(
        loaded.config,
        reactor,
        configPaths=(options["config"], options["config-dir"]),
        listen=options["listenAddress"],
        startOnlyFiles={k: options[k] for k in ("tls-cert-file", "tls-key-file")},
        modelsDir=options["models-dir"],
    )
    app.setServiceParent(root)
    tracker = RequestTracker(reactor)
    DrainService(tracker, options["shutdown-timeout"]).setServiceParent(root)
    site = tracker.watch(app.site())
    endpoint = withBacklog(options["listenAddress"].endpoint, hostBacklog())
    listener = strports.service(endpoint, site)
    listener.setServiceParent(root)
    GracefulExit(reactor).setServiceParent(root)
    # Added last, stopped first: no reload once a shutdown has begun.
    for trigger in reloadTriggers(
        app.reloader,
        reactor,
        options["config"],
        options["config-dir"],
        options["watch-config"],
        modelsFolder=lambda: watchedModelsFolder(app.configHolder.value),
    ):
        trigger.setServiceParent(root)
    IdleSpin(reactor, options["idle-spin"] / 1e6).setServiceParent(root)
    StartupFreeze().setServiceParent(root)
    return root


class StartupFreeze(Service):
    """
    Started last: moves everything built at start-up (modules, the
    configuration, routes: tens of thousands of objects that live as long
    as the process) out of the garbage collector's sight, once per process,
    so that a full collection no longer walks them (about 12 ms each time
    on the development VM, landing on whichever request or swap is
    running).  Garbage among them is still freed by reference counting;
    only reference cycles made at start-up and dropped later would stay.

    It also lets the youngest generation grow to L{YOUNG_GENERATION}
    objects before a collection: a relayed request allocates a few
    thousand, nearly all freed by reference counting, and Python's
    default (700) collected several times per request, about 6 % of the
    proxy's CPU under load.  Cycles wait a little longer to be freed.
    """

    frozen = False

    def startService(self) -> None:
        super().startService()
        if not StartupFreeze.frozen:
            StartupFreeze.frozen = True
            gc.collect()
            gc.freeze()
            gc.set_threshold(YOUNG_GENERATION, *gc.get_threshold()[1:])
