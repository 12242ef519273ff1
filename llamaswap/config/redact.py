# -*- test-case-name: test.config.test_redact -*-
"""
Secrets out of every command llamaswap shows.

A model's C{cmd} is shown by C{/running}, in log lines and in events; it
often carries an API key (C{--api-key sk-...}, llama-swap #761) or a value
taken from the environment with C{${env.NAME}}.  L{redactCommand} replaces
the value of every secret-looking flag (C{--api-key}, C{--hf-token},
C{--password=...}, C{HF_TOKEN=...} assignments) and every substring that
came from an environment variable with L{MASK}.  What runs is unchanged.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, Mapping, Sequence

#: What a secret is shown as.
MASK = "***"

#: Environment values shorter than this are not masked (a C{${env.GPU}}
#: of C{0} would otherwise mask every zero).
MIN_ENV_VALUE = 4

_SECRET_NAME = re.compile(
    r"(?i)(api[-_]?keys?|token|secret|passw(?:or)?d|passphrase|credential|auth"
    r"|private[-_]?key|access[-_]?key)"
)
# A flag and its value: "--name value", "--name=value", "-k value"; or an
# environment assignment "NAME=value".
_FLAG = re.compile(
    r"""(?P<flag>(?<![^\s"'])(?:--?[A-Za-z][\w.-]*|[A-Za-z_][A-Za-z0-9_]*(?==)))"""
    r"""(?P<sep>=|[ \t]+)"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s"'-][^\s"']*|(?<==)[^\s"']+)"""
)


class RecordingEnviron(Mapping[str, str]):
    """
    An environment that remembers the values read from it (the loader's
    C{${env.NAME}} substitutions), so they can be masked wherever the
    configuration is shown.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.used: set[str] = set()

    def __getitem__(self, name: str) -> str:
        value = self._environ[name]
        self.used.add(value)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)

    def secrets(self) -> frozenset[str]:
        """
        The values read that are long enough to mask.
        """
        return frozenset(v for v in self.used if len(v.strip()) >= MIN_ENV_VALUE)


def isSecretFlag(flag: str) -> bool:
    """
    Whether C{flag} (C{--api-key}, C{HF_TOKEN}) names a secret.
    """
    return _SECRET_NAME.search(flag.lstrip("-")) is not None


def redactCommand(command: str, secrets: Iterable[str] = ()) -> str:
    """
    C{command} with secret flag values and the C{secrets} (environment
    values) replaced by L{MASK}.
    """

    def mask(match: re.Match[str]) -> str:
        if not isSecretFlag(match.group("flag")):
            return match.group(0)
        return match.group("flag") + match.group("sep") + MASK

    text = _FLAG.sub(mask, command)
    for value in sorted(secrets, key=len, reverse=True):
        if value and len(value.strip()) >= MIN_ENV_VALUE:
            text = text.replace(value, MASK)
    return text


def redactArgv(argv: Sequence[str], secrets: Iterable[str] = ()) -> list[str]:
    """
    C{argv} with the value after (or in) each secret flag and every
    C{secrets} substring replaced by L{MASK}.
    """
    secrets = sorted((s for s in secrets if len(s.strip()) >= MIN_ENV_VALUE), key=len,
                     reverse=True)
    shown: list[str] = []
    hideNext = False
    for arg in argv:
        if hideNext and not arg.startswith("-"):
            shown.append(MASK)
            hideNext = False
            continue
        hideNext = False
        name, eq, _ = arg.partition("=")
        if eq and isSecretFlag(name) and (arg.startswith("-") or name.isidentifier()):
            arg = name + "=" + MASK
        elif arg.startswith("-") and isSecretFlag(arg):
            hideNext = True
        for value in secrets:
            arg = arg.replace(value, MASK)
        shown.append(arg)
    return shown


__all__ = [
    "MASK",
    "RecordingEnviron",
    "isSecretFlag",
    "redactArgv",
    "redactCommand",
]
