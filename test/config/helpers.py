"""
Shared by the tests of L{llamaswap.config.build} and its decoders: build a
YAML text as an already expanded tree, and assert on its problems.

The inputs are YAML texts read with L{llamaswap.config.yaml12.loadYAML}
(yaml.v3 scalar rules, line numbers) and handed over as an
L{ExpandedTree}, as if macro expansion had already run; models therefore
spell out C{proxy} or are given a port.
"""

from __future__ import annotations

from textwrap import dedent
from typing import Any, Mapping

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.build import buildConfig
from llamaswap.config.errors import Problem, Problems
from llamaswap.config.expanded import ExpandedTree, MacroList
from llamaswap.config.model import Config
from llamaswap.config.yaml12 import loadYAML


def build(
    text: str,
    ports: Mapping[str, int] | None = None,
    globalMacros: MacroList = (),
    modelMacros: Mapping[str, MacroList] | None = None,
) -> tuple[Config | None, Problems]:
    """
    Read C{text} as YAML and build it as an already expanded tree.
    """
    problems = Problems()
    tree, sourceMap = loadYAML(dedent(text), "config.yaml", problems)
    assert not problems.hasErrors(), [str(p) for p in problems]
    problems.sourceMap = sourceMap
    expanded = ExpandedTree(
        tree if tree is not None else {},
        sourceMap,
        globalMacros,
        modelMacros or {},
        ports or {},
    )
    return buildConfig(expanded, problems), problems


MODELS = """
models:
  model1:
    cmd: serve model1
    proxy: http://localhost:9001
    aliases: [m1]
  model2:
    cmd: serve model2
    proxy: http://localhost:9002
  model3:
    cmd: serve model3
    proxy: http://localhost:9003
"""

SELECTOR_BASE = """
models:
  a:
    cmd: x
    proxy: http://h:1
    aliases: [alias-a]
    filters:
      setParamsByID:
        variant: {temperature: 0}
  b: {cmd: x, proxy: "http://h:2"}
peers:
  remote:
    proxy: http://example.com
    models: [remote-model, other-remote]
"""


class BuildTestCase(SynchronousTestCase):
    """
    Assertions shared by the build tests.
    """

    lastProblems: Problems

    def loads(self, text: str, **kwargs: Any) -> Config:
        """
        Build C{text}; fail with every problem if it did not load.
        """
        config, problems = build(text, **kwargs)
        self.assertIsNot(config, None, "\n".join(str(p) for p in problems))
        assert config is not None
        self.lastProblems = problems
        return config

    def fails(self, text: str, fragment: str, **kwargs: Any) -> Problem:
        """
        Build C{text}; assert it failed with an error containing
        C{fragment}, and return that error.
        """
        config, problems = build(text, **kwargs)
        self.assertIs(config, None)
        self.lastProblems = problems
        for problem in problems.errors:
            if fragment in problem.message:
                return problem
        raise self.failureException(
            f"no error containing {fragment!r} in:\n" + "\n".join(str(p) for p in problems)
        )

    def warned(self, fragment: str) -> Problem:
        """
        The warning of the last build containing C{fragment}.
        """
        for problem in self.lastProblems.warnings:
            if fragment in problem.message:
                return problem
        raise self.failureException(
            f"no warning containing {fragment!r} in:\n"
            + "\n".join(str(p) for p in self.lastProblems)
        )

    def noWarnings(self) -> None:
        self.assertEqual([str(p) for p in self.lastProblems.warnings], [])
