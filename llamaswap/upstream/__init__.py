"""
One supervised upstream process per model.

 - L{lifecycle}: the pure state machine (no reactor, no I/O).
 - L{process}: the C{ProcessProtocol} shell, spawning through L{_launcher}
   (own session, parent-death signal, a subreaper keeper that kills the
   whole tree).
 - L{health}: readiness probing with back-off and per-probe timeouts.
 - L{supervisor}: L{Supervisor}, binding the three plus the TTL.
 - L{leftovers}: the runtime state file and reaping of leftover upstreams.
"""

from .errors import (
    HealthCheckTimedOut,
    PrematureExit,
    SpawnError,
    StartAbortedError,
    StartFailed,
    UpstreamError,
    UpstreamShutdown,
)
from .lifecycle import State
from .spec import UpstreamSpec
from .supervisor import Supervisor

__all__ = [
    "HealthCheckTimedOut",
    "PrematureExit",
    "SpawnError",
    "StartAbortedError",
    "StartFailed",
    "State",
    "Supervisor",
    "UpstreamError",
    "UpstreamShutdown",
    "UpstreamSpec",
]
