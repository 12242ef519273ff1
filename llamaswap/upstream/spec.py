# -*- test-case-name: test.upstream.test_supervisor -*-
"""
L{UpstreamSpec}: what the supervisor needs to know about one model,
decoupled from the configuration classes.
"""

from __future__ import annotations

from typing import Sequence

from attrs import field, frozen

from ..config.redact import redactArgv


def _endpoint(value: str | None) -> str | None:
    """
    C{None}, blank and C{none} (any case) all mean "no health check".
    """
    if value is None or value.strip().lower() in ("", "none"):
        return None
    return value.strip()


def _optionalText(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return value


def _envEntry(instance: object, attribute: object, value: tuple[str, ...]) -> None:
    for entry in value:
        name, sep, _ = entry.partition("=")
        if not sep or not name:
            raise ValueError(f"environment entry {entry!r} is not NAME=value")


def _nonEmpty(instance: object, attribute: object, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError("argv must not be empty")


def _nonNegative(instance: object, attribute: object, value: float) -> None:
    if value < 0:
        raise ValueError(f"{getattr(attribute, 'name', 'value')} must be >= 0, not {value}")


def _positive(instance: object, attribute: object, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{getattr(attribute, 'name', 'value')} must be > 0, not {value}")


@frozen
class UpstreamSpec:
    """
    One upstream to supervise.

    @ivar modelID: the model's ID (used in errors, events and logs).
    @ivar argv: the command, already lexed (L{llamaswap.config.cmdline}).
    @ivar proxy: the upstream's base URL, e.g. C{http://127.0.0.1:5800}.
    @ivar env: C{NAME=value} entries added to llamaswap's own environment.
    @ivar checkEndpoint: the health path, or C{None} for C{none} (ready as
        soon as it is spawned).
    @ivar healthCheckTimeout: seconds from spawn to a healthy probe.
    @ivar unloadTimeout: grace seconds between the graceful stop and
        C{SIGKILL} (TTL unloads and stops without an explicit timeout).
    @ivar ttl: idle seconds before the upstream is unloaded; C{0} = never.
    @ivar cmdStop: a command template run instead of C{SIGTERM};
        C{${PID}} is replaced by the child's PID, then it is lexed like
        C{cmd}.
    @ivar cwd: the working directory, or C{None} for llamaswap's.
    @ivar probeTimeout: seconds one health probe may take.
    @ivar secrets: values to mask wherever the command is shown (those
        from C{${env.NAME}}); secret-looking flags are masked anyway.
    """

    modelID: str
    argv: tuple[str, ...] = field(converter=tuple, validator=_nonEmpty)
    proxy: str
    env: tuple[str, ...] = field(default=(), converter=tuple, validator=_envEntry)
    checkEndpoint: str | None = field(default="/health", converter=_endpoint)
    healthCheckTimeout: float = field(default=120.0, validator=_positive)
    unloadTimeout: float = field(default=10.0, validator=_nonNegative)
    ttl: float = field(default=0.0, validator=_nonNegative)
    cmdStop: str | None = field(default=None, converter=_optionalText)
    cwd: str | None = None
    probeTimeout: float = field(default=5.0, validator=_positive)
    secrets: frozenset[str] = field(default=frozenset(), converter=frozenset)

    def shownArgv(self, argv: Sequence[str] | None = None) -> str:
        """
        C{argv} (default the command) as logs show it: secrets masked.
        """
        return " ".join(redactArgv(self.argv if argv is None else argv, self.secrets))
