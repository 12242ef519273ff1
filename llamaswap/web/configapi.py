# -*- test-case-name: test.web.test_configapi -*-
"""
The configuration routes of the UI's Config page:

 - C{GET /api/config}: the effective (running) configuration as JSON with
   its secrets redacted (L{redactedConfig}), the files it comes from, the
   problems of the files on disk now (empty when they would load) and the
   summary of the last reload.
 - C{POST /api/config/reload}: reload now; 200 with the reload summary,
   422 with an C{invalid_config} error envelope listing every problem (the
   running configuration is unchanged).
"""

from __future__ import annotations

import enum
import re
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from ..compat import isDisconnected
from ..config.model import Config
from ..holder import Holder
from ..reload import ReloadResult, httpAnswer
from .errors import writeFailure
from .management import jsonBody
from .mux import Mux

#: What replaces a secret.
REDACTED = "***"

#: Command-line flags whose value is a secret (C{--api-key X} or
#: C{--api-key=X}).
_SECRET_FLAG = re.compile(
    r"(?P<flag>--?[\w-]*(?:api[-_]?key|token|secret|password)[\w-]*)(?P<sep>[= ]+)(?P<value>\S+)",
    re.IGNORECASE,
)


def redactCommand(cmd: str) -> str:
    """
    C{cmd} with the values of secret-looking flags replaced.
    """
    return _SECRET_FLAG.sub(lambda m: f"{m['flag']}{m['sep']}{REDACTED}", cmd)


def _plain(value: Any) -> Any:
    if attrs.has(type(value)):
        return {a.name: _plain(getattr(value, a.name)) for a in attrs.fields(type(value))}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, re.Pattern):
        return value.pattern
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def redactedConfig(config: Config) -> dict[str, Any]:
    """
    C{config} as plain JSON data, secrets replaced by L{REDACTED}: API
    keys (llamaswap's and the peers'), the session secret, environment
    values and secret
    command-line flags (C{cmd}, C{cmdStop}).
    """
    data = _plain(config)
    data["apiKeys"] = [REDACTED for _ in data.get("apiKeys", ())]
    auth = data.get("auth")
    if isinstance(auth, dict) and auth.get("sessionSecret"):
        auth["sessionSecret"] = REDACTED
    for model in data.get("models", {}).values():
        model["env"] = [entry.partition("=")[0] + "=" + REDACTED for entry in model.get("env", ())]
        for key in ("cmd", "cmdStop"):
            if isinstance(model.get(key), str):
                model[key] = redactCommand(model[key])
    for peer in data.get("peers", {}).values():
        if isinstance(peer, dict) and peer.get("apiKey"):
            peer["apiKey"] = REDACTED
    return data


class ReloaderLike(Protocol):
    """
    What the routes use of a L{llamaswap.reload.Reloader}.
    """

    lastResult: ReloadResult | None

    def reload(self, trigger: str = "api") -> Deferred[ReloadResult]: ...

    def check(self) -> tuple[str, ...]: ...


@attrs.frozen
class ConfigRoutes:
    """
    The handlers of the configuration routes.

    @ivar config: the running configuration.
    @ivar reloader: reloads and checks the files.
    @ivar paths: C{--config} and C{--config-dir}.
    """

    config: Holder[Config]
    reloader: ReloaderLike
    paths: tuple[str | None, str | None] = (None, None)

    def show(self, request: Request, rest: bytes) -> bytes:
        """
        C{GET /api/config}.
        """
        last = self.reloader.lastResult
        configPath, configDir = self.paths
        return jsonBody(
            request,
            {
                "config": redactedConfig(self.config.value),
                "path": configPath,
                "dir": configDir,
                "errors": list(self.reloader.check()),
                "lastReload": last.summary() if last is not None else None,
            },
        )

    def reload(self, request: Request, rest: bytes) -> int:
        """
        C{POST /api/config/reload}: answered once the reload is applied.
        """
        d = self.reloader.reload("api")

        def answer(result: ReloadResult) -> None:
            if isDisconnected(request) or request.finished:
                return
            status, body = httpAnswer(result)
            data = jsonBody(request, body, status)
            request.setHeader(b"content-length", b"%d" % (len(data),))
            request.write(data)
            request.finish()

        def failed(failure: Failure) -> None:
            writeFailure(request, failure)

        d.addCallbacks(answer, failed)
        return NOT_DONE_YET


def install(mux: Mux, routes: ConfigRoutes) -> None:
    """
    Register the configuration routes.
    """
    mux.route("GET", "/api/config", routes.show)
    mux.route("POST", "/api/config/reload", routes.reload)


__all__ = ["ConfigRoutes", "REDACTED", "install", "redactCommand", "redactedConfig"]

