# -*- test-case-name: test.config.test_memory -*-
"""
The configuration of memory scheduling and per-request keep-alive: the
keys' decoders (called by the builder) and L{finishMemory}, the loading
step after it that detects an C{auto} budget, checks each model's
C{devices} against the budget and estimates every model's memory from
its GGUF file.

Keys::

    memoryBudget: 24GiB          # or {gpu0: 24GiB, gpu1: 24GiB}, or auto
    memoryReserve: 1GiB          # kept back from an auto budget, per device
    requestTTL: {enabled: true, max: 1h}
    models:
      m: {memory: 6GiB, devices: [gpu1]}
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from attrs import evolve

from .cmdline import EmptyCommand, splitCommand
from .devices import POOL, detectDeviceMemory
from .errors import KeyPath, Problems
from .ggufsize import estimateCommand
from .keys import REQUEST_TTL_KEYS
from .model import Config, FrozenDict, MemoryConfig, ModelConfig, RequestTTLConfig
from .sizes import formatSize, parseSeconds, parseSize

__all__ = [
    "DEFAULT_RESERVE",
    "REQUEST_TTL_KEYS",
    "decodeBudget",
    "decodeDevices",
    "decodeModelMemory",
    "decodeRequestTTL",
    "budgetFields",
    "finishMemory",
    "memoryFields",
    "memoryInUse",
    "modelNeeds",
    "splitNeed",
]

#: What an C{auto} budget keeps back per device unless C{memoryReserve} says.
DEFAULT_RESERVE = MemoryConfig().reserve

Detector = Callable[[], tuple[dict[str, int], str]]


def _size(value: Any, path: KeyPath, problems: Problems) -> int | None:
    try:
        return parseSize(value)
    except ValueError as e:
        problems.error(str(e), path)
        return None


def _budgetSize(value: Any, path: KeyPath, problems: Problems) -> int | None:
    size = _size(value, path, problems)
    if size == 0:
        problems.error("must be more than 0 (no budget: leave memoryBudget out)", path)
        return None
    return size


def decodeBudget(budget: Any, reserve: Any, problems: Problems) -> MemoryConfig:
    """
    C{memoryBudget} and C{memoryReserve}.
    """
    reserveBytes = DEFAULT_RESERVE
    if reserve is not None:
        reserveBytes = _size(reserve, ("memoryReserve",), problems) or 0
    if budget is None:
        return MemoryConfig(reserve=reserveBytes)
    if isinstance(budget, str) and budget.strip().lower() == "auto":
        return MemoryConfig(auto=True, reserve=reserveBytes)
    if isinstance(budget, Mapping):
        devices = {}
        for key, value in budget.items():
            size = _budgetSize(value, ("memoryBudget", str(key)), problems)
            if size is not None:
                devices[str(key)] = size
        if not budget:
            problems.error("memoryBudget: needs at least one device", ("memoryBudget",))
        return MemoryConfig(budget=FrozenDict(devices), reserve=reserveBytes)
    size = _budgetSize(budget, ("memoryBudget",), problems)
    if size is None:
        return MemoryConfig(reserve=reserveBytes)
    return MemoryConfig(budget=FrozenDict({POOL: size}), reserve=reserveBytes)


def decodeModelMemory(value: Any, path: KeyPath, problems: Problems) -> int | None:
    """
    A model's C{memory}.
    """
    if value is None:
        return None
    return _size(value, path, problems)


def decodeDevices(value: Any, path: KeyPath, problems: Problems) -> tuple[str, ...]:
    """
    A model's C{devices}: a list of device names (or one name).
    """
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        problems.error("must be a list of device names such as [gpu0, gpu1]", path)
        return ()
    return tuple(dict.fromkeys(v.strip() for v in value if v.strip()))


def decodeRequestTTL(value: Any, problems: Problems) -> RequestTTLConfig:
    """
    C{requestTTL}: C{true}/C{false}, or C{{enabled, max}}.
    """
    path: KeyPath = ("requestTTL",)
    if value is None:
        return RequestTTLConfig()
    if isinstance(value, bool):
        return RequestTTLConfig(enabled=value)
    if not isinstance(value, Mapping):
        problems.error("must be true, false or a mapping with enabled and max", path)
        return RequestTTLConfig()
    for key in value:
        if str(key) not in REQUEST_TTL_KEYS:
            problems.warn(f"unknown key {str(key)!r} (valid: enabled, max)", path + (str(key),))
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.error("must be true or false", path + ("enabled",))
        enabled = True
    maxSeconds = 0
    if value.get("max") is not None:
        try:
            parsed = parseSeconds(value["max"])
        except ValueError as e:
            problems.error(str(e), path + ("max",))
        else:
            if parsed < 0:
                problems.error("must not be negative", path + ("max",))
            else:
                maxSeconds = int(parsed)
    return RequestTTLConfig(enabled=enabled, max=maxSeconds)


# ------------------------------------------------------------------ finishing


def estimateModel(model: ModelConfig) -> int | None:
    """
    The estimated memory of C{model} from the GGUF file its command loads.
    """
    try:
        argv = splitCommand(model.cmd)
    except EmptyCommand:
        return None
    estimate = estimateCommand(argv)
    return None if estimate is None else estimate.total


def finishMemory(
    config: Config,
    problems: Problems,
    detect: Detector = detectDeviceMemory,
    estimate: Callable[[ModelConfig], int | None] = estimateModel,
) -> Config:
    """
    Detect an C{auto} budget, estimate the models without C{memory}, and
    check that every model's C{devices} are devices of the budget.
    """
    memory = config.memory
    if memory.auto:
        found, source = detect()
        if not found:
            problems.error(
                "memoryBudget: auto found no nvidia-smi, no rocm-smi and no /proc/meminfo;"
                " give a size instead",
                ("memoryBudget",),
            )
        budget = {d: max(0, size - memory.reserve) for d, size in found.items()}
        for device, size in sorted(found.items()):
            if size <= memory.reserve:
                problems.error(
                    f"memoryBudget: auto: memoryReserve ({formatSize(memory.reserve)}) leaves"
                    f" nothing of {device}'s {formatSize(size)} ({source})",
                    ("memoryReserve",),
                )
        memory = evolve(memory, budget=FrozenDict(budget))
    models = {}
    for modelID, model in config.models.items():
        if model.memory is None:
            model = evolve(model, estimatedMemory=estimate(model))
        models[modelID] = model
        _checkDevices(model, memory.budget, problems)
    return evolve(config, memory=memory, models=FrozenDict(models))


def _checkDevices(model: ModelConfig, budget: Mapping[str, int], problems: Problems) -> None:
    for i, device in enumerate(model.devices):
        path = ("models", model.id, "devices", i)
        if not budget:
            problems.warn(f"model {model.id}: devices has no effect without memoryBudget", path)
            return
        if device not in budget:
            known = ", ".join(sorted(budget))
            problems.error(
                f"model {model.id}: unknown device {device!r} (memoryBudget has: {known})", path
            )


def splitNeed(
    size: int | None, devices: Sequence[str], budget: Mapping[str, int]
) -> dict[str, int]:
    """
    What a model of C{size} bytes (L{None}: unknown) needs on each device
    of C{devices} (empty: every device of C{budget}): an even split, the
    remainder on the first; an unknown size needs every device whole.
    """
    chosen = list(devices) or sorted(budget)
    if not chosen:
        return {}
    if size is None:
        return {d: budget.get(d, 0) for d in chosen}
    share, remainder = divmod(size, len(chosen))
    return {d: share + (remainder if i == 0 else 0) for i, d in enumerate(chosen)}


def modelNeeds(config: Config) -> dict[str, dict[str, int]]:
    """
    Every model's need per device of C{config}'s budget (empty without
    one).
    """
    budget = config.memory.budget
    if not budget:
        return {}
    return {m: splitNeed(c.memoryNeed, c.devices, budget) for m, c in config.models.items()}


def memoryInUse(needs: Mapping[str, Mapping[str, int]], running: Iterable[str]) -> dict[str, int]:
    """
    The memory the C{running} models hold per device.
    """
    used: dict[str, int] = {}
    for model in running:
        for device, n in needs.get(model, {}).items():
            used[device] = used.get(device, 0) + n
    return used


def describeMemory(model: ModelConfig) -> str:
    """
    A model's memory for people: C{"6.0 GiB"}, C{"1.2 GiB (estimated)"} or
    C{"unknown"}.
    """
    if model.memory is not None:
        return formatSize(model.memory)
    if model.estimatedMemory is not None:
        return f"{formatSize(model.estimatedMemory)} (estimated)"
    return "unknown"


def describeBudget(memory: MemoryConfig) -> Sequence[str]:
    """
    The budget for people, one line per device.
    """
    return [
        f"{device}: {formatSize(size)}" + (" (auto)" if memory.auto else "")
        for device, size in sorted(memory.budget.items())
    ]


def memoryFields(model: ModelConfig) -> dict[str, Any]:
    """
    A model's memory for JSON documents (C{/running}, C{/api/events}):
    C{memory} in bytes and whether it is an estimate; nothing when unknown
    (the documents stay llama-swap's).
    """
    if model.memoryNeed is None:
        return {}
    return {
        "memory": model.memoryNeed,
        "memory_estimated": model.memory is None and model.estimatedMemory is not None,
    }


def budgetFields(config: Config, running: Iterable[str]) -> dict[str, Any]:
    """
    The budget and what the C{running} models hold of it, per device, for
    C{/running}.
    """
    budget = config.memory.budget
    return {
        "budget": dict(budget),
        "in_use": {d: 0 for d in budget} | memoryInUse(modelNeeds(config), running),
    }
