"""
The HTTP side of llamaswap: the resource tree, the error envelope
(L{llamaswap.web.errors}), the outbound client (L{llamaswap.web.client},
L{llamaswap.web.bodies}), the streaming relay to upstream servers
(L{llamaswap.web.forward}) and to peers (L{llamaswap.web.peers}).
"""
