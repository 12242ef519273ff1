# -*- test-case-name: test.test_promptcachesetup -*-
"""
Turn the configuration's C{promptCache} settings into prompt-cache hooks
for the supervisors, and their commands into ones that save slots.

A model gets a prompt cache when C{promptCache} is on for it and its
command runs C{llama-server} (or already has C{--slot-save-path}, which
only llama-server understands).  llamaswap appends
C{--slot-save-path <promptCacheDir>} when the command has none; with the
user's own path, the files go there instead (and the cap applies to that
directory separately).
"""

from __future__ import annotations

import os
from typing import Mapping

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IAgent

from .config.model import Config
from .upstream.cachedir import CacheDirectory
from .upstream.promptcache import (
    SLOT_SAVE_PATH,
    isLlamaServer,
    optionValue,
    withSlotSavePath,
)
from .upstream.promptcachehooks import PromptCacheHooks, ReportObserver
from .upstream.slots import SlotsClient
from .upstream.spec import UpstreamSpec

log = Logger()


def defaultPromptCacheDir(environ: Mapping[str, str] | None = None) -> str:
    """
    Where slot files go by default: systemd's C{StateDirectory}, else
    C{$XDG_STATE_HOME/llamaswap/promptcache}, else
    C{~/.local/state/llamaswap/promptcache}.  Not the runtime directory:
    that is often a RAM disk, and these files are large.
    """
    environ = os.environ if environ is None else environ
    state = environ.get("STATE_DIRECTORY")
    if state:
        return os.path.join(state.split(":")[0], "promptcache")
    xdg = environ.get("XDG_STATE_HOME")
    base = xdg if xdg else os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "llamaswap", "promptcache")


def preparePromptCaches(
    config: Config,
    specs: Mapping[str, UpstreamSpec],
    *,
    clock: IReactorTime,
    agent: IAgent,
    observe: ReportObserver | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[dict[str, UpstreamSpec], dict[str, PromptCacheHooks]]:
    """
    The specs with C{--slot-save-path} added where needed, and the hooks of
    each model whose prompt cache is on.
    """
    settings = config.promptCache
    defaultDir = os.path.abspath(
        os.path.expanduser(settings.directory or defaultPromptCacheDir(environ))
    )
    directories: dict[str, CacheDirectory] = {}
    outSpecs = dict(specs)
    hooks: dict[str, PromptCacheHooks] = {}
    for modelID, spec in specs.items():
        model = config.models.get(modelID)
        if model is None or not model.promptCache:
            continue
        argv = spec.argv
        if not isLlamaServer(argv) and optionValue(argv, (SLOT_SAVE_PATH,)) is None:
            log.warn(
                "[{model}] promptCache is on but its command does not run llama-server"
                " (and has no --slot-save-path): no prompt cache for it",
                model=modelID,
            )
            continue
        argv, saveDir = withSlotSavePath(argv, defaultDir)
        saveDir = os.path.abspath(os.path.join(spec.cwd or os.getcwd(), saveDir))
        directory = directories.get(saveDir)
        if directory is None:
            directory = directories[saveDir] = CacheDirectory(saveDir, settings.maxBytes)
            try:
                directory.ensure()
            except OSError as e:
                log.error(
                    "prompt cache directory {path} cannot be created ({error}); "
                    "saves will fail and models start cold",
                    path=saveDir,
                    error=e,
                )
        outSpecs[modelID] = attrs.evolve(spec, argv=argv)
        hooks[modelID] = PromptCacheHooks(
            modelID,
            argv,
            directory=directory,
            client=SlotsClient(agent, clock, spec.proxy, timeout=float(settings.timeout)),
            clock=clock,
            cwd=spec.cwd,
            observe=observe,
            timeout=float(settings.timeout),
        )
    return outSpecs, hooks
