# -*- test-case-name: test.config.test_load -*-
"""
The one entry point for loading configuration: sources, macros, objects.
"""

from __future__ import annotations

import os
from typing import Mapping

from attrs import evolve, frozen

from .build import buildConfig
from .errors import ConfigError, Problem, Problems
from .macros import expand
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
) -> LoadedConfig:
    """
    Load, merge, expand and validate the configuration sources.

    @raise ConfigError: carrying every error (and warning) found.
    """
    problems = Problems()
    recording = RecordingEnviron(os.environ if environ is None else environ)
    tree, sourceMap = readSources(configPath, configDir, recording, problems)
    return _finish(tree, sourceMap, problems, recording.secrets())


def loadConfigText(
    text: str,
    filename: str = "<string>",
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """
    Load a configuration held in a string (tests, C{check-config -}).

    @raise ConfigError: carrying every error (and warning) found.
    """
    problems = Problems()
    recording = RecordingEnviron(os.environ if environ is None else environ)
    tree, sourceMap = readText(text, filename, recording, problems)
    return _finish(tree, sourceMap, problems, recording.secrets())


def _finish(
    tree: dict, sourceMap, problems: Problems, envSecrets: frozenset[str] = frozenset()
) -> LoadedConfig:
    problems.sourceMap = sourceMap
    problems.raiseIfErrors()
    expanded = expand(tree, sourceMap, problems)
    config = buildConfig(expanded, problems)
    problems.raiseIfErrors()
    if config is None:
        raise ConfigError(list(problems) + [Problem("configuration did not load")])
    return LoadedConfig(evolve(config, envSecrets=envSecrets), tuple(problems.warnings))
