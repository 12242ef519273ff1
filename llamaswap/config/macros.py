# -*- test-case-name: test.config.test_macros -*-
"""
Macro expansion: llama-swap's steps from macro declarations to a tree with
every C{${name}} substituted (its loading pipeline, steps 5 to 11).

Global macros apply to every top-level value except C{models}; each model
sees C{MODEL_ID}, the globals (its own declarations replacing them in
place) and its own extra macros, substituted from the last to the first,
then C{${PORT}} if its command asks for one.  A string that is exactly
C{${name}} takes the macro's typed value; anything left unresolved is an
error.
"""

from __future__ import annotations

import decimal
import math
import re
from typing import Any, Iterable, Mapping, Sequence

from .cmdline import stripComments
from .errors import KeyPath, Location, PathPart, Problems, SourceMap
from .expanded import ExpandedTree, MacroList, MacroValue
from .goquote import goQuote

__all__ = ["expand", "formatGoFloat", "formatMacroValue", "validateMacro"]

MACRO_PATTERN = re.compile(r"\$\{([a-zA-Z0-9_-]+)\}")
_ENV_PATTERN = re.compile(r"\$\{env\.([a-zA-Z_][a-zA-Z0-9_]*)\}")
_MACRO_NAME = re.compile(r"[a-zA-Z0-9_-]+")

RESERVED = ("PID", "PORT", "MODEL_ID")
DEFAULT_PROXY = "http://localhost:${PORT}"
DEFAULT_START_PORT = 5800

KNOWN_TOP_LEVEL = frozenset(
    """healthCheckTimeout logLevel logTimeFormat logToStdout logRequests
    metricsMaxInMemory captureBuffer store ui performance startPort globalTTL
    unloadTimeout sendLoadingState includeAliasesInList apiKeys macros models
    hooks peers groups matrix routing profiles selectors upstream
    maxWaitForSwap memoryBudget memoryReserve requestTTL""".split()
)

# Model fields whose leftovers get llama-swap's "found in <model>.<field>".
_NAMED_FIELDS = frozenset(
    ["cmd", "cmdStop", "proxy", "checkEndpoint", "filters.stripParams", "name", "description"]
)

_INT64 = 2**63


def formatGoFloat(value: float) -> str:
    """
    Format a float as Go's C{fmt.Sprintf("%v", f)} does: the shortest
    representation that round-trips, in exponent form when the exponent is
    below -4 or at least 6 (C{0.7}, C{100000}, C{1e+06}, C{1.5e-05}).
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digitTuple, exponent = decimal.Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digitTuple)).rstrip("0")
    exponent += len(digitTuple) - len(digits)
    point = len(digits) + exponent
    neg = "-" if sign else ""
    power = point - 1
    if power < -4 or power >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{neg}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{neg}{digits}{'0' * (point - len(digits))}"
    return f"{neg}{digits[:point]}.{digits[point:]}"


def formatMacroValue(value: MacroValue) -> str:
    """
    The text spliced into a string for a macro's value: ints in decimal,
    floats as Go prints them, booleans as C{true}/C{false}.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return formatGoFloat(value)
    return str(value)


def _goTypeName(value: Any) -> str:
    """
    The Go type name (C{%T}) yaml.v3 gives C{value} when decoding into
    C{any}, for llama-swap's invalid-type message.
    """
    if value is None:
        return "<nil>"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return type(value).__name__


def validateMacro(name: str, value: Any) -> str | None:
    """
    Check one macro declaration as llama-swap does: length, characters,
    scalar type and self-reference, then reserved names.

    @return: the error message, or L{None} if the declaration is fine.
    """
    if len(name.encode("utf-8")) >= 64:
        return f"macro name '{name}' exceeds maximum length of 63 characters"
    if not _MACRO_NAME.fullmatch(name):
        return (
            f"macro name '{name}' contains invalid characters, "
            "must match pattern ^[a-zA-Z0-9_-]+$"
        )
    if isinstance(value, str):
        if "${" + name + "}" in value:
            return f"macro '{name}' contains self-reference"
    elif not isinstance(value, (bool, int, float)):
        return (
            f"macro '{name}' has invalid type {_goTypeName(value)}, "
            "must be a scalar type (string, int, float, or bool)"
        )
    if name in RESERVED:
        return f"macro name '{name}' is reserved"
    return None


def substitute(value: Any, name: str, macroValue: MacroValue) -> Any:
    """
    Substitute one macro through a value tree (values only, never keys).

    A string that is exactly C{${name}} becomes C{macroValue} itself, typed;
    other strings get its text spliced in.
    """
    slug = "${" + name + "}"
    if isinstance(value, str):
        if value == slug:
            return macroValue
        if slug in value:
            return value.replace(slug, formatMacroValue(macroValue))
        return value
    if isinstance(value, dict):
        return {key: substitute(item, name, macroValue) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, name, macroValue) for item in value]
    return value


def substituteAll(value: Any, macros: Sequence[tuple[str, MacroValue]]) -> Any:
    """
    Substitute a macro list from its last entry to its first, so a macro's
    value may use macros declared before it.
    """
    for name, macroValue in reversed(macros):
        value = substitute(value, name, macroValue)
    return value


def _substituteText(text: str, macros: Sequence[tuple[str, MacroValue]]) -> str:
    """
    Substitute C{macros}, last to first, into a plain string.
    """
    for name, macroValue in reversed(macros):
        text = text.replace("${" + name + "}", formatMacroValue(macroValue))
    return text


def _modelMacros(modelID: str, globals_: MacroList, local: MacroList) -> MacroList:
    """
    C{MODEL_ID}, then the globals with the model's declarations replacing
    same-named ones in place, then the model's other declarations.
    """
    merged: list[tuple[str, MacroValue]] = [("MODEL_ID", modelID), *globals_]
    for name, value in local:
        for i, (existing, _) in enumerate(merged):
            if existing == name:
                merged[i] = (name, value)
                break
        else:
            merged.append((name, value))
    return tuple(merged)


def _startPortError(value: Any) -> str:
    """
    yaml.v3's message for decoding C{value} into C{startPort}'s int.
    """
    if isinstance(value, list):
        return "cannot unmarshal !!seq into int"
    if isinstance(value, dict):
        return "cannot unmarshal !!map into int"
    if isinstance(value, bool):
        tag, text = "!!bool", "true" if value else "false"
    elif isinstance(value, int):
        tag, text = "!!int", str(value)
    elif isinstance(value, float):
        tag = "!!float"
        text = ".nan" if math.isnan(value) else formatGoFloat(value).replace("+Inf", ".inf")
        text = text.replace("-Inf", "-.inf")
    else:
        tag, text = "!!str", str(value)
    if len(text) > 10:
        text = text[:7] + "..."
    return f"cannot unmarshal {tag} `{text}` into int"


class _Expansion:
    """
    One run of L{expand}: holds the problems collector and the key
    locations, which move when C{setParamsByID} keys are rewritten.
    """

    def __init__(
        self,
        sourceMap: SourceMap,
        problems: Problems,
        reservedPorts: Mapping[str, int] | None = None,
    ) -> None:
        self.problems = problems
        self.reservedPorts: Mapping[str, int] = reservedPorts or {}
        self.taken: set[int] = set(self.reservedPorts.values())
        self.locations: dict[KeyPath, Location] = dict(sourceMap.locations)
        self.default = sourceMap.default
        self.rejected: dict[str | None, set[str]] = {None: set()}
        self.portErrors: set[str] = set()
        self.ports: dict[str, int] = {}

    def locate(self, path: Sequence[PathPart]) -> Location | None:
        """
        The location of C{path}, following renamed keys.
        """
        return SourceMap(self.locations, self.default).locate(path)

    def error(self, message: str, path: Sequence[PathPart]) -> None:
        """
        Report C{message} about C{path} at its location.
        """
        self.problems.error(message, path, self.locate(path))

    # Step 5: declarations.

    def declarations(
        self, value: Any, path: KeyPath, modelID: str | None
    ) -> MacroList:
        """
        The valid declarations of one C{macros} block, in order; each
        invalid one is reported and left out.
        """
        if value is None:
            return ()
        if not isinstance(value, dict):
            self.error("macros must be a mapping", path)
            return ()
        prefix = "" if modelID is None else f"model {modelID}: "
        rejected = self.rejected.setdefault(modelID, set())
        valid: list[tuple[str, MacroValue]] = []
        for name, macroValue in value.items():
            problem = validateMacro(name, macroValue)
            if problem is None:
                valid.append((name, macroValue))
                continue
            self.error(prefix + problem, path + (name,))
            if name not in RESERVED:
                rejected.add(name)
        return tuple(valid)

    def run(self, tree: Mapping[str, Any]) -> ExpandedTree:
        """
        Run every step over C{tree}; see L{expand}.
        """
        if not isinstance(tree, dict):
            self.error("the configuration must be a mapping", ())
            tree = {}
        globalMacros = self.declarations(tree.get("macros"), ("macros",), None)

        rawModels = tree.get("models")
        models: dict[str, Any] = {}
        if isinstance(rawModels, dict):
            models = rawModels
        elif rawModels is not None:
            self.error(f"models must be a mapping, not {_kindName(rawModels)}", ("models",))

        modelMacros: dict[str, MacroList] = {}
        for modelID in sorted(models):
            model = models[modelID]
            if isinstance(model, dict):
                modelMacros[modelID] = self.declarations(
                    model.get("macros"), ("models", modelID, "macros"), modelID
                )
            elif model is not None:
                self.error(
                    f"model {modelID} must be a mapping, not {_kindName(model)}",
                    ("models", modelID),
                )

        # Step 7: tree preparation.
        out: dict[str, Any] = {key: value for key, value in tree.items() if key != "macros"}
        if isinstance(rawModels, dict):
            out["models"] = {
                modelID: self.prepareModel(model) if isinstance(model, dict) else model
                for modelID, model in models.items()
            }

        # Step 8: global macros over every top-level value but models.
        for key in out:
            if key != "models":
                out[key] = substituteAll(out[key], globalMacros)

        # Steps 9 and 10: startPort, then each model in sorted order.
        nextPort = self.startPort(out)
        if isinstance(rawModels, dict):
            expandedModels = out["models"]
            for modelID in sorted(expandedModels):
                model = expandedModels[modelID]
                if isinstance(model, dict):
                    expandedModels[modelID], nextPort = self.expandModel(
                        modelID, model, _modelMacros(modelID, globalMacros, modelMacros[modelID]),
                        nextPort,
                    )

        # Step 11: anything left over.
        self.checkLeftovers(out)
        return ExpandedTree(
            out,
            SourceMap(self.locations, self.default),
            globalMacros,
            modelMacros,
            dict(self.ports),
        )

    def prepareModel(self, model: dict[str, Any]) -> dict[str, Any]:
        """
        Drop the model's C{macros}, strip whole-line comments from string
        C{cmd}/C{cmdStop}, and default C{proxy}.
        """
        prepared = {key: value for key, value in model.items() if key != "macros"}
        for field in ("cmd", "cmdStop"):
            if isinstance(prepared.get(field), str):
                prepared[field] = stripComments(prepared[field])
        if prepared.get("proxy") is None:
            prepared["proxy"] = DEFAULT_PROXY
        return prepared

    def startPort(self, tree: Mapping[str, Any]) -> int:
        """
        The first port to allocate, read after global expansion; a bad
        value is reported and the default used so loading can go on.
        """
        value = tree.get("startPort")
        if value is None:
            return DEFAULT_START_PORT
        port: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            port = value if value < _INT64 else None
        elif isinstance(value, float) and math.isfinite(value) and value < _INT64:
            port = int(value)
        if port is None:
            self.error(_startPortError(value), ("startPort",))
            return DEFAULT_START_PORT
        if port < 1:
            self.error("startPort must be greater than 1", ("startPort",))
            return DEFAULT_START_PORT
        return port

    def expandModel(
        self, modelID: str, model: dict[str, Any], macros: MacroList, nextPort: int
    ) -> tuple[dict[str, Any], int]:
        """
        Substitute a model's macro list, then its C{${PORT}} if its command
        asks for one.

        @return: the expanded model and the next free port.
        """
        model = substituteAll(model, macros)
        model = self.rekeySetParamsByID(modelID, model, macros)
        cmd = model.get("cmd")
        proxy = model.get("proxy")
        cmdHasPort = isinstance(cmd, str) and "${PORT}" in cmd
        proxyHasPort = isinstance(proxy, str) and "${PORT}" in proxy
        if proxyHasPort and not cmdHasPort:
            self.portErrors.add(modelID)
            self.error(
                f"model {modelID}: proxy uses ${{PORT}} but cmd does not - "
                "${PORT} is only available when used in cmd",
                ("models", modelID, "proxy"),
            )
        elif cmdHasPort:
            allocated = self.reservedPorts.get(modelID)
            if allocated is None:
                while nextPort in self.taken:
                    nextPort += 1
                allocated = nextPort
                nextPort += 1
            port = (("PORT", allocated),)
            model = substituteAll(model, port)
            model = self.rekeySetParamsByID(modelID, model, port)
            self.ports[modelID] = allocated
        params = _setParamsByID(model)
        if params is not None:
            for key in params:
                for match in MACRO_PATTERN.finditer(key):
                    self.error(
                        f"unknown macro '{match.group(0)}' found in model {modelID} "
                        "filters.setParamsByID key",
                        ("models", modelID, "filters", "setParamsByID", key),
                    )
        return model, nextPort

    def rekeySetParamsByID(
        self, modelID: str, model: dict[str, Any], macros: MacroList
    ) -> dict[str, Any]:
        """
        Substitute C{macros} into the keys of C{filters.setParamsByID}, the
        only mapping keys macros reach; two keys becoming one is an error.
        """
        params = _setParamsByID(model)
        if params is None:
            return model
        base: KeyPath = ("models", modelID, "filters", "setParamsByID")
        rekeyed: dict[str, Any] = {}
        origins: dict[str, str] = {}
        renames: dict[str, str] = {}
        for key, value in params.items():
            newKey = _substituteText(key, macros)
            if newKey in rekeyed:
                self.error(
                    f"model {modelID} filters.setParamsByID: keys {goQuote(origins[newKey])} "
                    f"and {goQuote(key)} resolve to the same value",
                    base + (key,),
                )
                continue
            rekeyed[newKey] = value
            origins[newKey] = key
            if newKey != key:
                renames[key] = newKey
        if renames:
            self.moveLocations(base, renames)
        filters = dict(model["filters"])
        filters["setParamsByID"] = rekeyed
        return {**model, "filters": filters}

    def moveLocations(self, base: KeyPath, renames: Mapping[str, str]) -> None:
        """
        Re-point the locations under renamed keys of the mapping at C{base}.
        """
        depth = len(base)
        moved: dict[KeyPath, Location] = {}
        for path, location in self.locations.items():
            if len(path) > depth and path[:depth] == base and path[depth] in renames:
                path = base + (renames[str(path[depth])],) + path[depth + 1 :]
            moved[path] = location
        self.locations = moved

    # Step 11: leftovers.

    def checkLeftovers(self, tree: Mapping[str, Any]) -> None:
        """
        Report every C{${name}} still present in a known top-level key or a
        model, except C{${PID}} in a model's C{cmdStop}.
        """
        for key, value in tree.items():
            if key not in KNOWN_TOP_LEVEL:
                continue
            if key != "models":
                self.checkValue(value, (key,), key, None, "", False)
                continue
            if not isinstance(value, dict):
                continue
            for modelID, model in value.items():
                if not isinstance(model, dict):
                    continue
                for field, fieldValue in model.items():
                    self.checkValue(
                        fieldValue,
                        ("models", modelID, field),
                        f"models.{modelID}.{field}",
                        modelID,
                        field,
                        field == "cmdStop",
                    )

    def checkValue(
        self,
        value: Any,
        path: KeyPath,
        dotted: str,
        modelID: str | None,
        fieldPath: str,
        allowPID: bool,
    ) -> None:
        """
        Report the leftovers in C{value}, found at C{path}.
        """
        if isinstance(value, dict):
            for key, item in value.items():
                self.checkValue(
                    item,
                    path + (key,),
                    f"{dotted}.{key}",
                    modelID,
                    f"{fieldPath}.{key}" if modelID is not None else fieldPath,
                    allowPID,
                )
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.checkValue(item, path + (i,), f"{dotted}[{i}]", modelID, fieldPath, allowPID)
        elif isinstance(value, str):
            for name in _unique(m.group(1) for m in MACRO_PATTERN.finditer(value)):
                message = self.leftoverMessage(name, dotted, modelID, fieldPath, allowPID)
                if message is not None:
                    self.error(message, path)
            for name in _unique(m.group(1) for m in _ENV_PATTERN.finditer(value)):
                if f"environment variable '{name}' is not set" not in self.reported():
                    self.error(f"{dotted}: environment variable '{name}' not set", path)

    def leftoverMessage(
        self, name: str, dotted: str, modelID: str | None, fieldPath: str, allowPID: bool
    ) -> str | None:
        """
        llama-swap's message for a leftover C{${name}}, or L{None} if allowed.
        """
        if name == "PID" and allowPID:
            return None
        if name in self.rejected[None] or name in self.rejected.get(modelID, ()):
            # Its declaration was already reported as invalid.
            return None
        if modelID is None:
            return f"{dotted}: unknown macro '${{{name}}}'"
        if fieldPath in _NAMED_FIELDS:
            if name in ("PORT", "MODEL_ID"):
                if name == "PORT" and fieldPath == "proxy" and modelID in self.portErrors:
                    return None
                return f"macro '${{{name}}}' should have been substituted in {modelID}.{fieldPath}"
            return f"unknown macro '${{{name}}}' found in {modelID}.{fieldPath}"
        context = f"model {modelID} {fieldPath}"
        for section in ("capabilities", "metadata"):
            if fieldPath == section or fieldPath.startswith(section + "."):
                context = f"model {modelID} {section}"
        return f"{context}: unknown macro '${{{name}}}'"

    def reported(self) -> set[str]:
        """
        The messages reported so far.
        """
        return {problem.message for problem in self.problems}


def _setParamsByID(model: Mapping[str, Any]) -> dict[str, Any] | None:
    """
    A model's C{filters.setParamsByID} mapping, if it has one.
    """
    filters = model.get("filters")
    if not isinstance(filters, dict):
        return None
    params = filters.get("setParamsByID")
    return params if isinstance(params, dict) else None


def _unique(names: Iterable[str]) -> list[str]:
    """
    C{names} without repeats, in first-seen order.
    """
    return list(dict.fromkeys(names))


def _kindName(value: Any) -> str:
    """
    How to name C{value}'s kind in a message.
    """
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string"


def expand(
    tree: Mapping[str, Any],
    sourceMap: SourceMap,
    problems: Problems,
    reservedPorts: Mapping[str, int] | None = None,
) -> ExpandedTree:
    """
    Run llama-swap's macro steps over a merged configuration tree.

    Declarations are validated, C{macros} blocks removed, model commands
    stripped of comment lines and C{proxy} defaulted, global macros
    substituted outside C{models}, each model (in byte-wise ID order)
    expanded with its own macro list and given a C{${PORT}} if its C{cmd}
    uses one, and every leftover C{${name}} reported.  Bad input is
    reported into C{problems}; nothing is raised.

    @param tree: the merged tree from L{llamaswap.config.sources}; it is
        not modified.
    @param reservedPorts: model ID to a C{${PORT}} it must keep (a reload
        pins the ports of running models).  A listed model that still uses
        C{${PORT}} gets its port; the others are allocated in the usual
        order from C{startPort}, skipping every reserved port (also those
        of models no longer configured, whose process may still be
        draining).
    """
    return _Expansion(sourceMap, problems, reservedPorts).run(tree)
