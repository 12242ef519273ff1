# -*- test-case-name: test.web.test_grants -*-
"""
What a request may do: the L{Principal} the authenticator found.

The mux's authenticator (L{llamaswap.web.auth}) checks a route's scope
before its handler runs and attaches the principal to the request as
C{request.principal}; handlers that learn the model only later (the model
routes, once the body is read; C{/upstream/<model>}; the model list) ask
L{checkModel} / L{mayUseModel} here.  A request that never went through
the authenticator (an open route, or no keys configured) is L{ANONYMOUS}:
everything allowed, as without keys.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Iterable

from attrs import frozen

from ..config.model import ALL_SCOPES, APIKey, Config
from ..httperrors import Forbidden

#: The scopes each scope includes.
IMPLIED = {"admin": frozenset({"admin", "monitor"})}


@frozen
class Principal:
    """
    Who made a request, and what they may do.

    @ivar name: the key's name (L{None}: no keys configured).
    @ivar scopes: what the key holds (C{admin} includes C{monitor}).
    @ivar models: name patterns the key may use; L{None} for all.
    @ivar concurrencyLimit: the key's limit on requests in flight (0: none).
    @ivar viaSession: whether a UI session cookie identified the key.
    """

    name: str | None
    scopes: frozenset[str]
    models: tuple[str, ...] | None = None
    concurrencyLimit: int = 0
    viaSession: bool = False

    @classmethod
    def forKey(cls, key: APIKey, viaSession: bool = False) -> Principal:
        """
        The principal a configured key stands for.
        """
        granted: set[str] = set()
        for scope in key.scopes:
            granted |= IMPLIED.get(scope, {scope})
        return cls(key.name, frozenset(granted), key.models, key.concurrencyLimit, viaSession)

    def has(self, scope: str) -> bool:
        """
        Whether the principal holds C{scope}.
        """
        return scope in self.scopes

    def mayUse(self, names: Iterable[str]) -> bool:
        """
        Whether any of C{names} (one model's names) matches the key's
        models.
        """
        if self.models is None:
            return True
        return any(fnmatchcase(n, p) for n in names for p in self.models)


#: A request without keys to check.
ANONYMOUS = Principal(None, ALL_SCOPES)


def principalOf(request: Any) -> Principal:
    """
    The principal attached to C{request} by the authenticator, else
    L{ANONYMOUS}.
    """
    principal = getattr(request, "principal", None)
    return principal if isinstance(principal, Principal) else ANONYMOUS


def modelNames(config: Config, *names: str) -> set[str]:
    """
    Every name of the models C{names} refer to: the names themselves, the
    local model's ID and aliases, a peer model's bare and qualified names.
    """
    out = {n for n in names if n}
    for name in list(out):
        real = config.realModelName(name)
        if real is not None:
            out.add(real)
            out.update(a for a, target in config.aliases.items() if target == real)
        peer = config.resolvePeerModel(name)
        if peer is not None:
            peerID, modelID = peer
            out.update((modelID, config.peers[peerID].fqn(modelID)))
    return out


def mayUseModel(request: Any, config: Config, *names: str) -> bool:
    """
    Whether C{request}'s principal may use the model C{names} name.
    """
    principal = principalOf(request)
    if principal.models is None:
        return True
    return principal.mayUse(modelNames(config, *names))


def checkModel(request: Any, config: Config, name: str, *more: str) -> None:
    """
    Raise L{Forbidden} unless C{request}'s principal may use the model
    C{name} (C{more}: the names it was routed through).
    """
    if not mayUseModel(request, config, name, *more):
        raise modelForbidden(name)


def modelForbidden(name: str) -> Forbidden:
    """
    The 403 for a key not allowed to use the model C{name}.
    """
    return Forbidden(f"forbidden: this API key may not use model {name}", code="forbidden")


def missingScope(scope: str) -> Forbidden:
    """
    The 403 for a key without C{scope}.
    """
    return Forbidden(
        f"forbidden: this API key lacks the {scope!r} scope", code="forbidden"
    )


__all__ = [
    "ANONYMOUS",
    "Principal",
    "checkModel",
    "mayUseModel",
    "missingScope",
    "modelForbidden",
    "modelNames",
    "principalOf",
]
