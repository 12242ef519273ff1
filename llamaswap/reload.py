# -*- test-case-name: test.test_reload -*-
"""
The reload driver: load the configuration files again, compare, apply.

Whatever triggered it (a file change, SIGHUP, C{POST /api/config/reload}),
a reload is the same few steps, one at a time:

 1. load the sources again, with the C{${PORT}} of every model of the
    running configuration pinned (L{llamaswap.config.diff.pinnedPorts});
 2. on a configuration error: change nothing, log every problem and
    report them (C{file:line: key path: message});
 3. otherwise diff the running configuration against the new one
    (L{llamaswap.config.diff.diffConfigs}), add the files that are only
    read at start (TLS certificate and key) whose content changed, and
    hand both to C{apply} -- the app's step that makes the new
    configuration current and starts, stops or keeps upstreams;
 4. log one line with the summary and report it.

Loading is synchronous and fast (milliseconds), so it runs in the reactor
thread; C{apply} may return a L{Deferred}, and the next reload waits for it.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any, Callable, Iterable, Mapping

from attrs import define, field, frozen
from twisted.application.service import IService
from twisted.internet.defer import Deferred, DeferredLock, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from .config.diff import ConfigDiff, diffConfigs, pinnedPorts
from .config.errors import ConfigError
from .config.load import LoadedConfig, loadConfig
from .config.model import Config
from .httperrors import envelope
from .modelswatch import FolderSource, ModelsWatcher
from .reloadsignal import ReloadSignalService
from .watch import ConfigWatcher

Loader = Callable[[Mapping[str, int]], LoadedConfig]
Apply = Callable[[Config, ConfigDiff], Any]


def fileLoader(
    configPath: str | None, configDir: str | None, modelsDir: str | None = None
) -> Loader:
    """
    A loader reading C{--config} and C{--config-dir} again on every call,
    and discovering the models of C{--models-dir} again (as the start does).
    """

    def load(reservedPorts: Mapping[str, int]) -> LoadedConfig:
        return loadConfig(
            configPath, configDir, reservedPorts=reservedPorts, modelsDir=modelsDir
        )

    return load


def fileDigest(path: str) -> str | None:
    """
    The SHA-256 of a file's content, or L{None} if it cannot be read.
    """
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


@frozen
class ReloadResult:
    """
    The outcome of one reload.

    @ivar trigger: what asked for it (C{"sighup"}, C{"watch"}, C{"api"},
        C{"models-dir"}).
    @ivar config: the configuration now current (the old one on failure).
    @ivar diff: what changed; L{None} when the reload failed.
    @ivar errors: C{file:line: key path: message} of each problem that
        stopped the reload; empty on success.
    @ivar warnings: the new configuration's warnings.
    """

    trigger: str
    config: Config
    diff: ConfigDiff | None = None
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """
        Whether the new configuration was applied.
        """
        return self.diff is not None and not self.errors

    def summary(self) -> dict[str, Any]:
        """
        Plain JSON data for the log, C{/api/events} and the reload
        endpoint (200 with this when L{ok}, else 422).
        """
        data: dict[str, Any] = {"ok": self.ok, "trigger": self.trigger}
        if self.diff is not None:
            data.update(self.diff.summary())
        data["errors"] = list(self.errors)
        data["warnings"] = list(self.warnings)
        return data

    def describe(self) -> str:
        """
        One line for the log.
        """
        if self.ok:
            assert self.diff is not None
            return f"configuration reloaded ({self.trigger}): {self.diff.describe()}"
        return (
            f"configuration reload ({self.trigger}) failed, the running configuration "
            f"is unchanged: {len(self.errors)} error(s)"
        )


#: The status of a reload the configuration's errors refused.
UNPROCESSABLE = 422


def httpAnswer(result: ReloadResult) -> tuple[int, dict[str, Any]]:
    """
    The answer of C{POST /api/config/reload}: 200 with the summary, or 422
    with an error envelope (C{code} C{invalid_config}) whose message lists
    every error, plus the same summary under C{reload}.
    """
    if result.ok:
        return 200, result.summary()
    message = "configuration not reloaded: " + "; ".join(result.errors)
    body = envelope(UNPROCESSABLE, message, "invalid_config")
    body["reload"] = result.summary()
    return UNPROCESSABLE, body


def _noop(result: ReloadResult) -> None:
    pass


def _startOnlyDigests(
    files: Mapping[str, str | None] | None,
) -> dict[str, tuple[str, str | None]]:
    """
    Each start-only file (option name to path) with the digest of its
    content now, to tell later whether it changed.
    """
    return {name: (path, fileDigest(path)) for name, path in (files or {}).items() if path}


@define(eq=False, slots=False)
class Reloader:
    """
    Reloads the configuration on demand, one reload at a time.

    @ivar load: loads the configuration with the given ports pinned;
        raises L{ConfigError} (see L{fileLoader}).
    @ivar current: returns the running configuration (e.g. a
        L{llamaswap.holder.Holder}'s C{value}).
    @ivar apply: makes C{(newConfig, diff)} current; may return a
        L{Deferred}.  An exception (or failure) is reported as a
        failed reload.
    @ivar onReloaded: told each successful L{ReloadResult}.
    @ivar onReloadFailed: told each failed L{ReloadResult}.
    @ivar startOnlyFiles: option name to a file read only at start
        (C{{"tls-cert-file": path}}); a change of its content is
        reported under C{needsRestart}.
    @ivar reservedPorts: the ports to pin, from the running
        configuration (the app may add those of upstreams still
        draining).
    @ivar lastResult: the outcome of the latest reload, if any.
    """

    log = Logger()

    _load: Loader
    _current: Callable[[], Config]
    _apply: Apply
    _onReloaded: Callable[[ReloadResult], None] = _noop
    _onReloadFailed: Callable[[ReloadResult], None] = _noop
    _startOnly: dict[str, tuple[str, str | None]] = field(
        alias="startOnlyFiles", default=None, converter=_startOnlyDigests
    )
    _reservedPorts: Callable[[Config], Mapping[str, int]] = pinnedPorts
    _lock: DeferredLock = field(factory=DeferredLock, init=False)
    _next: list[Deferred[ReloadResult]] | None = field(default=None, init=False)
    lastResult: ReloadResult | None = field(default=None, init=False)

    def reload(self, trigger: str = "api") -> Deferred[ReloadResult]:
        """
        Reload now, or after the reload in progress.  Triggers arriving
        while one reload runs share the single reload that follows it (it
        reads the files after all of them), so a burst never queues more
        than one.

        @return: fires with the L{ReloadResult}; never fails.
        """
        waiter: Deferred[ReloadResult] = Deferred()
        if self._next is not None:
            self._next.append(waiter)
            return waiter
        waiters = self._next = [waiter]

        def run() -> Deferred[ReloadResult]:
            self._next = None
            return self._reloadOnce(trigger)

        def deliver(result: ReloadResult) -> None:
            for each in waiters:
                each.callback(result)

        self._lock.run(run).addCallback(deliver)
        return waiter

    def check(self) -> tuple[str, ...]:
        """
        The problems of the configuration files as they are on disk now
        (C{file:line: key path: message}), empty if they would load;
        nothing is applied.
        """
        try:
            self._load(self._reservedPorts(self._current()))
        except ConfigError as e:
            return tuple(str(p) for p in e.errors)
        except Exception as e:
            return (f"loading failed: {e}",)
        return ()

    def _reloadOnce(self, trigger: str) -> Deferred[ReloadResult]:
        old = self._current()
        try:
            loaded = self._load(self._reservedPorts(old))
        except ConfigError as e:
            errors = tuple(str(p) for p in e.errors)
            warnings = tuple(str(p) for p in e.problems if p.warning)
            return succeed(self._finish(ReloadResult(trigger, old, None, errors, warnings)))
        except Exception:
            self.log.failure("loading the configuration failed")
            failure = Failure()
            return succeed(
                self._finish(
                    ReloadResult(trigger, old, None, (f"loading failed: {failure.value}",))
                )
            )
        diff = diffConfigs(old, loaded.config).withNeedsRestart(self._changedStartOnlyFiles())
        warnings = tuple(str(p) for p in loaded.warnings)
        d = maybeDeferred(self._apply, loaded.config, diff)

        def applied(_: object) -> ReloadResult:
            return self._finish(ReloadResult(trigger, loaded.config, diff, (), warnings))

        def failed(failure: Failure) -> ReloadResult:
            self.log.failure("applying the new configuration failed", failure)
            error = f"applying the new configuration failed: {failure.value}"
            return self._finish(ReloadResult(trigger, old, None, (error,), warnings))

        return d.addCallbacks(applied, failed)

    def _changedStartOnlyFiles(self) -> Iterable[str]:
        for name, (path, digest) in self._startOnly.items():
            if fileDigest(path) != digest:
                yield name

    def _finish(self, result: ReloadResult) -> ReloadResult:
        self.lastResult = result
        for warning in result.warnings:
            self.log.warn("config: {problem}", problem=warning)
        if result.ok:
            self.log.info("{line}", line=result.describe())
            notify = self._onReloaded
        else:
            self.log.error("{line}", line=result.describe())
            for error in result.errors:
                self.log.error("  {error}", error=error)
            notify = self._onReloadFailed
        try:
            notify(result)
        except Exception:
            self.log.failure("reporting the reload failed")
        return result


def reloadTriggers(
    reloader: Reloader,
    reactor: Any,
    configPath: str | None,
    configDir: str | None,
    watch: bool,
    modelsFolder: FolderSource | None = None,
) -> list[IService]:
    """
    The services that call C{reloader}: SIGHUP always, with
    C{--watch-config} a L{ConfigWatcher} on the configuration files, and
    with C{modelsFolder} a L{ModelsWatcher} on the current models folder
    (inotify on Linux, polling elsewhere).

    @param modelsFolder: returns the models folder to watch now (L{None}
        when there is none or C{modelsDir.watch} is false); a models
        folder is live without C{--watch-config}.
    """
    inotifyReactor = reactor if sys.platform.startswith("linux") else None
    services: list[IService] = [ReloadSignalService(reactor, lambda: reloader.reload("sighup"))]
    if modelsFolder is not None:
        services.append(
            ModelsWatcher(
                modelsFolder,
                lambda paths: reloader.reload("models-dir"),
                reactor,
                inotifyReactor=inotifyReactor,
            )
        )
    if watch:
        services.append(
            ConfigWatcher(
                [configPath] if configPath else [],
                lambda paths: reloader.reload("watch"),
                reactor,
                configDirs=[configDir] if configDir else [],
                inotifyReactor=inotifyReactor,
            )
        )
    return services
