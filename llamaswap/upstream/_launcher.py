# -*- test-case-name: test.upstream.test_realprocess -*-
"""
Start one upstream command in its own session, tied to llamaswap's life, and
make sure nothing it started outlives it.

Run as C{python -I -S _launcher.py PARENT_PID [--report-fd=N] -- ARGV...}
(it imports only the standard library and nothing from llamaswap, so it can
run isolated and without C{site}).

On Linux the launcher stays the upstream's parent (I{keeper} mode):

 1. it blocks the signals it handles, calls C{setsid()} (its own session, so
    a Ctrl-C on llamaswap's terminal does not reach it), becomes a I{child
    subreaper} (C{PR_SET_CHILD_SUBREAPER}: every orphaned descendant of the
    upstream is re-parented to it, not to init, so the whole tree stays
    reachable through C{ppid} links however it forks, double-forks or
    C{setsid}s), and sets C{PR_SET_PDEATHSIG} to L{KILL_ALL} (checking that
    its parent is still C{PARENT_PID}, which closes the race where llamaswap
    died before the C{prctl});
 2. it forks the server, which calls C{setsid()} (it leads its own session
    and process group), arms C{PR_SET_PDEATHSIG=SIGKILL} against the
    launcher, restores the signal mask and the C{SIGPIPE}/C{SIGXFSZ}
    dispositions Python changed, and C{exec}s the command (on failure it
    prints C{failed to start command '...': error} on stderr and exits 127);
 3. once the C{exec} succeeded it writes the server's PID and a newline on
    the report descriptor and closes it, so llamaswap knows what C{${PID}}
    and the process group are;
 4. it then waits, forwarding the graceful signals it receives
    (C{SIGTERM}, C{SIGINT}, C{SIGHUP}, C{SIGQUIT}) to the server's process
    group I{and} to every descendant that left that group (found by
    walking the tree down through C{/proc/PID/task/TID/children}, which
    costs what the tree has, not what the machine runs; descendants the
    walk missed because the server exited under it get the signal once
    the server is gone), and treating
    L{KILL_ALL} (llamaswap died, or asked for the C{SIGKILL} escalation) as
    C{SIGKILL} for the whole tree;
 5. when the server exits, the rest of the tree is killed at once with
    C{SIGKILL} - unless a graceful signal was forwarded, in which case the
    remaining processes get until the next L{KILL_ALL} to finish (the
    supervisor's stop timeout) - and reaped, bounded by L{SWEEP_TIMEOUT}
    (when the launcher has no child left at all, nothing is left: orphans
    are re-parented to it, so it exits at once without scanning C{/proc});
 6. it exits with the server's status: the same exit code, or killed by the
    same signal (re-raised on itself, core dumps disabled), so llamaswap
    reports the server's status, not the launcher's.

Output needs no relaying: the server writes straight to the pipes llamaswap
gave the launcher.  The launcher writes one line on stderr when it had to
kill processes the server left behind.

Without parent-death signals (not Linux) it falls back to I{exec} mode: it
C{setsid()}s, reports its own PID and C{exec}s the command in place.

I{Standby} (C{_launcher.py PARENT_PID [--report-fd=N] --standby}): step 1
happens at once, then the launcher waits for a command on stdin - one
L{encodeCommand} frame (C{LENGTH\n} and that many bytes) - and goes on with
steps 2-5 in the given directory and environment.  When the server and
its whole tree are gone it I{recycles}: it writes C{exit STATUS\n} (the
server's wait status) on the report descriptor and waits for the next
command; once it has one it forgets the signals that arrived meanwhile
(they were meant for the previous server: llamaswap holds the signals for
a reused launcher's next server until that server's PID is reported), so llamaswap starts each model without waiting for an
interpreter (about 10 ms here, most of a swap's own cost) and without
starting a new one per swap.  End of file on stdin ends it: quietly
(status 0) if it never ran anything, else with the last server's status
(as in keeper mode).  A malformed command ends it with status 2.  A tree
it could not reap (a process stuck in the kernel) ends it too, without
the C{exit} report: it is not reused.
"""

import _signal as signal  # the C module: no enum import at start-up
import os
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

#: The launcher's parent-death signal, and what llamaswap sends it to have
#: the whole tree killed (it cannot send SIGKILL to the launcher itself:
#: that would orphan the tree).
KILL_ALL = signal.SIGUSR1
#: Signals passed on to the server's tree.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
#: How long, after the server is gone and everything left was sent SIGKILL,
#: the launcher waits for the tree to die (a process stuck in the kernel
#: cannot be killed) before exiting anyway.
SWEEP_TIMEOUT = 5.0

_HANDLED = {signal.SIGCHLD, KILL_ALL, *FORWARDED}
#: What a reused keeper forgets before its next server runs: never
#: C{SIGCHLD}, which may already be that server's.
_STALE = _HANDLED - {signal.SIGCHLD}
_PROC = "/proc"


def _prctl(option: int, value: int) -> bool:
    """
    Call C{prctl(option, value)}.

    @return: whether it worked (C{False} where there is no C{prctl}).
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, int(value), 0, 0, 0) == 0)
    except (OSError, AttributeError, ImportError):
        return False


def _say(message: str) -> None:
    try:
        os.write(2, ("llamaswap launcher: %s\n" % (message,)).encode("utf-8", "replace"))
    except OSError:
        pass


def _parentsAndGroups() -> dict:
    """
    C{pid -> (ppid, pgrp, zombie)} for every process in C{/proc}.
    """
    table = {}
    try:
        names = os.listdir(_PROC)
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("%s/%s/stat" % (_PROC, name), "rb") as f:
                raw = f.read()
            fields = raw[raw.rindex(b")") + 2 :].split()
            table[int(name)] = (int(fields[1]), int(fields[2]), fields[0] in (b"Z", b"X"))
        except (OSError, ValueError, IndexError):
            continue
    return table


def _childrenOf(pid: int) -> list:
    """
    The children of C{pid}, from each of its threads' C{children} file (a
    child belongs to the thread that forked it).
    """
    base = "%s/%d/task" % (_PROC, pid)
    try:
        tasks = os.listdir(base)
    except OSError:
        return []
    found = []
    for tid in tasks:
        try:
            with open("%s/%s/children" % (base, tid), "rb") as f:
                found.extend(int(child) for child in f.read().split())
        except (OSError, ValueError):
            continue
    return found


def _groupAndZombie(pid: int):
    """
    C{(pgrp, zombie)} of C{pid}, or C{None} if it is gone.
    """
    try:
        with open("%s/%d/stat" % (_PROC, pid), "rb") as f:
            raw = f.read()
        fields = raw[raw.rindex(b")") + 2 :].split()
        return int(fields[2]), fields[0] in (b"Z", b"X")
    except (OSError, ValueError, IndexError):
        return None


def _haveChildrenFiles() -> bool:
    pid = os.getpid()
    return os.path.exists("%s/%d/task/%d/children" % (_PROC, pid, pid))


def descendants(root: int) -> list:
    """
    The live (non-zombie) descendants of C{root} with their process
    groups: C{[(pid, pgrp)]}.  Walks the tree down through C{/proc}'s
    C{children} files (cost grows with the tree, not with every process
    on the machine); without them, through every process's C{ppid}.
    """
    if not _CHILDREN_FILES:
        return scanDescendants(root)
    found = []
    todo = _childrenOf(root)
    while todo:
        pid = todo.pop()
        children = _childrenOf(pid)
        state = _groupAndZombie(pid)
        if state is None or state[1]:
            # It exited while we looked: its children may have moved up
            # the tree between the two reads; take the slow, whole view.
            return scanDescendants(root)
        found.append((pid, state[0]))
        todo.extend(children)
    return found


def scanDescendants(root: int) -> list:
    """
    L{descendants} through every process's C{ppid} link.
    """
    table = _parentsAndGroups()
    children: dict = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found = []
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        ppid, pgrp, zombie = table[pid]
        if not zombie:
            found.append((pid, pgrp))
        todo.extend(children.get(pid, ()))
    return found


_CHILDREN_FILES = _haveChildrenFiles()


def _kill(pid: int, sig: int, group: bool = False) -> bool:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def signalTree(server: int, sig: int) -> set:
    """
    Send C{sig} to the server's process group and to each of our
    descendants outside it (once each).

    @return: the descendants found (signalled with the group or alone).
    """
    if not _kill(server, sig, group=True):
        _kill(server, sig)
    found = set()
    for pid, pgrp in descendants(os.getpid()):
        found.add(pid)
        if pgrp != server:
            _kill(pid, sig)
    return found


class Keeper:
    """
    The launcher's state once the server runs: who the server is, how it
    ended, and whether a graceful stop or a kill is under way.
    """

    def __init__(self, server: int) -> None:
        self.server = server
        self.status = None
        self.graceful = False
        self.forwarded = None
        self.signalled: set = set()
        self.killing = False
        self.killed: set = set()
        self.leftover = False

    def reap(self) -> bool:
        """
        Reap every child that has exited; remember the server's status.

        @return: whether any child is left.
        """
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self.server:
                self.status = status

    def killAll(self) -> None:
        """
        C{SIGKILL} the server's group (while the server is unreaped, so the
        group ID cannot have been reused) and every descendant.
        """
        if self.status is None:
            _kill(self.server, signal.SIGKILL, group=True)
            _kill(self.server, signal.SIGKILL)
        for pid, _ in descendants(os.getpid()):
            if _kill(pid, signal.SIGKILL):
                self.killed.add(pid)

    def handle(self, signo: int) -> None:
        """
        React to one received signal.
        """
        if signo == signal.SIGCHLD:
            self.reap()
        elif signo == KILL_ALL:
            self.killing = True
            self.killAll()
        elif self.status is None:
            self.graceful = True
            self.forwarded = signo
            self.signalled |= signalTree(self.server, signo)
        else:
            for pid, _ in descendants(os.getpid()):
                _kill(pid, signo)

    def sweep(self) -> None:
        """
        The server is gone but not the rest of its tree: after a graceful
        stop wait for it until L{KILL_ALL}; then kill and reap it, within
        L{SWEEP_TIMEOUT}.
        """
        if self.graceful and not self.killing:
            # What the graceful signal missed (it moved up to us while the
            # tree was walked) gets it now.
            for pid, _ in descendants(os.getpid()):
                if pid not in self.signalled:
                    _kill(pid, self.forwarded)
        while self.graceful and not self.killing and descendants(os.getpid()):
            # A graceful stop: what is left may finish, until KILL_ALL.
            self.handle(signal.sigwaitinfo(_HANDLED).si_signo)
        deadline = time.monotonic() + SWEEP_TIMEOUT
        while True:
            self.killAll()
            if not self.reap():
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _say("gave up waiting for %s" % (sorted(p for p, _ in descendants(os.getpid())),))
                self.leftover = True
                break
            signal.sigtimedwait(_HANDLED, min(remaining, 0.05))

    def run(self) -> int:
        """
        Wait for the server, then for (or kill) the rest of the tree.

        @return: the server's wait status.
        """
        while self.status is None:
            self.handle(signal.sigwaitinfo(_HANDLED).si_signo)
        # With no child at all nothing is left of the tree: as a subreaper
        # we inherit every orphan (the usual case: no /proc scan).
        if self.reap():
            self.sweep()
        if self.killed:
            _say(
                "killed %d process(es) the upstream left behind: %s"
                % (len(self.killed), " ".join(map(str, sorted(self.killed))))
            )
        return self.status


def exitLike(status: int) -> None:
    """
    End this process the way wait status C{status} says: the same exit
    code, or the same signal (without a core dump).  Never returns.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ImportError, OSError, ValueError):
            pass
        try:
            if sig != signal.SIGKILL:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
            os.kill(os.getpid(), sig)
        except (OSError, ValueError):
            pass
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def encodeCommand(argv: list, env: dict, cwd) -> bytes:
    """
    One command for a standby launcher: C{LENGTH\n}, then LENGTH bytes of
    NUL-terminated fields (the argument count, the arguments, the
    environment's size, C{NAME=value} entries, the working directory or an
    empty field for none).
    """
    fields = [str(len(argv)), *argv, str(len(env))]
    fields.extend("%s=%s" % item for item in env.items())
    fields.append(cwd or "")
    payload = b"".join(os.fsencode(f) + b"\0" for f in fields)
    return b"%d\n" % (len(payload),) + payload


def splitFrame(data: bytes):
    """
    C{(payload, rest)} for the first whole frame of C{data}, or C{None}
    while it is incomplete.

    @raise ValueError: if C{data} does not start with a frame header.
    """
    head, newline, rest = data.partition(b"\n")
    if head or newline:
        _frameSize(head)
    if not newline:
        return None
    size = _frameSize(head)
    if len(rest) < size:
        return None
    return rest[:size], rest[size:]


def _frameSize(head: bytes) -> int:
    """
    The payload size a frame header (without its newline) gives.

    @raise ValueError: if it is not one.
    """
    if not head.isdigit() or len(head) > 12:
        raise ValueError("bad frame header")
    return int(head)


def decodeCommand(data: bytes):
    """
    C{(argv, env, cwd)} from a frame's payload, or C{None} if it is not
    well formed (or empty).
    """
    fields = [os.fsdecode(f) for f in data.split(b"\0")]
    try:
        count = int(fields[0])
        argv = fields[1 : 1 + count]
        envCount = int(fields[1 + count])
        entries = fields[2 + count : 2 + count + envCount]
        cwd = fields[2 + count + envCount]
        if fields[3 + count + envCount :] != [""] or len(argv) != count or not argv:
            return None
    except (ValueError, IndexError):
        return None
    env = {}
    for entry in entries:
        name, _, value = entry.partition("=")
        env[name] = value
    return argv, env, cwd or None


def readFrame(fd: int = 0):
    """
    Read one frame from C{fd}, not a byte past it (the rest of the stream
    is for whoever reads next); its payload, or C{None} at end of file
    before the frame.

    @raise ValueError: for a malformed frame, or end of file inside one.
    """
    head = b""
    while not head.endswith(b"\n"):
        byte = _read(fd, 1)
        if not byte:
            if head:
                raise ValueError("end of file inside a command")
            return None
        head += byte
        if len(head) > 13:
            raise ValueError("bad frame header")
    chunks, missing = [], _frameSize(head[:-1])
    while missing:
        chunk = _read(fd, missing)
        if not chunk:
            raise ValueError("end of file inside a command")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def _read(fd: int, size: int) -> bytes:
    while True:
        try:
            return os.read(fd, size)
        except InterruptedError:
            continue
        except OSError:
            return b""


def _execCommand(command: list, env=None, cwd=None) -> None:
    """
    In the process that becomes the server: C{exec} C{command} (in C{cwd},
    with C{env}, when given).  Returns only if that failed, after saying
    why on stderr.
    """
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    try:
        if cwd is not None:
            os.chdir(cwd)
        if env is None:
            os.execvp(command[0], command)
        else:
            os.execvpe(command[0], command, env)
    except OSError as e:
        sys.stderr.write("failed to start command '%s': %s\n" % (" ".join(command), e))
        sys.stderr.flush()


def _write(fd: int | None, line: bytes) -> None:
    if fd is None:
        return
    try:
        os.write(fd, line)
    except OSError:
        pass


def _report(fd: int | None, pid: int) -> None:
    """
    Report the server's PID on C{fd} and close it (keeper mode: one server).
    """
    _write(fd, b"%d\n" % (pid,))
    if fd is None:
        return
    try:
        os.close(fd)
    except OSError:
        pass


def _forgetSignals() -> None:
    """
    Discard the signals that arrived since the last server ended: they were
    meant for it (llamaswap sends none for the next server before that
    server's PID is reported).
    """
    while signal.sigtimedwait(_STALE, 0) is not None:
        pass


def _startServer(
    command: list, keeper: int, reportFD: int | None, env=None, cwd=None
) -> tuple:
    """
    Fork the server and wait until it has C{exec}'d.

    @return: C{(pid, None)}, or C{(pid, status)} if it could not start (its
        wait status, already reaped).
    """
    if reportFD is not None:
        os.set_inheritable(reportFD, False)
    ready, failed = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready)
            os.setsid()
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != keeper:
                os._exit(1)
            _execCommand(command, env, cwd)
            os.write(failed, b"x")
        finally:
            os._exit(127)
    os.close(failed)
    with os.fdopen(ready, "rb") as f:
        execFailed = f.read()
    if execFailed:
        _, status = os.waitpid(pid, 0)
        return pid, status
    return pid, None


def _parseArgs(argv: list):
    """
    C{(parentPid, reportFD, command)} (C{command} is C{None} for a
    standby), or C{None} for a usage error.
    """
    args = argv[1:]
    if len(args) < 2:
        return None
    try:
        parent = int(args.pop(0))
    except ValueError:
        return None
    reportFD = None
    if args and args[0].startswith("--report-fd="):
        try:
            reportFD = int(args.pop(0).split("=", 1)[1])
        except ValueError:
            return None
    if args == ["--standby"]:
        return parent, reportFD, None
    if len(args) < 2 or args[0] != "--":
        return None
    return parent, reportFD, args[1:]


def main(argv: list) -> int:
    """
    Launch the command as described in the module docstring.
    """
    parsed = _parseArgs(argv)
    if parsed is None:
        sys.stderr.write(
            "usage: _launcher.py PARENT_PID [--report-fd=N] (-- COMMAND [ARG...] | --standby)\n"
        )
        return 2
    parent, reportFD, command = parsed
    env = cwd = None
    signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
    try:
        os.setsid()
    except PermissionError:
        # Already a session or group leader: keep what we have.
        pass
    armed = _prctl(PR_SET_PDEATHSIG, KILL_ALL)
    if armed and parent > 0 and os.getppid() != parent:
        sys.stderr.write("llamaswap launcher: parent %d is gone; not starting\n" % (parent,))
        return 1
    keeper = armed and hasattr(signal, "sigwaitinfo")
    if keeper:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
    if command is None:
        return standby(parent, reportFD, keeper)
    if not keeper:
        # No way to learn of llamaswap's death: run the command in place.
        _report(reportFD, os.getpid())
        _execCommand(command, env, cwd)
        return 127
    try:
        server, failed = _startServer(command, os.getpid(), reportFD, env, cwd)
    except OSError as e:
        sys.stderr.write("failed to start command '%s': %s\n" % (" ".join(command), e))
        return 127
    if failed is not None:
        exitLike(failed)
    _report(reportFD, server)
    exitLike(Keeper(server).run())
    return 1


#: What a starter tells its keeper on its note pipe (see L{_starter}).
_NOTE_COMMAND = b"c"
_NOTE_FAILED = b"x"
_NOTE_END = b"e"
_NOTE_MALFORMED = b"m"


def _starter(keeper: int, note: int) -> None:
    """
    In a child forked ahead of need: become the next server's process (own
    session and group, dies with the keeper), wait for its command on
    stdin, say so on C{note} (L{_NOTE_COMMAND}) and C{exec} it with
    C{/dev/null} as its stdin (the stdin is the keeper's, for the next
    commands).  Says instead why not: L{_NOTE_END} at end of file,
    L{_NOTE_MALFORMED}, or L{_NOTE_FAILED} after the command as the
    C{exec} failed.  Never returns.
    """
    try:
        os.setsid()
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != keeper:
            os._exit(1)
        try:
            data = readFrame(0)
            standing = None if data is None else decodeCommand(data)
            if data is not None and standing is None:
                raise ValueError("malformed command")
        except ValueError:
            os.write(note, _NOTE_MALFORMED)
            os._exit(2)
        if standing is None:
            os.write(note, _NOTE_END)
            os._exit(0)
        command, env, cwd = standing
        os.write(note, _NOTE_COMMAND)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        _execCommand(command, env, cwd)
        os.write(note, _NOTE_FAILED)
    finally:
        os._exit(127)


def _prepare() -> tuple:
    """
    Fork a L{_starter}; return its PID and what it said once it has
    C{exec}'d or given up.
    """
    note, told = os.pipe()
    keeper = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(note)
        _starter(keeper, told)
    os.close(told)
    with os.fdopen(note, "rb") as f:
        return pid, f.read()


def standby(parent: int, reportFD: int | None, keeper: bool) -> int:
    """
    Run the commands read on stdin one after the other (see the module
    docstring).  Each server's process is forked before its command
    arrives (a I{starter}), so starting it costs only its C{exec}.
    """
    if not keeper:
        # No way to learn of llamaswap's death: run the command in place.
        try:
            data = readFrame(0)
            standing = None if data is None else decodeCommand(data)
        except ValueError:
            standing = None
            data = b""
        if data is None:
            return 0
        if standing is None:
            sys.stderr.write("llamaswap launcher: malformed command on stdin\n")
            return 2
        _report(reportFD, os.getpid())
        _execCommand(*standing)
        return 127
    if reportFD is not None:
        os.set_inheritable(reportFD, False)
    status = None
    while True:
        server, said = _prepare()
        if said == _NOTE_COMMAND:
            # Running: what is pending was meant for the previous server.
            _forgetSignals()
            keeper = Keeper(server)
            if parent > 0 and os.getppid() != parent:
                # llamaswap died meanwhile (its parent-death signal was
                # just forgotten): this server must not run.
                keeper.handle(KILL_ALL)
            _write(reportFD, b"%d\n" % (server,))
            status = keeper.run()
            if keeper.leftover:
                exitLike(status)
        else:
            _, started = os.waitpid(server, 0)
            if said == _NOTE_COMMAND + _NOTE_FAILED:
                status = started
            elif said == _NOTE_MALFORMED:
                sys.stderr.write("llamaswap launcher: malformed command on stdin\n")
                return 2
            elif status is None:
                # End of file (or the starter died) before any command.
                return 0
            else:
                exitLike(status)
        _write(reportFD, b"exit %d\n" % (status,))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
