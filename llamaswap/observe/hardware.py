# -*- test-case-name: test.observe.test_hardware -*-
"""
The host's hardware for C{GET /api/hardware} (HTTP behaviour section
7.11): CPU model, cores and threads (C{/proc/cpuinfo}), memory
(C{/proc/meminfo}), accelerators (C{nvidia-smi}, C{rocm-smi}), operating
system (C{uname}, C{/etc/os-release}) and the runtime environment
(container, WSL).

Detection runs once at start, asynchronously (GPU tools run in child
processes, each bounded by L{DETECTION_TIMEOUT}); the snapshot is cached
and refreshed in the background when a request finds it older than
C{refreshAfter} seconds.  The parsers are pure functions at the top.
"""

from __future__ import annotations

import json
import os
import platform
from typing import Any, Callable, Mapping, NamedTuple

from attrs import define, field
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    FirstError,
    gatherResults,
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .. import __version__
from . import sysstats
from .commands import CommandRunner, Locator, locate
from .lateservice import LateStartService

log = Logger()

#: Version of the document's shape.
SCHEMA_VERSION = 1
#: The longest one GPU tool may take, in seconds (llama-swap allows 10).
DETECTION_TIMEOUT = 10.0
#: Seconds after which a request triggers a fresh detection.
REFRESH_AFTER = 60.0

NVIDIA_HARDWARE_FIELDS = ("index", "name", "uuid", "memory.total", "driver_version", "pci.bus_id")
NVIDIA_HARDWARE_ARGS = (
    "--query-gpu=" + ",".join(NVIDIA_HARDWARE_FIELDS),
    "--format=csv,noheader,nounits",
)
ROCM_HARDWARE_ARGS = (
    "--showproductname",
    "--showmeminfo",
    "vram",
    "--showuniqueid",
    "--showbus",
    "--showdriverversion",
    "--json",
)

#: Reads a file by absolute path, raising L{OSError} when it cannot.
FileReader = Callable[[str], str]


class Uname(NamedTuple):
    """
    The parts of C{os.uname()} the snapshot uses.
    """

    sysname: str
    release: str
    version: str
    machine: str


def readFile(path: str) -> str:
    """
    The text of the file at C{path}.
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def localUname() -> Uname:
    u = os.uname()
    return Uname(u.sysname, u.release, u.version, u.machine)


# -- parsers -------------------------------------------------------------------


def parseCPUInfo(text: str) -> dict[str, Any]:
    """
    C{/proc/cpuinfo} as C{{model, vendor, sockets, cores, threads}}:
    threads are the logical processors; cores the distinct (package, core
    ID) pairs (the thread count when the file does not say).
    """
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines() + [""]:
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, colon, value = line.partition(":")
        if colon:
            current[key.strip().lower()] = value.strip()
    processors = [b for b in blocks if "processor" in b]
    if not processors:
        raise sysstats.ParseError("no processor entries in /proc/cpuinfo")
    first = processors[0]
    everything: dict[str, str] = {}
    for block in blocks:
        for key, value in block.items():
            everything.setdefault(key, value)
    model = (
        first.get("model name")
        or everything.get("model name")
        or everything.get("hardware")
        or everything.get("cpu model")
        or everything.get("cpu")
        or ""
    )
    pairs = {(b.get("physical id", "0"), b["core id"]) for b in processors if "core id" in b}
    sockets = {b["physical id"] for b in processors if "physical id" in b}
    return {
        "model": model,
        "vendor": first.get("vendor_id") or everything.get("cpu implementer", ""),
        "sockets": len(sockets) or 1,
        "cores": len(pairs) or len(processors),
        "threads": len(processors),
    }


def parseOSRelease(text: str) -> dict[str, str]:
    """
    C{/etc/os-release} as a mapping (quotes removed).
    """
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1].replace('\\"', '"')
        values[key.strip()] = value
    return values


def operatingSystem(uname: Uname, osRelease: Mapping[str, str] | None) -> dict[str, Any]:
    """
    The C{operating_system} section.
    """
    release = osRelease or {}
    return {
        "name": uname.sysname,
        "kernel": uname.release,
        "distribution": {
            "id": release.get("ID", ""),
            "name": release.get("NAME", ""),
            "version": release.get("VERSION_ID", ""),
            "pretty_name": release.get("PRETTY_NAME", ""),
        },
    }


def containerKind(markers: Mapping[str, str | None]) -> str | None:
    """
    The container runtime that C{markers} (path to text, L{None} when
    absent) reveal: C{/.dockerenv}, C{/run/.containerenv} and the cgroup
    of process 1.
    """
    if markers.get("/.dockerenv") is not None:
        return "docker"
    if markers.get("/run/.containerenv") is not None:
        return "podman"
    cgroup = markers.get("/proc/1/cgroup") or ""
    for word, kind in (("kubepods", "kubernetes"), ("docker", "docker"), ("libpod", "podman"),
                       ("lxc", "lxc")):
        if word in cgroup:
            return kind
    return None


def parseNvidiaHardware(text: str) -> list[dict[str, Any]]:
    """
    C{nvidia-smi} rows of L{NVIDIA_HARDWARE_FIELDS} as accelerators.
    """
    devices = []
    for row in sysstats.csvRows(text):
        if len(row) != len(NVIDIA_HARDWARE_FIELDS):
            raise sysstats.ParseError(f"nvidia-smi row has {len(row)} fields: {row!r}")
        values = dict(zip(NVIDIA_HARDWARE_FIELDS, row))
        devices.append(
            {
                "vendor": "nvidia",
                "api": "cuda",
                "index": int(sysstats.smiNumber(values["index"])),
                "name": values["name"],
                "uuid": values["uuid"],
                "memory_bytes": int(sysstats.smiNumber(values["memory.total"])) * 1024 * 1024,
                "driver_version": values["driver_version"],
                "pci_bus_id": values["pci.bus_id"],
            }
        )
    return devices


def parseRocmHardware(text: str) -> list[dict[str, Any]]:
    """
    C{rocm-smi} JSON (L{ROCM_HARDWARE_ARGS}) as accelerators.
    """
    document = json.loads(text) if text.strip() else {}
    system = document.get("system", {}) if isinstance(document, dict) else {}
    driver = sysstats.rocmField(system, "Driver version") if isinstance(system, dict) else None
    devices = []
    for number, card in sysstats.rocmCards(text):
        devices.append(
            {
                "vendor": "amd",
                "api": "rocm",
                "index": number,
                "name": sysstats.rocmName(card),
                "uuid": str(sysstats.rocmField(card, "Unique ID") or ""),
                "memory_bytes": int(sysstats.smiNumber(sysstats.rocmField(card, "VRAM Total Memory"))),
                "driver_version": str(
                    sysstats.rocmField(card, "Driver version") or driver or ""
                ),
                "pci_bus_id": str(sysstats.rocmField(card, "PCI Bus") or ""),
            }
        )
    return devices


class _Stopped(Exception):
    """
    Detection was cancelled because the service stopped.
    """


# -- detection -------------------------------------------------------------------


ACCELERATOR_TOOLS = (
    ("nvidia-smi", NVIDIA_HARDWARE_ARGS, parseNvidiaHardware),
    ("rocm-smi", ROCM_HARDWARE_ARGS, parseRocmHardware),
)


@define(eq=False, slots=False)
class HardwareDetector(LateStartService):
    """
    Detects once when started and keeps the snapshot; L{current} gives
    it to C{/api/hardware}.

    @ivar snapshot: the latest document, L{None} before the first
        detection finished or when it failed.
    @ivar error: why the last detection failed, if it did.
    """

    clock: IReactorTime
    runner: CommandRunner
    reader: FileReader = field(default=readFile, kw_only=True)
    locator: Locator = field(default=locate, kw_only=True)
    uname: Callable[[], Uname] = field(default=localUname, kw_only=True)
    refreshAfter: float = field(default=REFRESH_AFTER, kw_only=True)
    snapshot: dict[str, Any] | None = field(default=None, init=False)
    error: str | None = field(default=None, init=False)
    _capturedAt: float | None = field(default=None, init=False)
    _detecting: Deferred[dict[str, Any] | None] | None = field(default=None, init=False)
    _waiters: list[Deferred[dict[str, Any] | None]] = field(factory=list, init=False)

    def startLate(self) -> object:
        return self.refresh()

    def stopService(self) -> None:
        super().stopService()
        detecting, self._detecting = self._detecting, None
        if detecting is not None:
            detecting.cancel()

    def current(self) -> Deferred[dict[str, Any] | None]:
        """
        The snapshot (L{None} when detection failed).  A stale one is
        given at once while a fresh detection runs; before the first
        detection finished, wait for it.
        """
        if self.snapshot is not None:
            assert self._capturedAt is not None
            if self.clock.seconds() - self._capturedAt >= self.refreshAfter:
                self.refresh()
            return succeed(self.snapshot)
        if self._detecting is None:
            self.refresh()
        waiter: Deferred[dict[str, Any] | None] = Deferred()
        self._waiters.append(waiter)
        if self._detecting is None:  # finished synchronously
            self._release()
        return waiter

    def refresh(self) -> None:
        """
        Start a detection unless one runs.
        """
        if self._detecting is not None:
            return
        started = self.clock.seconds()
        d = self._accelerators()
        self._detecting = d.addCallback(self._assemble, started)
        d.addCallbacks(self._detected, self._failed, (started,))
        d.addBoth(lambda _: self._release())

    def _accelerators(self) -> Deferred[Any]:
        queries = []
        methods = ["procfs"]
        for binary, args, parse in ACCELERATOR_TOOLS:
            path = self.locator(binary)
            if path is None:
                continue
            methods.append(binary)
            d = self.runner([path, *args], DETECTION_TIMEOUT)
            d.addCallback(lambda out, parse=parse: parse(out.decode("utf-8", "replace")))
            d.addErrback(self._toolFailed, binary)
            queries.append(d)
        d = gatherResults(queries, consumeErrors=True)
        d.addErrback(lambda f: f.value.subFailure if f.check(FirstError) else f)
        return d.addCallback(lambda lists: ([a for found in lists for a in found], methods))

    def _toolFailed(self, reason: Failure, binary: str) -> list[dict[str, Any]]:
        if reason.check(CancelledError):
            raise _Stopped()
        log.warn("hardware detection: {binary} failed: {error}", binary=binary,
                 error=reason.getErrorMessage())
        return []

    def _read(self, path: str) -> str | None:
        try:
            return self.reader(path)
        except OSError:
            return None

    def _assemble(self, found: tuple[list[dict[str, Any]], list[str]], started: float
                  ) -> dict[str, Any]:
        accelerators, methods = found
        uname = self.uname()
        cpuinfo = self._read("/proc/cpuinfo")
        meminfo = self._read("/proc/meminfo")
        if cpuinfo is None and meminfo is None:
            raise sysstats.ParseError("neither /proc/cpuinfo nor /proc/meminfo is readable")
        cpu = parseCPUInfo(cpuinfo) if cpuinfo is not None else {}
        if not cpu.get("model"):
            cpu["model"] = platform.processor() or uname.machine
        memory = sysstats.parseMeminfo(meminfo)["MemTotal"] if meminfo is not None else None
        osRelease = self._read("/etc/os-release") or self._read("/usr/lib/os-release")
        markers = {p: self._read(p) for p in ("/.dockerenv", "/run/.containerenv", "/proc/1/cgroup")}
        return {
            "schema_version": SCHEMA_VERSION,
            "captured_at": sysstats.formatStamp(sysstats.microseconds(started)),
            "capture": {
                "scope": "host",
                "method": "+".join(methods),
                "detector": {"name": "llamaswap", "version": __version__},
            },
            "architecture": uname.machine,
            "operating_system": operatingSystem(
                uname, parseOSRelease(osRelease) if osRelease is not None else None
            ),
            "environment": {
                "container": containerKind(markers),
                "wsl": "microsoft" in uname.release.lower(),
            },
            "cpu": cpu,
            "memory": {"capacity_bytes": memory},
            "accelerators": accelerators,
        }

    def _detected(self, snapshot: dict[str, Any], started: float) -> None:
        self.snapshot, self._capturedAt, self.error = snapshot, started, None

    def _failed(self, reason: Failure) -> None:
        if reason.check(_Stopped, CancelledError):
            self.error = "stopped"
            return
        self.error = reason.getErrorMessage()
        if self.snapshot is None:
            log.failure("hardware detection failed", reason)

    def _release(self) -> None:
        self._detecting = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(self.snapshot)


__all__ = [
    "HardwareDetector",
    "NVIDIA_HARDWARE_ARGS",
    "ROCM_HARDWARE_ARGS",
    "Uname",
    "containerKind",
    "operatingSystem",
    "parseCPUInfo",
    "parseNvidiaHardware",
    "parseOSRelease",
    "parseRocmHardware",
]
