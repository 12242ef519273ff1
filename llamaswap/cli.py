# -*- test-case-name: test.test_cli -*-
"""
The C{llamaswap} console script.

C{llamaswap [options]} runs the service in the foreground, exactly as
C{twistd --nodaemon --pidfile= llamaswap [options]} does.
C{llamaswap check-config FILE...} validates configuration files and prints
a one-screen summary, without starting anything.

llama-swap's command line works too: Go's flag package spells long options
with one dash or two, with the value after C{=} or as the next argument
(C{-config FILE}, C{--config=FILE}), and boolean flags as C{-flag} or
C{-flag=false}.  L{goFlags} rewrites those into the C{--long} options
Twisted parses; C{-validate} checks the configuration like C{check-config}.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence, TextIO

from . import __version__
from .config.errors import ConfigError
from .config.load import LoadedConfig, loadConfig
from .config.memory import describeBudget, describeMemory


def main(argv: Sequence[str] | None = None) -> None:
    """
    Entry point of the C{llamaswap} console script.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["check-config"]:
        raise SystemExit(checkConfig(args[1:], sys.stdout, sys.stderr))
    try:
        args = goFlags(args)
    except ValueError as e:
        print(f"llamaswap: {e}", file=sys.stderr)
        raise SystemExit(2)
    if "--version" in args:
        print(f"llamaswap version: {__version__}")
        raise SystemExit(0)
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", "--nodaemon", "--pidfile=", "llamaswap", *args]
    run()


#: Long options that take a value, and boolean flags, as llama-swap and
#: llamaswap spell them.
VALUE_OPTIONS = frozenset(
    {"config", "config-dir", "listen", "tls-cert-file", "tls-key-file", "shutdown-timeout"}
)
BOOLEAN_FLAGS = frozenset({"watch-config", "version", "validate", "help"})
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def goFlags(args: Sequence[str]) -> list[str]:
    """
    Rewrite Go-style long options (C{-config FILE}, C{-config=FILE},
    C{-watch-config=true}) into C{--long} options; everything else (short
    options such as C{-c FILE}, arguments after C{--}) is left alone.

    @raise ValueError: for a boolean flag with a value Go would refuse.
    """
    out: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            out.append(arg)
            out.extend(rest)
            break
        if arg == "-h":
            arg = "--help"
        name, equals, value = arg.lstrip("-").partition("=")
        dashes = len(arg) - len(arg.lstrip("-"))
        if dashes not in (1, 2) or (name not in VALUE_OPTIONS and name not in BOOLEAN_FLAGS):
            out.append(arg)
            continue
        if name in BOOLEAN_FLAGS:
            if not equals or value in _TRUE:
                out.append("--" + name)
            elif value not in _FALSE:
                raise ValueError(f"invalid boolean value {value!r} for -{name}")
            continue
        out.append(f"--{name}={value}" if equals else "--" + name)
        if not equals and rest:
            out.append(rest.pop(0))  # the value, whatever it looks like
    return out


def checkConfig(args: Sequence[str], out: TextIO, err: TextIO) -> int:
    """
    Validate each configuration given; return the exit status (0 when all
    loaded, 1 otherwise).
    """
    parser = argparse.ArgumentParser(
        prog="llamaswap check-config",
        description="Validate llamaswap configuration files without starting "
        "anything. Each FILE is checked on its own; with --config-dir, the "
        "directory's files are merged (after FILE, if exactly one is given).",
    )
    parser.add_argument("files", nargs="*", metavar="FILE")
    parser.add_argument("--config-dir", metavar="DIR")
    parser.add_argument("--models-dir", metavar="DIR", help="serve every *.gguf under DIR")
    try:
        options = parser.parse_args(args)
    except SystemExit as e:
        return int(e.code or 0) and 1
    if not options.files and not options.config_dir and not options.models_dir:
        parser.print_usage(err)
        print(
            "llamaswap check-config: give at least one FILE, --config-dir or --models-dir",
            file=err,
        )
        return 1
    if options.config_dir:
        if len(options.files) > 1:
            print("llamaswap check-config: --config-dir takes at most one FILE", file=err)
            return 1
        jobs = [(options.files[0] if options.files else None, options.config_dir)]
    else:
        jobs = [(path, None) for path in options.files] or [(None, None)]
    status = 0
    for index, (path, configDir) in enumerate(jobs):
        if index:
            print(file=out)
        name = " + ".join(p for p in (path, configDir, options.models_dir) if p)
        try:
            loaded = loadConfig(path, configDir, modelsDir=options.models_dir)
        except ConfigError as e:
            status = 1
            print(f"{name}: {len(e.errors)} error(s)", file=err)
            for problem in e.problems:
                print(f"  {problem}", file=err)
            continue
        for warning in loaded.warnings:
            print(f"  {warning}", file=err)
        print(f"{name}: OK", file=out)
        out.write(summarize(loaded))
    return status


def summarize(loaded: LoadedConfig) -> str:
    """
    A one-screen description of a loaded configuration: models with their
    ports and aliases, groups, peers.
    """
    config = loaded.config
    lines = []
    lines.append(f"  models ({len(config.models)}):")
    for modelID, model in config.models.items():
        details = []
        if model.port is not None:
            details.append(f"port {model.port}")
        details.append(f"proxy {model.proxy}")
        if model.aliases:
            details.append("aliases " + ", ".join(model.aliases))
        if model.ttl:
            details.append(f"ttl {model.ttl}s")
        if model.unlisted:
            details.append("unlisted")
        if model.memoryNeed is not None:
            details.append("memory " + describeMemory(model))
        lines.append(f"    {modelID}: " + "; ".join(details))
    if config.memory.budget:
        lines.append("  memory budget: " + ", ".join(describeBudget(config.memory)))
    routing = config.routing
    if routing.use == "matrix" and routing.matrix is not None:
        lines.append(f"  matrix sets ({len(routing.matrix.sets)}):")
        for matrixSet in routing.matrix.sets:
            lines.append(f"    {matrixSet.name}: {matrixSet.dsl}")
    else:
        lines.append(f"  groups ({len(routing.groups)}):")
        for name, group in routing.groups.items():
            flags = [
                f"swap={str(group.swap).lower()}",
                f"exclusive={str(group.exclusive).lower()}",
                f"persistent={str(group.persistent).lower()}",
            ]
            members = ", ".join(group.members) or "(none)"
            lines.append(f"    {name} [{' '.join(flags)}]: {members}")
    if config.peers:
        lines.append(f"  peers ({len(config.peers)}):")
        for peerID, peer in config.peers.items():
            lines.append(f"    {peerID}: {peer.proxy} ({len(peer.models)} models)")
    if config.legacyProfiles:
        lines.append(f"  v1 profiles ({len(config.legacyProfiles)}):")
        for name, members in config.legacyProfiles.items():
            lines.append(f"    {name}: {', '.join(members)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
