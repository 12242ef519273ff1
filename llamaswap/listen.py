# -*- test-case-name: test.test_listen -*-
"""
Turn llama-swap style C{--listen} addresses into Twisted endpoint strings.

C{--listen} accepts what llama-swap accepts (C{HOST:PORT}, C{:PORT} for
every interface, C{[::1]:PORT}) and, for Twisted users, any server endpoint
description (C{tcp:...}, C{unix:/run/llamaswap.sock},
C{systemd:domain=INET:index=0}).
"""

from __future__ import annotations

import ipaddress

from attrs import frozen

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_TLS_LISTEN = "127.0.0.1:8443"

_ENDPOINT_PREFIXES = ("tcp:", "tcp6:", "unix:", "ssl:", "systemd:", "le:", "lets:")


class ListenError(ValueError):
    """
    The C{--listen} value is not an address we can listen on.
    """


@frozen
class ListenAddress:
    """
    A parsed C{--listen} value.

    @ivar endpoint: the Twisted server endpoint description.
    @ivar host: the interface, C{""} for every interface, or L{None} when
        the user gave an endpoint description.
    @ivar port: the TCP port, or L{None} for a non-TCP endpoint.
    """

    endpoint: str
    host: str | None
    port: int | None

    @property
    def isLoopbackOnly(self) -> bool:
        """
        Whether only this machine can connect.
        """
        if self.host is None:
            return not self.endpoint.startswith(("tcp", "ssl"))
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def url(self) -> str | None:
        """
        A URL a local client can use, when one is known.
        """
        if self.port is None or self.host is None:
            return None
        scheme = "https" if self.endpoint.startswith("ssl") else "http"
        host = self.host or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"


#: The listen backlog when the host's C{somaxconn} cannot be read.
DEFAULT_BACKLOG = 1024
SOMAXCONN = "/proc/sys/net/core/somaxconn"


def hostBacklog(path: str = SOMAXCONN) -> int:
    """
    The largest listen backlog the host allows (its C{somaxconn}, at most
    65535), else L{DEFAULT_BACKLOG}; Twisted's own default is 50, which
    drops connections as soon as a burst of clients arrives during a swap.
    """
    try:
        with open(path) as f:
            value = int(f.read().strip())
    except (OSError, ValueError):
        return DEFAULT_BACKLOG
    return max(1, min(value, 65535)) if value > 0 else DEFAULT_BACKLOG


def withBacklog(endpoint: str, backlog: int) -> str:
    """
    C{endpoint} (a server endpoint description) listening with C{backlog},
    unless it is not TCP/TLS or already names one.
    """
    kind = endpoint.split(":", 1)[0]
    if kind not in ("tcp", "tcp6", "ssl") or "backlog=" in endpoint:
        return endpoint
    return f"{endpoint}:backlog={backlog}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def parseListen(
    value: str,
    tlsCertFile: str | None = None,
    tlsKeyFile: str | None = None,
) -> ListenAddress:
    """
    Parse a C{--listen} value; with TLS files, listen with TLS.

    @raise ListenError: for anything that is neither C{HOST:PORT} nor an
        endpoint description.
    """
    value = value.strip()
    if value.startswith(_ENDPOINT_PREFIXES):
        return ListenAddress(value, None, None)
    if value.startswith("["):
        close = value.find("]")
        if close < 0 or value[close + 1 : close + 2] != ":":
            raise ListenError(f"invalid listen address {value!r}: expected [HOST]:PORT")
        host, portText = value[1:close], value[close + 2 :]
    else:
        host, sep, portText = value.rpartition(":")
        if not sep:
            raise ListenError(
                f"invalid listen address {value!r}: expected HOST:PORT or :PORT"
            )
    try:
        port = int(portText)
    except ValueError:
        raise ListenError(f"invalid listen address {value!r}: port must be a number")
    if not 0 <= port <= 65535:
        raise ListenError(f"invalid listen address {value!r}: port out of range")
    interface = "127.0.0.1" if host == "localhost" else host
    isV6 = ":" in interface
    if tlsCertFile and tlsKeyFile:
        parts = [
            "ssl",
            str(port),
            f"privateKey={_escape(tlsKeyFile)}",
            f"certKey={_escape(tlsCertFile)}",
        ]
    else:
        parts = ["tcp6" if isV6 else "tcp", str(port)]
    if interface:
        parts.append(f"interface={_escape(interface)}")
    return ListenAddress(":".join(parts), host, port)
