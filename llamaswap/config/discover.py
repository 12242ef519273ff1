# -*- test-case-name: test.config.test_discover -*-
"""
Serve a folder of models with no configuration: every C{*.gguf} under
C{modelsDir} (or C{--models-dir}) becomes a model.

 - The model ID is the file name without C{.gguf}; a split model
   (C{name-00001-of-00003.gguf}) counts once, as C{name}, by its first
   part.
 - An C{mmproj-*.gguf} is never a model: it is passed as C{--mmproj} to
   the model next to it (the one whose name it ends with, else the only
   model of its directory).
 - The command is the template C{modelsDir.cmd} (default
   L{DEFAULT_MODELS_DIR_CMD}) with C{${MODEL_PATH}} replaced by the file's
   path (shell-quoted); C{${PORT}} and C{${MODEL_ID}} are then expanded
   like any model's.
 - Explicit C{models:} entries win: a discovered model whose ID is an
   explicit model's ID or alias is left out.

This runs on the raw tree before macro expansion (L{applyModelsDir});
L{discoverModels} is the pure part, over a listing of relative paths.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from typing import Any, Callable, Iterable, Mapping

from attrs import frozen

from .cmdline import EmptyCommand, splitCommand
from .errors import Problems
from .keys import MODELS_DIR_KEYS
from .model import DEFAULT_MODELS_DIR_CMD, ModelsDirConfig

__all__ = [
    "MODELS_DIR_KEYS",
    "DiscoveredModel",
    "applyModelsDir",
    "discoverModels",
    "listGGUF",
    "modelCommand",
]

MODEL_PATH_MACRO = "${MODEL_PATH}"

_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})$")
_MMPROJ = re.compile(r"^mmproj[-_.]?", re.IGNORECASE)


@frozen
class DiscoveredModel:
    """
    A model found in the folder.

    @ivar path: its file (the first part of a split model), relative to
        the folder.
    @ivar mmproj: its projector, relative to the folder, if any.
    """

    modelID: str
    path: str
    mmproj: str | None = None


def discoverModels(files: Iterable[str]) -> tuple[dict[str, DiscoveredModel], list[str]]:
    """
    The models among C{files} (paths relative to the folder, C{/}
    separated), by ID, and warnings (duplicate IDs: the first path in
    sorted order wins).
    """
    models: dict[str, DiscoveredModel] = {}
    warnings: list[str] = []
    projectors: dict[str, list[str]] = {}
    for path in sorted(files):
        directory, _, name = path.rpartition("/")
        if not name.lower().endswith(".gguf"):
            continue
        stem = name[: -len(".gguf")]
        if _MMPROJ.match(stem):
            projectors.setdefault(directory, []).append(path)
            continue
        split = _SPLIT.match(stem)
        if split is not None:
            if int(split["index"]) != 1:
                continue
            stem = split["stem"]
        if stem in models:
            warnings.append(f"{path}: model {stem} is already {models[stem].path}; skipped")
            continue
        models[stem] = DiscoveredModel(stem, path)
    for directory, found in projectors.items():
        here = [m for m in models.values() if m.path.rpartition("/")[0] == directory]
        for projector in found:
            suffix = _MMPROJ.sub("", projector.rpartition("/")[2][: -len(".gguf")])
            matches = [
                m
                for m in here
                if suffix and (m.modelID.startswith(suffix) or suffix.startswith(m.modelID))
            ]
            if not matches and len(here) == 1:
                matches = here
            for model in matches:
                if models[model.modelID].mmproj is None:
                    models[model.modelID] = DiscoveredModel(model.modelID, model.path, projector)
    return models, warnings


def modelCommand(template: str, root: str, model: DiscoveredModel) -> str:
    """
    The command of a discovered model: C{template} with C{${MODEL_PATH}}
    replaced, plus C{--mmproj} for a llama-server with a projector.
    """
    path = shlex.quote(os.path.join(root, model.path))
    cmd = template.replace(MODEL_PATH_MACRO, path)
    if model.mmproj is not None and _program(template).startswith("llama-server"):
        cmd += " --mmproj " + shlex.quote(os.path.join(root, model.mmproj))
    return cmd


def _program(template: str) -> str:
    try:
        return os.path.basename(splitCommand(template)[0])
    except EmptyCommand:
        return ""


def listGGUF(root: str) -> list[str]:
    """
    Every C{*.gguf} under C{root}, relative to it, C{/} separated;
    hidden files and directories are skipped.

    @raise OSError: C{root} cannot be read.
    """
    if not os.path.isdir(root):
        raise NotADirectoryError(f"not a directory: {root}")
    found = []
    for directory, subdirs, names in os.walk(root, followlinks=True):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        relative = os.path.relpath(directory, root)
        for name in names:
            if name.lower().endswith(".gguf") and not name.startswith("."):
                joined = name if relative == "." else os.path.join(relative, name)
                found.append(joined.replace(os.sep, "/"))
    return found


def _decode(value: Any, override: str | None, problems: Problems) -> ModelsDirConfig | None:
    path, cmd, watch = override, DEFAULT_MODELS_DIR_CMD, True
    if isinstance(value, str):
        path = path or value
    elif isinstance(value, Mapping):
        for key in value:
            if str(key) not in MODELS_DIR_KEYS:
                problems.warn(
                    f"unknown key {str(key)!r} (valid: path, cmd, watch)", ("modelsDir", str(key))
                )
        if value.get("path") is not None and not isinstance(value["path"], str):
            problems.error("must be a directory path", ("modelsDir", "path"))
        elif value.get("path"):
            path = path or value["path"]
        if value.get("cmd") is not None:
            if not isinstance(value["cmd"], str) or not value["cmd"].strip():
                problems.error("must be a command line", ("modelsDir", "cmd"))
            else:
                cmd = value["cmd"]
        if value.get("watch") is not None:
            if not isinstance(value["watch"], bool):
                problems.error("must be true or false", ("modelsDir", "watch"))
            else:
                watch = value["watch"]
    elif value is not None:
        problems.error("must be a directory path or a mapping with path and cmd", ("modelsDir",))
    if not path:
        if value is not None:
            problems.error("needs a path", ("modelsDir",))
        return None
    return ModelsDirConfig(path=os.path.expanduser(path), cmd=cmd, watch=watch)


def applyModelsDir(
    tree: dict,
    problems: Problems,
    override: str | None = None,
    listFiles: Callable[[str], list[str]] = listGGUF,
    which: Callable[[str], str | None] = shutil.which,
) -> tuple[dict, ModelsDirConfig | None]:
    """
    Take C{modelsDir} out of the raw C{tree} and add the models it
    discovers to C{tree["models"]} (explicit ones win).

    @param override: C{--models-dir}, which replaces C{modelsDir.path}.
    @return: the new tree and the folder's configuration, if any.
    """
    tree = dict(tree)
    settings = _decode(tree.pop("modelsDir", None), override, problems)
    if settings is None:
        return tree, None
    where = ("modelsDir",)
    try:
        files = listFiles(settings.path)
    except OSError as e:
        problems.error(f"modelsDir {settings.path}: {e.strerror or e}", where)
        return tree, settings
    program = _programPath(settings.cmd)
    if program is not None and which(program) is None:
        problems.error(
            f"modelsDir: {program} was not found on PATH; install it (llama.cpp's"
            " llama-server) or set modelsDir.cmd to the server to run",
            where,
        )
    discovered, warnings = discoverModels(files)
    for warning in warnings:
        problems.warn(warning, where)
    if not discovered:
        problems.warn(f"modelsDir {settings.path}: no *.gguf models found", where)
    explicit = tree.get("models")
    if explicit is not None and not isinstance(explicit, Mapping):
        return tree, settings  # reported by the later stages
    explicit = dict(explicit or {})
    taken = set(map(str, explicit))
    for body in explicit.values():
        if isinstance(body, Mapping) and isinstance(body.get("aliases"), list):
            taken.update(str(a) for a in body["aliases"])
    models = {
        modelID: {"cmd": modelCommand(settings.cmd, settings.path, model)}
        for modelID, model in discovered.items()
        if modelID not in taken
    }
    models.update(explicit)
    if models or "models" in tree:
        tree["models"] = models
    return tree, settings


def _programPath(cmd: str) -> str | None:
    """
    The program of C{cmd} when it must be looked up (not a path, no macro).
    """
    try:
        program = splitCommand(cmd)[0]
    except EmptyCommand:
        return None
    if "${" in program:
        return None
    return program
