"""
llamaswap: run many local LLM inference servers behind one OpenAI- and
Anthropic-compatible HTTP endpoint, starting, stopping and swapping them on
demand.
"""

__version__ = "0.1.0"
