# -*- test-case-name: test.test_tap -*-
"""
The running llamaswap: one configuration, its upstreams and its router.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService
from twisted.logger import Logger

from . import __version__
from .config.model import Config
from .listen import ListenAddress


class LlamaSwap(MultiService):
    """
    The service owning everything one configuration runs.

    @ivar config: the loaded configuration.
    @ivar reactor: the reactor used for processes, timers and HTTP.
    """

    log = Logger()

    def __init__(
        self,
        config: Config,
        reactor: Any,
        configPaths: tuple[str | None, str | None] = (None, None),
        listen: ListenAddress | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.configPaths = configPaths
        self.listen = listen

    def startService(self) -> None:
        super().startService()
        self.log.info(
            "llamaswap {version} starting with {count} models",
            version=__version__,
            count=len(self.config.models),
        )
        if self.listen is not None and not self.listen.isLoopbackOnly:
            self.log.info(
                "listening on {endpoint}, reachable from other machines; use "
                "--listen 127.0.0.1:{port} to keep it local",
                endpoint=self.listen.endpoint,
                port=self.listen.port,
            )
