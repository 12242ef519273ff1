"""
The HTTP side of llamaswap: the resource tree, the error envelope
(L{llamaswap.web.errors}) and the streaming relay to upstream servers
(L{llamaswap.web.forward}).
"""
