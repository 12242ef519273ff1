"""
An upstream for tests that writes a burst of output before it serves:
C{chatty.py LINES DEMO-ARGS...} prints LINES lines of about 100 bytes and
C{chatty: done}, then becomes the demo upstream with DEMO-ARGS.  If nobody
drains its stdout, it never gets to serve.
"""

import os
import sys


def main() -> None:
    count = int(sys.argv[1])
    out = sys.stdout
    filler = "x" * 88
    for i in range(count):
        out.write(f"chatty {filler} {i:07d}\n")
    out.write("chatty: done\n")
    out.flush()
    os.execv(sys.executable, [sys.executable, "-m", "llamaswap.demo", *sys.argv[2:]])


if __name__ == "__main__":
    main()
