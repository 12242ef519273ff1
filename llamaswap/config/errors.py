# -*- test-case-name: test.config.test_errors -*-
"""
Configuration problems: where they are and what is wrong.

Every stage of loading reports into one L{Problems} collector instead of
raising at the first error, so a user sees every mistake in one run.  A
problem names the file, the dotted key path (C{models.llama.ttl}) and, where
the YAML gave one, the line.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping, Sequence, Union

from attrs import field, frozen

PathPart = Union[str, int]
KeyPath = tuple[PathPart, ...]


def formatPath(path: Sequence[PathPart]) -> str:
    """
    Render a key path the way users write it: C{models.llama.ttl},
    C{apiKeys[2]}, C{models."org/m.v1".cmd} when a key holds a dot.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if _plainKey(part) else '"' + part.replace('"', '\\"') + '"'
        out += ("." if out else "") + text
    return out


def _plainKey(key: str) -> bool:
    return bool(key) and not any(c in key for c in '."[] ')


@frozen
class Location:
    """
    A place in a configuration source.

    @ivar file: the file name as the user gave it, or C{"<string>"}.
    @ivar line: 1-based line number, or L{None} when unknown.
    """

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


@frozen
class SourceMap:
    """
    Where each key path of a loaded tree came from.

    Built by the YAML loader, carried through merging and macro expansion
    (which keep the tree's shape), and consulted when a problem is reported.
    """

    locations: Mapping[KeyPath, Location] = field(factory=dict)
    default: Location | None = None

    def locate(self, path: Sequence[PathPart]) -> Location | None:
        """
        The location of C{path}, or of its nearest recorded ancestor.
        """
        path = tuple(path)
        while path:
            found = self.locations.get(path)
            if found is not None:
                return found
            path = path[:-1]
        return self.locations.get((), self.default)

    def merged(self, other: SourceMap) -> SourceMap:
        """
        A map holding both; where both know a path, this one wins (the
        first source to define a key is where it was defined).
        """
        combined = dict(other.locations)
        combined.update(self.locations)
        return SourceMap(combined, self.default or other.default)


@frozen
class Problem:
    """
    One thing wrong (or suspicious) in the configuration.

    @ivar message: what is wrong, in llama-swap's words where it has them.
    @ivar path: the key path the problem is about; C{()} for the whole file.
    @ivar location: where that key is, if known.
    @ivar warning: C{True} for something that does not stop loading
        (an unknown key, a deprecated one).
    """

    message: str
    path: KeyPath = ()
    location: Location | None = None
    warning: bool = False

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location is not None else ""
        key = formatPath(self.path)
        prefix = f"{key}: " if key and not self.message.startswith(key) else ""
        kind = "warning: " if self.warning else ""
        return f"{where}{kind}{prefix}{self.message}"


class ConfigError(Exception):
    """
    Loading failed; C{problems} lists every error (and warning) found.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.errors))

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if not p.warning)


class Problems:
    """
    A collector of problems shared by all loading stages.

    @ivar sourceMap: used to attach a location to each problem reported by
        key path.
    """

    def __init__(self, sourceMap: SourceMap | None = None) -> None:
        self.sourceMap = sourceMap or SourceMap()
        self._items: list[Problem] = []

    def error(
        self,
        message: str,
        path: Sequence[PathPart] = (),
        location: Location | None = None,
    ) -> None:
        """
        Record an error about C{path}.
        """
        self._add(message, path, location, warning=False)

    def warn(
        self,
        message: str,
        path: Sequence[PathPart] = (),
        location: Location | None = None,
    ) -> None:
        """
        Record a warning about C{path}; loading goes on.
        """
        self._add(message, path, location, warning=True)

    def _add(
        self,
        message: str,
        path: Sequence[PathPart],
        location: Location | None,
        warning: bool,
    ) -> None:
        path = tuple(path)
        if location is None:
            location = self.sourceMap.locate(path)
        problem = Problem(message, path, location, warning)
        if self._accepts(problem):
            self._items.append(problem)

    def _accepts(self, problem: Problem) -> bool:
        """
        Whether C{problem} is recorded: once only.  A view for a later
        loading stage narrows this.
        """
        return problem not in self._items

    def __iter__(self) -> Iterator[Problem]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self._items if not p.warning]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self._items if p.warning]

    def hasErrors(self) -> bool:
        return any(not p.warning for p in self._items)

    def raiseIfErrors(self) -> None:
        """
        Raise L{ConfigError} carrying everything collected, if any error was.
        """
        if self.hasErrors():
            raise ConfigError(self._items)
