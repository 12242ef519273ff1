# -*- test-case-name: test.test_demo -*-
"""
C{python -m llamaswap.demo}: run the demo upstream.
"""

from llamaswap.demo.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
