# -*- test-case-name: test.config.test_decode_peers -*-
"""
The C{peers} section: other llama-swap servers whose models are offered
here.
"""

from __future__ import annotations

from .decode_models import decodeSetParams, decodeTimeouts
from .errors import Problems
from .goformats import goURLError
from .keys import PEER_FILTER_KEYS, PEER_KEYS, TIMEOUT_KEYS
from .model import PEER_TIMEOUTS, Filters, PeerConfig
from .sections import Section


def decodePeers(peers: Section, problems: Problems) -> dict[str, PeerConfig]:
    """
    Decode every peer, sorted by ID.
    """
    out = {}
    for key in sorted(peers.data, key=str):
        peerID = str(key)
        path = ("peers", peerID)
        p = Section.of(problems, peers.data[key], path, PEER_KEYS)
        proxy = p.string("proxy", "")
        if proxy == "":
            problems.error("proxy is required", path + ("proxy",))
        else:
            reason = goURLError(proxy)
            if reason is not None:
                problems.error(f"invalid peer proxy URL ({proxy}): {reason}", path + ("proxy",))
        models = p.strings("models")
        if not models:
            problems.error("peer models can not be empty", path + ("models",))
        out[peerID] = PeerConfig(
            id=peerID,
            proxy=proxy,
            models=tuple(dict.fromkeys(models)),
            apiKey=p.string("apiKey", ""),
            filters=_filters(p.section("filters", PEER_FILTER_KEYS), problems),
            timeouts=decodeTimeouts(p.section("timeouts", TIMEOUT_KEYS), PEER_TIMEOUTS),
        )
    return out


def _filters(f: Section, problems: Problems) -> Filters:
    return Filters(
        stripParams=f.string("stripParams", ""),
        setParams=decodeSetParams(f.raw("setParams"), f.at("setParams"), problems),
    )
