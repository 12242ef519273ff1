"""
twistd plugin: C{twistd -n llamaswap --config config.yaml}.

Kept tiny because twistd imports every plugin module on every run; the real
work is imported lazily from L{llamaswap.tap}.
"""

from twisted.application.service import ServiceMaker

llamaswap = ServiceMaker(
    "llamaswap",
    "llamaswap.tap",
    "Run LLM inference servers on demand behind one OpenAI/Anthropic API",
    "llamaswap",
)
