# -*- test-case-name: test.web.test_guard -*-
"""
The checks every request passes before routing: the C{Host} check
(L{llamaswap.web.hostcheck}) and the configured CORS policy
(L{llamaswap.web.cors}).  Both read the current configuration at each
request, so a reload applies at once.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.web.resource import Resource
from twisted.web.server import Request

from ..config.model import Config
from ..httperrors import Forbidden
from .cors import answerPreflight, originAllowed, responseHeaders, stripCorsHeaders
from .errors import renderHTTPError
from .hostcheck import hostCheckApplies, isAllowedHost
from .mux import firstHeader

HOST_REFUSED = (
    "host not allowed: llamaswap listens on loopback without apiKeys and answers only"
    " loopback host names; add the name to security.allowedHosts"
)
ORIGIN_REFUSED = "origin not allowed by security.cors"


def onResponseStart(request: Request, hook: Callable[[Request], None]) -> None:
    """
    Call C{hook(request)} just before the response head is written
    (L{llamaswap.web.limits.LimitedRequest} runs these hooks).
    """
    hooks = getattr(request, "responseStartHooks", None)
    if hooks is None:
        hooks = request.responseStartHooks = []  # type: ignore[attr-defined]
    hooks.append(hook)


class Guard(Resource):
    """
    Wraps the root resource: refuses foreign C{Host}s and origins, applies
    the CORS policy, then lets C{inner} render.
    """

    isLeaf = True

    def __init__(
        self, inner: Resource, config: Callable[[], Config], loopbackOnly: bool
    ) -> None:
        super().__init__()
        self.inner = inner
        self.config = config
        self.loopbackOnly = loopbackOnly

    def render(self, request: Request) -> Any:
        config = self.config()
        security = config.security
        if hostCheckApplies(self.loopbackOnly, config.apiKeys) and not isAllowedHost(
            firstHeader(request, b"host"), security.allowedHosts
        ):
            return renderHTTPError(request, Forbidden(HOST_REFUSED))
        policy = security.cors
        if policy is None:
            return self.inner.render(request)
        onResponseStart(request, lambda r: stripCorsHeaders(r.responseHeaders))
        origin = firstHeader(request, b"origin")
        if origin is None:
            return self.inner.render(request)
        if not originAllowed(policy, request, origin):
            return renderHTTPError(request, Forbidden(ORIGIN_REFUSED))
        if request.method == b"OPTIONS" and firstHeader(
            request, b"access-control-request-method"
        ):
            request.responseStartHooks = []  # type: ignore[attr-defined]
            return answerPreflight(policy, request, origin)

        def addHeaders(r: Request) -> None:
            for name, value in responseHeaders(policy, origin):
                r.responseHeaders.addRawHeader(name, value)

        onResponseStart(request, addHeaders)
        return self.inner.render(request)


__all__ = ["Guard", "HOST_REFUSED", "ORIGIN_REFUSED", "onResponseStart"]
