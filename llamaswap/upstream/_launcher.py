# -*- test-case-name: test.upstream.test_realprocess -*-
"""
Start one upstream command in its own session, tied to llamaswap's life.

Run as C{python -I -S _launcher.py PARENT_PID -- ARGV...} (it imports only
the standard library and nothing from llamaswap, so it can run isolated and
without C{site}).  It then, in this order:

 1. calls C{setsid()}, so the upstream leads a new session and process group
    (its PID is unchanged: the launcher C{exec}s in place, so llamaswap's
    child PID, the process-group ID and C{${PID}} are all the same number);
 2. sets C{PR_SET_PDEATHSIG} to C{SIGKILL}, then checks that its parent is
    still C{PARENT_PID} (closing the race where llamaswap died before the
    C{prctl}); the death signal survives C{execve}, so the upstream itself is
    killed when llamaswap dies, even by C{SIGKILL};
 3. (Linux only) forks a I{sweeper}: a tiny process in the same group, with stdio on
    C{/dev/null}, ignoring C{SIGTERM}/C{SIGINT}/C{SIGHUP}, whose own
    parent-death signal fires when the upstream leader dies, for whatever
    reason; it then C{SIGKILL}s the whole group, so grandchildren that the
    upstream forked (which do not inherit a death signal) die with it;
 4. restores default dispositions for C{SIGPIPE} and C{SIGXFSZ} (Python
    ignores them) and C{exec}s the command; if that fails it prints the
    error on stderr and exits with status 127.

The order matters: C{setsid} must come before the fork so the sweeper is in
the upstream's group, and the death signal is set in the process that
C{exec}s (a C{fork} clears it, C{execve} keeps it).
"""

import os
import signal
import sys

PR_SET_PDEATHSIG = 1
_SWEEP_SIGNAL = signal.SIGUSR1


def _setDeathSignal(sig: int) -> bool:
    """
    Ask the kernel to send C{sig} to this process when its parent dies.

    @return: C{True} if it could be set (Linux), else C{False}.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0)
    except (OSError, AttributeError, ImportError):
        return False


def _sweeper(leader: int) -> None:
    """
    Wait for the group leader to die, then kill the whole group.  Never
    returns.
    """
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, 65536)
        os.chdir("/")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {_SWEEP_SIGNAL})
        if not _setDeathSignal(_SWEEP_SIGNAL):
            return
        if os.getppid() == leader:
            signal.sigwait({_SWEEP_SIGNAL})
        # The leader is gone (or went before we were ready): end the group.
        os.killpg(0, signal.SIGKILL)
    finally:
        os._exit(0)


def main(argv: list[str]) -> int:
    """
    Launch C{argv[3:]} as described in the module docstring.
    """
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: _launcher.py PARENT_PID -- COMMAND [ARG...]\n")
        return 2
    parent = int(argv[1])
    command = argv[3:]
    try:
        os.setsid()
    except PermissionError:
        # Already a session or group leader: keep what we have.
        pass
    armed = _setDeathSignal(signal.SIGKILL)
    if armed and parent > 0 and os.getppid() != parent:
        # llamaswap died before the death signal was armed.
        sys.stderr.write("llamaswap launcher: parent %d is gone; not starting\n" % (parent,))
        return 1
    if armed:
        # Only where parent-death signals exist (Linux): elsewhere the
        # sweeper could not tell when to act.
        leader = os.getpid()
        try:
            if os.fork() == 0:
                _sweeper(leader)
        except OSError as e:
            sys.stderr.write("llamaswap launcher: no sweeper process: %s\n" % (e,))
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvp(command[0], command)
    except OSError as e:
        sys.stderr.write(
            "failed to start command '%s': %s\n" % (" ".join(command), e)
        )
        sys.stderr.flush()
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
