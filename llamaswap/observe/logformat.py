# -*- test-case-name: test.observe.test_logformat -*-
"""
How llamaswap's log lines look: levels, Go's named time layouts, the line
format and Go's duration notation.

Pure functions: time is an argument, nothing here reads the clock.

A proxy log line is C{[<timestamp> ][LEVEL] <message>\\n}, as llama-swap
writes it; C{logTimeFormat} names one of Go's layout constants
(C{rfc3339}, C{kitchen}, ...), and an empty or unknown name means no
timestamp.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo

from twisted.logger import LogLevel, eventAsText

#: Config names of levels (C{logLevel}) to Twisted's levels.
LEVELS: dict[str, LogLevel] = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}

#: What each Twisted level is called in a line (llama-swap has no critical).
LEVEL_NAMES: dict[LogLevel, str] = {
    LogLevel.debug: "DEBUG",
    LogLevel.info: "INFO",
    LogLevel.warn: "WARN",
    LogLevel.error: "ERROR",
    LogLevel.critical: "ERROR",
}

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)


def parseLevel(name: str) -> LogLevel:
    """
    The level C{logLevel: name} asks for: case-insensitive, unknown means
    C{info} (llama-swap's rule).
    """
    return LEVELS.get(name.strip().lower(), LogLevel.info)


def _offset(d: datetime, colon: bool) -> str:
    delta = d.utcoffset() or timedelta(0)
    minutes = int(delta.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{mins:02d}"


def _zoneName(d: datetime) -> str:
    """
    Go's C{MST}: the zone abbreviation, or the numeric offset when the zone
    has none (Python names fixed offsets C{UTC+07:00}).
    """
    name = d.tzname() or ""
    if not name or (name.startswith("UTC") and len(name) > 3):
        return _offset(d, False)
    return name


def _rfc3339Zone(d: datetime) -> str:
    delta = d.utcoffset() or timedelta(0)
    return "Z" if delta == timedelta(0) else _offset(d, True)


def _nanoFraction(d: datetime) -> str:
    """
    Go's C{.999999999}: the fraction without trailing zeros, nothing at all
    when it is zero.
    """
    digits = f"{d.microsecond * 1000:09d}".rstrip("0")
    return "." + digits if digits else ""


def _parts(d: datetime) -> dict[str, str]:
    hour12 = d.hour % 12 or 12
    return {
        "Mon": _DAYS[d.weekday()][:3],
        "Monday": _DAYS[d.weekday()],
        "Jan": _MONTHS[d.month - 1][:3],
        "_2": f"{d.day:2d}",
        "02": f"{d.day:02d}",
        "2006": f"{d.year:04d}",
        "06": f"{d.year % 100:02d}",
        "01": f"{d.month:02d}",
        "hms": f"{d.hour:02d}:{d.minute:02d}:{d.second:02d}",
        "hm": f"{d.hour:02d}:{d.minute:02d}",
        "kitchen": f"{hour12}:{d.minute:02d}{'PM' if d.hour >= 12 else 'AM'}",
        "MST": _zoneName(d),
        "-0700": _offset(d, False),
    }


_LAYOUTS: dict[str, Callable[[datetime, dict[str, str]], str]] = {
    "ansic": lambda d, p: f"{p['Mon']} {p['Jan']} {p['_2']} {p['hms']} {p['2006']}",
    "unixdate": lambda d, p: f"{p['Mon']} {p['Jan']} {p['_2']} {p['hms']} {p['MST']} {p['2006']}",
    "rubydate": lambda d, p: f"{p['Mon']} {p['Jan']} {p['02']} {p['hms']} {p['-0700']} {p['2006']}",
    "rfc822": lambda d, p: f"{p['02']} {p['Jan']} {p['06']} {p['hm']} {p['MST']}",
    "rfc822z": lambda d, p: f"{p['02']} {p['Jan']} {p['06']} {p['hm']} {p['-0700']}",
    "rfc850": lambda d, p: f"{p['Monday']}, {p['02']}-{p['Jan']}-{p['06']} {p['hms']} {p['MST']}",
    "rfc1123": lambda d, p: f"{p['Mon']}, {p['02']} {p['Jan']} {p['2006']} {p['hms']} {p['MST']}",
    "rfc1123z": lambda d, p: (
        f"{p['Mon']}, {p['02']} {p['Jan']} {p['2006']} {p['hms']} {p['-0700']}"
    ),
    "rfc3339": lambda d, p: f"{p['2006']}-{p['01']}-{p['02']}T{p['hms']}{_rfc3339Zone(d)}",
    "rfc3339nano": lambda d, p: (
        f"{p['2006']}-{p['01']}-{p['02']}T{p['hms']}{_nanoFraction(d)}{_rfc3339Zone(d)}"
    ),
    "kitchen": lambda d, p: p["kitchen"],
    "stamp": lambda d, p: f"{p['Jan']} {p['_2']} {p['hms']}",
    "stampmilli": lambda d, p: f"{p['Jan']} {p['_2']} {p['hms']}.{d.microsecond // 1000:03d}",
    "stampmicro": lambda d, p: f"{p['Jan']} {p['_2']} {p['hms']}.{d.microsecond:06d}",
    "stampnano": lambda d, p: f"{p['Jan']} {p['_2']} {p['hms']}.{d.microsecond * 1000:09d}",
}

#: The layout names C{logTimeFormat} accepts.
TIME_FORMATS = tuple(_LAYOUTS)


def formatTime(when: float, layout: str, tz: tzinfo | None = None) -> str:
    """
    C{when} (POSIX seconds) in Go's layout called C{layout}, in local time
    (or C{tz}); C{""} for an empty or unknown layout name.
    """
    render = _LAYOUTS.get(layout.strip().lower())
    if render is None:
        return ""
    if tz is None:
        d = datetime.fromtimestamp(when).astimezone()
    else:
        d = datetime.fromtimestamp(when, tz)
    return render(d, _parts(d))


def formatLine(
    level: LogLevel,
    message: str,
    when: float,
    timeFormat: str = "",
    tz: tzinfo | None = None,
) -> bytes:
    """
    One log line, C{[<timestamp> ][LEVEL] <message>\\n}, UTF-8 encoded.
    """
    stamp = formatTime(when, timeFormat, tz)
    prefix = f"{stamp} " if stamp else ""
    name = LEVEL_NAMES.get(level, "INFO")
    return f"{prefix}[{name}] {message.rstrip(chr(10))}\n".encode("utf-8", "replace")


#: The C{log_format} of events carrying a pre-rendered C{line} (the access
#: log's), which every writer formats as just C{str(line)}.
LINE_FORMAT = "{line}"


def formatEventLine(event: dict, timeFormat: str = "", tz: tzinfo | None = None) -> bytes:
    """
    The log line for a Twisted log event: its formatted message (and a
    failure's traceback on the following lines).
    """
    if event.get("log_format") == LINE_FORMAT and "line" in event and "log_failure" not in event:
        # A pre-rendered line (the access log's): Twisted's formatter would
        # only call str() on it, through string.Formatter's slow path.
        text = str(event["line"])
    else:
        text = eventAsText(
            event, includeTraceback=True, includeTimestamp=False, includeSystem=False
        )
    level = event.get("log_level", LogLevel.info)
    when = event.get("log_time")
    if when is None:
        when = 0.0
    return formatLine(level, text, when, timeFormat, tz)


def goDuration(seconds: float) -> str:
    """
    C{seconds} as Go's C{time.Duration.String} writes it: C{0s}, C{850ns},
    C{12.5µs}, C{1.52ms}, C{2.3s}, C{1m2.5s}, C{2h0m1s}.
    """
    nanos = round(seconds * 1e9)
    negative = nanos < 0
    u = abs(nanos)
    sign = "-" if negative else ""
    if u < 1_000_000_000:
        if u == 0:
            return "0s"
        if u < 1000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            return f"{sign}{_fraction(u, 3)}µs"
        return f"{sign}{_fraction(u, 6)}ms"
    text = _fraction(u % 60_000_000_000, 9) + "s"
    minutes = u // 60_000_000_000
    if minutes:
        text = f"{minutes % 60}m{text}"
        hours = minutes // 60
        if hours:
            text = f"{hours}h{text}"
    return sign + text


def _fraction(value: int, digits: int) -> str:
    """
    C{value / 10**digits} with trailing zeros (and a bare point) removed.
    """
    whole, frac = divmod(value, 10**digits)
    fracText = f"{frac:0{digits}d}".rstrip("0")
    return f"{whole}.{fracText}" if fracText else f"{whole}"


__all__ = [
    "LEVELS",
    "LINE_FORMAT",
    "LEVEL_NAMES",
    "TIME_FORMATS",
    "formatEventLine",
    "formatLine",
    "formatTime",
    "goDuration",
    "parseLevel",
]
