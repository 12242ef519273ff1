"""
The hand-over between macro expansion and typed decoding.

L{llamaswap.config.macros.expand} produces an L{ExpandedTree};
L{llamaswap.config.build.buildConfig} turns it into frozen config objects.
"""

from __future__ import annotations

from typing import Any, Mapping

from attrs import field, frozen

from .errors import SourceMap

MacroValue = str | int | float | bool
MacroList = tuple[tuple[str, MacroValue], ...]


@frozen
class ExpandedTree:
    """
    A merged configuration tree with every macro substituted.

    @ivar tree: plain data (dicts in source order, lists, scalars) with
        C{macros} removed from the top level and from each model, each
        model's C{cmd}/C{cmdStop} stripped of whole-line comments, each
        model's C{proxy} defaulted to C{http://localhost:${PORT}} before
        expansion, and C{${PORT}}/C{${MODEL_ID}} substituted.
    @ivar sourceMap: where each key path of C{tree} came from.
    @ivar globalMacros: the top-level macro declarations, in order,
        unexpanded (as written).
    @ivar modelMacros: model ID to that model's own declarations, in order,
        unexpanded.
    @ivar ports: model ID to the port allocated for its C{${PORT}}; models
        whose C{cmd} has no C{${PORT}} are absent.
    """

    tree: Mapping[str, Any]
    sourceMap: SourceMap = field(factory=SourceMap)
    globalMacros: MacroList = ()
    modelMacros: Mapping[str, MacroList] = field(factory=dict)
    ports: Mapping[str, int] = field(factory=dict)
