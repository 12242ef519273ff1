"""
Tests for L{llamaswap.routing}.
"""
