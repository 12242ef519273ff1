# -*- test-case-name: test.config.test_diff -*-
"""
What a configuration reload changes: a pure comparison of the running
L{Config} with a newly loaded one.

A model is I{kept} when the process it runs would be the same: the same
argv (after macros, so also the same C{${PORT}}), environment, proxy URL,
health endpoint and stop command.  Everything else about a model only
affects how new requests are handled (aliases, filters, TTL, concurrency
limit, ...) and applies without touching the process.  A model whose
process would differ is I{restarted}: it finishes its requests in flight,
stops, and its next request starts the new definition.

Top-level settings either apply to new requests at once (L{LIVE_SETTINGS})
or only at the next start of llamaswap (L{RESTART_SETTINGS}); the latter are
reported as I{needs restart} and everything else is still applied.

Field by field (see L{MODEL_PROCESS_FIELDS} and L{MODEL_LIVE_FIELDS}):

==================  ==========================================================
model field         on change
==================  ==========================================================
cmd                 restart (compared as argv: re-wrapping lines, comments
                    and extra blanks do not count)
env                 restart (compared as the resulting variables)
proxy               restart
checkEndpoint       restart (C{""}, C{none} and blanks are equivalent)
cmdStop             restart
port                restart (it is part of cmd; pinned across reloads, see
                    L{llamaswap.config.macros.expand})
ttl                 live: the idle timer continues with the new value
unloadTimeout       live: used by the next stop
healthCheckTimeout  live: used by the next start
aliases, name,      live: listings and name resolution of new requests
description,
unlisted, metadata,
capabilities
useModelName,       live: rewriting of new requests
filters
concurrencyLimit    live: admission of new requests
memory, devices,    live: memory budget scheduling of new requests (the
estimatedMemory     estimate follows the GGUF file named in cmd)
sendLoadingState,   live: new requests
timeouts, compat
macros              not compared: their effect is in the fields above
==================  ==========================================================
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from attrs import evolve, field, fields, frozen

from .cmdline import EmptyCommand, splitCommand
from .model import Config, FrozenDict, ModelConfig


def _argv(cmd: str) -> Any:
    try:
        return tuple(splitCommand(cmd))
    except EmptyCommand:
        return ()


def _environment(env: tuple[str, ...]) -> Any:
    """
    The variables C{env} sets, as the child sees them (a later entry for
    the same name wins).
    """
    return tuple(sorted(dict(entry.partition("=")[::2] for entry in env).items()))


def _endpoint(value: str) -> str:
    value = value.strip()
    return "" if value.lower() == "none" else value


def _same(value: Any) -> Any:
    return value


#: Model fields that define the process: a change restarts the model.  Each
#: maps to the normalisation applied before comparing.
MODEL_PROCESS_FIELDS: Mapping[str, Callable[[Any], Any]] = FrozenDict(
    {
        "cmd": _argv,
        "env": _environment,
        "proxy": str.strip,
        "checkEndpoint": _endpoint,
        "cmdStop": _argv,
        "port": _same,
        "promptCache": _same,
    }
)

#: Model fields that only affect new requests (or the next start or stop):
#: a change applies to the running process without a restart.  (Any field
#: in neither list is treated as live; test.config.test_diff checks that
#: every field is classified on purpose.)
MODEL_LIVE_FIELDS: tuple[str, ...] = (
    "aliases",
    "ttl",
    "unloadTimeout",
    "healthCheckTimeout",
    "unlisted",
    "useModelName",
    "name",
    "description",
    "concurrencyLimit",
    "filters",
    "metadata",
    "sendLoadingState",
    "timeouts",
    "compat",
    "capabilities",
    "memory",
    "devices",
    "estimatedMemory",
)

#: Model fields not compared at all.
MODEL_IGNORED_FIELDS: tuple[str, ...] = ("id", "macros")

#: Top-level settings that apply to new requests as soon as the new
#: configuration is current (the default for a setting in neither list).  C{startPort} only matters for ports allocated
#: from now on; C{models} is compared model by model.  C{memory} (the
#: budget) and C{requestTTL} apply to scheduling and new requests;
#: C{modelsDir} is live because the models it discovers are compared as
#: models (a reload discovers the folder again).  C{limits} and
#: C{security} are read at each new connection or request (the body limit,
#: header and body timeouts, connection cap, upstream idle timeout, C{Host}
#: and CORS checks), so they apply to connections opened after the reload;
#: C{envSecrets} is read whenever a command is shown.
LIVE_SETTINGS: tuple[str, ...] = (
    "healthCheckTimeout",
    "logLevel",
    "logTimeFormat",
    "ui",
    "startPort",
    "globalTTL",
    "unloadTimeout",
    "sendLoadingState",
    "includeAliasesInList",
    "apiKeys",
    "auth",
    "macros",
    "aliases",
    "hooks",
    "peers",
    "routing",
    "profiles",
    "legacyProfiles",
    "selectors",
    "upstream",
    "memory",
    "requestTTL",
    "modelsDir",
    "performance",
    "limits",
    "security",
    "envSecrets",
)

#: Top-level settings read once at start: a change is reported as "needs
#: restart" and ignored until then.  (llama-swap also reads C{logToStdout}
#: only at start; the activity store, its in-memory size and the capture
#: buffer are opened once.)
RESTART_SETTINGS: tuple[str, ...] = (
    "logToStdout",
    "store",
    "metricsMaxInMemory",
    "captureBuffer",
    "promptCache",
)


def _sorted(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(names))


@frozen
class ConfigDiff:
    """
    The difference between two configurations, by model and by setting.

    @ivar kept: models whose process is unchanged (they keep running; some
        may have live changes, see L{updated}).
    @ivar restarted: models whose process definition changed.
    @ivar added: models only in the new configuration.
    @ivar removed: models only in the old configuration.
    @ivar updated: model ID to its changed live fields, for kept and
        restarted models.
    @ivar restartReasons: restarted model ID to the process fields that
        changed.
    @ivar settings: top-level settings that changed and apply live.
    @ivar needsRestart: settings that changed but only apply after
        llamaswap restarts: configuration keys, and the names of files
        read only at start (C{--tls-cert-file}) whose content changed.
    """

    kept: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    updated: Mapping[str, tuple[str, ...]] = field(factory=FrozenDict)
    restartReasons: Mapping[str, tuple[str, ...]] = field(factory=FrozenDict)
    settings: tuple[str, ...] = ()
    needsRestart: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """
        Whether anything at all differs.
        """
        return bool(
            self.restarted
            or self.added
            or self.removed
            or self.updated
            or self.settings
            or self.needsRestart
        )

    def withNeedsRestart(self, names: Iterable[str]) -> ConfigDiff:
        """
        This diff with C{names} added to L{needsRestart}.
        """
        return evolve(self, needsRestart=_sorted(set(self.needsRestart) | set(names)))

    def summary(self) -> dict[str, Any]:
        """
        Plain JSON data for the log, C{/api/events} and the reload
        endpoint's answer.
        """
        return {
            "changed": self.changed,
            "kept": list(self.kept),
            "restarted": {m: list(self.restartReasons.get(m, ())) for m in self.restarted},
            "added": list(self.added),
            "removed": list(self.removed),
            "updated": {m: list(names) for m, names in self.updated.items()},
            "settings": list(self.settings),
            "needsRestart": list(self.needsRestart),
        }

    def describe(self) -> str:
        """
        One line for the log.
        """
        if not self.changed:
            return f"no changes ({len(self.kept)} models kept)"
        parts = []
        if self.added:
            parts.append("added " + ", ".join(self.added))
        if self.removed:
            parts.append("removed " + ", ".join(self.removed))
        if self.restarted:
            parts.append(
                "restarting "
                + ", ".join(
                    f"{m} ({', '.join(self.restartReasons.get(m, ()))})" for m in self.restarted
                )
            )
        if self.updated:
            parts.append(
                "updated "
                + ", ".join(f"{m} ({', '.join(names)})" for m, names in self.updated.items())
            )
        if self.settings:
            parts.append("settings " + ", ".join(self.settings))
        if self.needsRestart:
            parts.append("needs restart: " + ", ".join(self.needsRestart))
        parts.append(f"{len(self.kept)} models kept")
        return "; ".join(parts)


def processChanges(old: ModelConfig, new: ModelConfig) -> tuple[str, ...]:
    """
    The process fields that differ between two definitions of a model.
    """
    return tuple(
        name
        for name, normalise in MODEL_PROCESS_FIELDS.items()
        if normalise(getattr(old, name)) != normalise(getattr(new, name))
    )


def liveChanges(old: ModelConfig, new: ModelConfig) -> tuple[str, ...]:
    """
    The live fields that differ between two definitions of a model.
    """
    return tuple(
        a.name
        for a in fields(ModelConfig)
        if a.name not in MODEL_PROCESS_FIELDS
        and a.name not in MODEL_IGNORED_FIELDS
        and getattr(old, a.name) != getattr(new, a.name)
    )


def diffConfigs(old: Config, new: Config) -> ConfigDiff:
    """
    Compare the running configuration C{old} with C{new}.
    """
    kept, restarted = [], []
    updated: dict[str, tuple[str, ...]] = {}
    reasons: dict[str, tuple[str, ...]] = {}
    for modelID in sorted(set(old.models) & set(new.models)):
        before, after = old.models[modelID], new.models[modelID]
        process = processChanges(before, after)
        if process:
            restarted.append(modelID)
            reasons[modelID] = process
        else:
            kept.append(modelID)
        live = liveChanges(before, after)
        if live:
            updated[modelID] = live
    settings, needsRestart = [], []
    for a in fields(Config):
        if a.name == "models" or getattr(old, a.name) == getattr(new, a.name):
            continue
        (needsRestart if a.name in RESTART_SETTINGS else settings).append(a.name)
    return ConfigDiff(
        kept=tuple(kept),
        restarted=tuple(restarted),
        added=_sorted(set(new.models) - set(old.models)),
        removed=_sorted(set(old.models) - set(new.models)),
        updated=FrozenDict(updated),
        restartReasons=FrozenDict(reasons),
        settings=tuple(settings),
        needsRestart=tuple(needsRestart),
    )


def pinnedPorts(config: Config) -> dict[str, int]:
    """
    The C{${PORT}} of every model of C{config} that has one: what to pass
    as C{reservedPorts} when loading its successor, so that no running
    model's port moves.
    """
    return {modelID: m.port for modelID, m in config.models.items() if m.port is not None}
