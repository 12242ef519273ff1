"""
Browser tests of the web UI: a real C{twistd -n llamaswap} with demo
upstreams, driven by Debian's chromium through Playwright.
"""
