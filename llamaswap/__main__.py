"""
C{python -m llamaswap}: the same as the C{llamaswap} console script.
"""

from .cli import main

main()
