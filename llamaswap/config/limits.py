# -*- test-case-name: test.config.test_limits -*-
"""
The C{limits} and C{security} sections: what a client may cost llamaswap,
and which browsers and host names it answers.

Both are llamaswap's own (llama-swap has no such keys).  Each section is
decoded by one self-contained function taking the section being decoded
(anything with the small reader interface of
L{llamaswap.config.sections.Section}) so that it can live beside the
other section decoders.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from attrs import frozen

from .keys import CORS_KEYS, LIMITS_KEYS, SECURITY_KEYS

#: Largest request body, in bytes (256 MiB: the largest audio upload seen).
DEFAULT_MAX_BODY_BYTES = 256 * 1024 * 1024

DEFAULT_CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@frozen
class LimitsConfig:
    """
    Bounds on what one client can make llamaswap hold.

    @ivar maxRequestBodyBytes: the largest request body; a larger declared
        C{Content-Length} is refused (413) before the body is read, a
        chunked body when it reaches the limit.
    @ivar maxConnections: client connections served at once; more are
        answered 503 and closed.
    @ivar headerTimeout: seconds a client may take to send a complete
        request head, counted from connecting or from the end of its
        previous response (so it also bounds an idle keep-alive
        connection); then 408 and closed.
    @ivar bodyTimeout: seconds a request body may go without a byte
        arriving; then 408 and closed.
    @ivar upstreamIdleTimeout: seconds a relay may go without a byte from
        the upstream before it is cut (504, or an error event when the
        response had started); a model's C{timeouts.idle} overrides it.
        0 disables.
    """

    maxRequestBodyBytes: int = DEFAULT_MAX_BODY_BYTES
    maxConnections: int = 1024
    headerTimeout: int = 60
    bodyTimeout: int = 60
    upstreamIdleTimeout: int = 600


@frozen
class CorsConfig:
    """
    The CORS policy (C{security.cors}); L{None} on L{SecurityConfig} means
    llama-swap's default (any origin on preflights, C{/v1/models} echoes
    the origin).

    @ivar allowedOrigins: origins allowed (exact, or C{"*"} for any).
    """

    allowedOrigins: tuple[str, ...] = ("*",)
    allowCredentials: bool = False
    allowedMethods: tuple[str, ...] = DEFAULT_CORS_METHODS
    allowedHeaders: tuple[str, ...] = ()
    exposedHeaders: tuple[str, ...] = ()
    maxAge: int = 86400
    allowPrivateNetwork: bool = False

    def allows(self, origin: str) -> bool:
        """
        Whether C{origin} may make cross-origin requests.
        """
        return "*" in self.allowedOrigins or origin in self.allowedOrigins


@frozen
class SecurityConfig:
    """
    @ivar cors: the configured CORS policy, or L{None} for the default.
    @ivar allowedHosts: host names accepted in C{Host} (besides loopback
        names) when llamaswap listens on loopback only without API keys;
        C{"*"} turns the check off.
    """

    cors: CorsConfig | None = None
    allowedHosts: tuple[str, ...] = ()


class Section(Protocol):
    """
    What the decoders read a section with (L{llamaswap.config.sections.Section}).
    """

    def has(self, key: str) -> bool: ...

    def integer(self, key: str, default: int) -> int: ...

    def boolean(self, key: str, default: bool) -> bool: ...

    def strings(self, key: str, default: Sequence[str] = ()) -> tuple[str, ...]: ...

    def section(self, key: str, known: frozenset[str] | None) -> Any: ...

    def at(self, key: Any) -> Any: ...


def decodeLimits(section: Section, error: Any) -> LimitsConfig:
    """
    The C{limits} section.

    @param error: called with C{(message, path)} for each problem.
    """
    defaults = LimitsConfig()
    values = {}
    for key, minimum in (
        ("maxRequestBodyBytes", 1),
        ("maxConnections", 1),
        ("headerTimeout", 1),
        ("bodyTimeout", 1),
        ("upstreamIdleTimeout", 0),
    ):
        value = section.integer(key, getattr(defaults, key))
        if value < minimum:
            error(f"limits.{key} must be >= {minimum}", section.at(key))
            value = getattr(defaults, key)
        values[key] = value
    return LimitsConfig(**values)


def idleOverride(value: int) -> int | None:
    """
    A model's or peer's C{timeouts.idle} as read with default -1: L{None}
    when absent (the global limit applies).
    """
    return None if value < 0 else value


def idleTimeoutFor(idle: int | None, limits: LimitsConfig) -> float | None:
    """
    The upstream idle timeout of a model or peer whose C{timeouts.idle} is
    C{idle}: its own, else the global C{limits.upstreamIdleTimeout}; L{None}
    when that is 0 (never).
    """
    seconds = limits.upstreamIdleTimeout if idle is None else idle
    return float(seconds) if seconds > 0 else None


def decodeSecurity(section: Section, error: Any) -> SecurityConfig:
    """
    The C{security} section.

    @param error: called with C{(message, path)} for each problem.
    """
    cors = None
    if section.has("cors"):
        c = section.section("cors", CORS_KEYS)
        cors = CorsConfig(
            allowedOrigins=c.strings("allowedOrigins", ("*",)),
            allowCredentials=c.boolean("allowCredentials", False),
            allowedMethods=tuple(
                m.upper() for m in c.strings("allowedMethods", DEFAULT_CORS_METHODS)
            ),
            allowedHeaders=c.strings("allowedHeaders"),
            exposedHeaders=c.strings("exposedHeaders"),
            maxAge=c.integer("maxAge", 86400),
            allowPrivateNetwork=c.boolean("allowPrivateNetwork", False),
        )
        if cors.allowPrivateNetwork and "*" in cors.allowedOrigins:
            error(
                "security.cors.allowPrivateNetwork cannot be combined with"
                ' allowedOrigins ["*"]: any page in any open tab could drive'
                " llamaswap on your own network",
                c.at("allowPrivateNetwork"),
            )
        if cors.allowCredentials and "*" in cors.allowedOrigins:
            error(
                "security.cors.allowCredentials cannot be combined with"
                ' allowedOrigins ["*"]',
                c.at("allowCredentials"),
            )
    hosts = tuple(h.strip().lower() for h in section.strings("allowedHosts") if h.strip())
    return SecurityConfig(cors=cors, allowedHosts=hosts)


__all__ = [
    "CORS_KEYS",
    "DEFAULT_MAX_BODY_BYTES",
    "LIMITS_KEYS",
    "SECURITY_KEYS",
    "CorsConfig",
    "LimitsConfig",
    "SecurityConfig",
    "decodeLimits",
    "decodeSecurity",
    "idleOverride",
    "idleTimeoutFor",
]
