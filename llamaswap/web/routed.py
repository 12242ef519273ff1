"""
The collaborators every handler that routes a request to a local model or
to a peer takes (L{llamaswap.web.inference.ModelRoute} and
L{llamaswap.web.passthrough.Passthrough}), declared once.
"""

from __future__ import annotations

from attrs import define

from ..config.model import Config
from ..holder import Holder
from ..observe.tracking import Tracker
from ..routing.router import Router
from .forward import Forwarder
from .peers import PeerRouter


@define(kw_only=True, slots=False, eq=False)
class RoutedHandler:
    """
    A handler that serves a request from a local model or a peer.

    @ivar config: the current configuration.
    @ivar activeProfile: the runtime profile whose pins apply.
    @ivar router: resolves local model names and grants leases (a
        L{llamaswap.routing.router.Router}).
    @ivar forwarder: relays to local models.
    @ivar peers: resolves and relays to peer models.
    @ivar tracker: tracks every (local) request.
    """

    config: Holder[Config]
    activeProfile: Holder[str | None]
    router: Router
    forwarder: Forwarder
    peers: PeerRouter
    tracker: Tracker
