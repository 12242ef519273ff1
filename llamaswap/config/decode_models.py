# -*- test-case-name: test.config.test_decode_models -*-
"""
The C{models} section: each model with its defaults, aliases (including
C{filters.setParamsByID} keys), capabilities, filters and timeouts.
"""

from __future__ import annotations

from typing import Any, Mapping

from .errors import KeyPath, Problems
from .expanded import ExpandedTree
from .goformats import goURLError
from .goquote import goQuote
from .keys import (
    CAPABILITY_KEYS,
    COMPAT_KEYS,
    MODEL_FILTER_KEYS,
    MODEL_KEYS,
    TIMEOUT_KEYS,
)
from .limits import idleOverride
from .memory import decodeDevices, decodeModelMemory
from .model import (
    COMFYUI_MODEL_ID,
    MODEL_TIMEOUTS,
    PROTECTED_PARAMS,
    Capabilities,
    Compat,
    Filters,
    FrozenDict,
    ModelConfig,
    Timeouts,
    sanitizeSetParams,
)
from .sections import Section, describeValue

MODALITIES = ("text", "audio", "image")
COMFYUI_MIN_CONCURRENCY = 50


def decodeModels(
    models: Section,
    expanded: ExpandedTree,
    problems: Problems,
    healthCheckTimeout: int,
    globalTTL: int,
    unloadTimeout: int,
    sendLoadingState: bool,
    promptCache: bool = False,
) -> tuple[dict[str, ModelConfig], dict[str, str]]:
    """
    Decode every model, sorted by ID, with the global defaults given.

    @return: the models and the alias map (alias to model ID).
    """
    decoder = _ModelsDecoder(expanded, problems)
    sections = decoder.sections(models)
    decoder.allModelIDs = frozenset(sections)
    decoder.aliasMap(sections)
    out: dict[str, ModelConfig] = {}
    for modelID, section in sections.items():
        out[modelID] = decoder.model(
            modelID,
            section,
            healthCheckTimeout=healthCheckTimeout,
            globalTTL=globalTTL,
            unloadTimeout=unloadTimeout,
            sendLoadingState=sendLoadingState,
            promptCache=promptCache,
        )
    for alias, modelID in decoder.aliases.items():
        if alias in out and alias != modelID:
            problems.warn(
                f"alias {goQuote(alias)} of model {modelID} is shadowed by the model with that ID",
                ("models", modelID, "aliases"),
            )
    return out, decoder.aliases


class _ModelsDecoder:
    """
    The alias map being built while the models are decoded.
    """

    def __init__(self, expanded: ExpandedTree, problems: Problems) -> None:
        self.expanded = expanded
        self.problems = problems
        self.aliases: dict[str, str] = {}
        self.allModelIDs: frozenset[str] = frozenset()

    def sections(self, models: Section) -> dict[str, Section]:
        sections = {}
        for key in sorted(models.data, key=str):
            modelID = str(key)
            sections[modelID] = Section.of(
                self.problems, models.data[key], ("models", modelID), MODEL_KEYS
            )
        return dict(sorted(sections.items()))

    def aliasMap(self, sections: Mapping[str, Section]) -> None:
        for modelID, section in sections.items():
            for i, alias in enumerate(section.strings("aliases")):
                if alias in self.aliases:
                    self.problems.error(
                        f"duplicate alias {alias} found in model: {modelID}",
                        ("models", modelID, "aliases", i),
                    )
                    continue
                self.aliases[alias] = modelID

    def model(
        self,
        modelID: str,
        m: Section,
        healthCheckTimeout: int,
        globalTTL: int,
        unloadTimeout: int,
        sendLoadingState: bool,
        promptCache: bool = False,
    ) -> ModelConfig:
        problems = self.problems
        path = ("models", modelID)
        port = self.expanded.ports.get(modelID)
        defaultProxy = "http://localhost:${PORT}" if port is None else f"http://localhost:{port}"

        if "healthCheckTimeout" in m.data:
            m.integer("healthCheckTimeout", 0)
            problems.warn(
                "ignored: every model uses the global healthCheckTimeout",
                path + ("healthCheckTimeout",),
            )

        concurrencyLimit = m.integer("concurrencyLimit", 0)
        compatSection = m.section("compat", COMPAT_KEYS)
        ignoreWebsockets = compatSection.boolean("ignoreWebsockets", False)
        if modelID == COMFYUI_MODEL_ID:
            concurrencyLimit = max(concurrencyLimit, COMFYUI_MIN_CONCURRENCY)
            ignoreWebsockets = True

        ttl = m.integer("ttl", -1)
        if ttl == -1:
            ttl = globalTTL
        elif ttl < 0:
            problems.error(f"model {modelID}: invalid TTL value {ttl}", path + ("ttl",))

        modelUnloadTimeout = m.integer("unloadTimeout", 0)
        if modelUnloadTimeout < 0:
            problems.error(
                f"model {modelID}: invalid unloadTimeout value {modelUnloadTimeout}",
                path + ("unloadTimeout",),
            )
        if modelUnloadTimeout == 0:
            modelUnloadTimeout = unloadTimeout

        capabilities = self.capabilities(modelID, m.section("capabilities", CAPABILITY_KEYS))
        filters = self.filters(m.section("filters", MODEL_FILTER_KEYS))
        aliases = list(m.strings("aliases"))
        for key in filters.setParamsByID:
            if key == modelID:
                continue
            keyPath = path + ("filters", "setParamsByID", key)
            if key in self.allModelIDs:
                problems.error(
                    f"model {modelID} filters.setParamsByID: key '{key}'"
                    " conflicts with an existing model ID",
                    keyPath,
                )
                continue
            owner = self.aliases.get(key)
            if owner is not None:
                if owner != modelID:
                    problems.error(
                        f"duplicate alias '{key}' in model {modelID}"
                        f" filters.setParamsByID, already used by model {owner}",
                        keyPath,
                    )
                continue
            self.aliases[key] = modelID
            aliases.append(key)

        proxy = m.string("proxy", defaultProxy)
        if "${" not in proxy:
            reason = goURLError(proxy)
            if reason is not None:
                problems.error(f"model {modelID}: invalid proxy URL: {reason}", path + ("proxy",))

        modelSendLoadingState = m.optionalBoolean("sendLoadingState")
        return ModelConfig(
            id=modelID,
            cmd=m.string("cmd", ""),
            cmdStop=m.string("cmdStop", ""),
            proxy=proxy,
            aliases=tuple(aliases),
            env=m.strings("env"),
            checkEndpoint=m.string("checkEndpoint", "/health"),
            ttl=ttl,
            unloadTimeout=modelUnloadTimeout,
            unlisted=m.boolean("unlisted", False),
            useModelName=m.string("useModelName", ""),
            name=m.string("name", ""),
            description=m.string("description", ""),
            concurrencyLimit=concurrencyLimit,
            filters=filters,
            macros=tuple(self.expanded.modelMacros.get(modelID, ())),
            metadata=m.mapping("metadata"),
            sendLoadingState=(
                sendLoadingState if modelSendLoadingState is None else modelSendLoadingState
            ),
            timeouts=decodeTimeouts(m.section("timeouts", TIMEOUT_KEYS), MODEL_TIMEOUTS),
            compat=Compat(ignoreWebsockets=ignoreWebsockets),
            capabilities=capabilities,
            healthCheckTimeout=healthCheckTimeout,
            port=port,
            promptCache=m.boolean("promptCache", promptCache),
            memory=decodeModelMemory(m.raw("memory"), path + ("memory",), problems),
            devices=decodeDevices(m.raw("devices"), path + ("devices",), problems),
        )

    def capabilities(self, modelID: str, c: Section) -> Capabilities:
        inputs = c.strings("in")
        outputs = c.strings("out")
        for field, values in (("in", inputs), ("out", outputs)):
            for i, value in enumerate(values):
                if value not in MODALITIES:
                    self.problems.error(
                        f"model {modelID}: capabilities.{field}: invalid modality"
                        f" {goQuote(value)}, must be one of: text, audio, image",
                        c.at(field) + (i,),
                    )
        context = c.integer("context", 0)
        if context < 0:
            self.problems.error(
                f"model {modelID}: capabilities.context: must be >= 0", c.at("context")
            )
        return Capabilities(
            inputs=inputs,
            outputs=outputs,
            tools=c.boolean("tools", False),
            reranker=c.boolean("reranker", False),
            context=context,
        )

    def filters(self, f: Section) -> Filters:
        stripParams = f.string("stripParams", "")
        if "strip_params" in f.data:
            legacy = f.string("strip_params", "")
            if stripParams == "":
                stripParams = legacy
            self.problems.warn(
                "strip_params is the legacy spelling of stripParams", f.at("strip_params")
            )
        byID = {
            name: decodeSetParams(params, f.at("setParamsByID") + (name,), self.problems)
            for name, params in f.mapping("setParamsByID").items()
        }
        return Filters(
            stripParams=stripParams,
            setParams=decodeSetParams(f.raw("setParams"), f.at("setParams"), self.problems),
            setParamsByID=byID,
        )


def decodeTimeouts(t: Section, defaults: Timeouts) -> Timeouts:
    """
    A C{timeouts} section (models and peers), over C{defaults}.
    """
    return Timeouts(
        connect=t.integer("connect", defaults.connect),
        keepalive=t.integer("keepalive", defaults.keepalive),
        responseHeader=t.integer("responseHeader", defaults.responseHeader),
        tlsHandshake=t.integer("tlsHandshake", defaults.tlsHandshake),
        expectContinue=t.integer("expectContinue", defaults.expectContinue),
        idleConn=t.integer("idleConn", defaults.idleConn),
        idle=idleOverride(t.integer("idle", -1)),
    )


def decodeSetParams(value: Any, path: KeyPath, problems: Problems) -> Mapping[str, Any]:
    """
    A parameter mapping, sanitised: C{model} dropped (with a warning),
    keys sorted.
    """
    if value is None:
        return FrozenDict()
    if not isinstance(value, Mapping):
        problems.error(f"must be a mapping, got {describeValue(value)}", path)
        return FrozenDict()
    params = {str(k): v for k, v in value.items()}
    for name in PROTECTED_PARAMS:
        if name in params:
            problems.warn(
                f"the {name!r} parameter is protected and is never set",
                path + (name,),
            )
    return sanitizeSetParams(params)
