"""
What llamaswap tells about itself.

Logs: monitors fed from C{twisted.logger} and the upstreams' output
(L{llamaswap.observe.monitors}) with bounded histories and live fan-out to
slow readers (L{llamaswap.observe.logs}), the line format
(L{llamaswap.observe.logformat}) and the access log
(L{llamaswap.observe.access}).  Activity, metrics and the UI's events live
in the other modules of this package.
"""
