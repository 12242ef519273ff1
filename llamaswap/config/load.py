# -*- test-case-name: test.config.test_load -*-
"""
The one entry point for loading configuration: sources, macros, objects.
"""

from __future__ import annotations

import os
import shutil
from typing import Mapping

from attrs import evolve, frozen

from .build import buildConfig
from .discover import applyModelsDir
from .errors import ConfigError, Problem, Problems, SourceMap
from .macros import expand
from .memory import finishMemory
from .model import Config
from .redact import RecordingEnviron
from .sources import readSources, readText


@frozen
class LoadedConfig:
    """
    A configuration that loaded, with the warnings found on the way.
    """

    config: Config
    warnings: tuple[Problem, ...] = ()


def loadConfig(
    configPath: str | None = None,
    configDir: str | None = None,
    environ: Mapping[str, str] | None = None,
    reservedPorts: Mapping[str, int] | None = None,
    modelsDir: str | None = None,
) -> LoadedConfig:
    """
    Load, merge, expand and validate the configuration sources.

    @param reservedPorts: model ID to the C{${PORT}} it keeps (see
        L{llamaswap.config.macros.expand}); a reload passes the ports of
        the running configuration so that they never move.
    @param modelsDir: C{--models-dir}: serve the C{*.gguf} files under it
        (no configuration file needed).
    @raise ConfigError: carrying every error (and warning) found.
    """
    problems = Problems()
    environ = os.environ if environ is None else environ
    recording = RecordingEnviron(environ)
    if modelsDir and not configPath and not configDir:
        tree: dict = {}
        sourceMap = SourceMap()
    else:
        tree, sourceMap = readSources(configPath, configDir, recording, problems)
    return _finish(
        tree, sourceMap, problems, environ, reservedPorts, modelsDir, recording.secrets()
    )


def loadConfigText(
    text: str,
    filename: str = "<string>",
    environ: Mapping[str, str] | None = None,
    reservedPorts: Mapping[str, int] | None = None,
) -> LoadedConfig:
    """
    Load a configuration held in a string (tests, C{check-config -}).

    @raise ConfigError: carrying every error (and warning) found.
    """
    problems = Problems()
    environ = os.environ if environ is None else environ
    recording = RecordingEnviron(environ)
    tree, sourceMap = readText(text, filename, recording, problems)
    return _finish(
        tree, sourceMap, problems, environ, reservedPorts, envSecrets=recording.secrets()
    )


def _finish(
    tree: dict,
    sourceMap: SourceMap,
    problems: Problems,
    environ: Mapping[str, str],
    reservedPorts: Mapping[str, int] | None = None,
    modelsDir: str | None = None,
    envSecrets: frozenset[str] = frozenset(),
) -> LoadedConfig:
    problems.sourceMap = sourceMap
    problems.raiseIfErrors()
    searchPath = environ.get("PATH", os.defpath)
    tree, folder = applyModelsDir(
        tree, problems, modelsDir, which=lambda name: shutil.which(name, path=searchPath)
    )
    problems.raiseIfErrors()
    expanded = expand(tree, sourceMap, problems, reservedPorts)
    config = buildConfig(expanded, problems)
    problems.raiseIfErrors()
    if config is None:
        raise ConfigError(list(problems) + [Problem("configuration did not load")])
    config = finishMemory(evolve(config, modelsDir=folder, envSecrets=envSecrets), problems)
    problems.raiseIfErrors()
    return LoadedConfig(config, tuple(problems.warnings))
