# -*- test-case-name: test.config.test_load -*-
"""
The one entry point for loading configuration: sources, macros, objects.
"""

from __future__ import annotations

import os
from typing import Mapping

from attrs import frozen

from .build import buildConfig
from .errors import ConfigError, Problem, Problems
from .macros import expand
from .model import Config
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
) -> LoadedConfig:
    """
    Load, merge, expand and validate the configuration sources.

    @param reservedPorts: model ID to the C{${PORT}} it keeps (see
        L{llamaswap.config.macros.expand}); a reload passes the ports of
        the running configuration so that they never move.
    @raise ConfigError: carrying every error (and warning) found.
    """
    problems = Problems()
    tree, sourceMap = readSources(
        configPath, configDir, os.environ if environ is None else environ, problems
    )
    return _finish(tree, sourceMap, problems, reservedPorts)


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
    tree, sourceMap = readText(
        text, filename, os.environ if environ is None else environ, problems
    )
    return _finish(tree, sourceMap, problems, reservedPorts)


def _finish(
    tree: dict, sourceMap, problems: Problems, reservedPorts: Mapping[str, int] | None
) -> LoadedConfig:
    problems.sourceMap = sourceMap
    problems.raiseIfErrors()
    expanded = expand(tree, sourceMap, problems, reservedPorts)
    config = buildConfig(expanded, problems)
    problems.raiseIfErrors()
    if config is None:
        raise ConfigError(list(problems) + [Problem("configuration did not load")])
    return LoadedConfig(config, tuple(problems.warnings))
