# -*- test-case-name: test.test_demo -*-
"""
A demo upstream for llamaswap: a small OpenAI- and Anthropic-compatible HTTP
server that stands in for llama.cpp's llama-server in tests and in the example
configuration.

Run it with C{python -m llamaswap.demo --help}.  L{llamaswap.demo.server}
holds the resource tree, L{llamaswap.demo.generation} the token streams,
L{llamaswap.demo.text} the pure helpers and L{llamaswap.demo.cli} the command
line and process behaviours.
"""
