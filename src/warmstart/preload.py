"""What a server's preloaded imports see and read of their launch (tier 3).

Module bodies run once, in the server, and their results serve every
launch.  Whatever they read of the process's surroundings at import is
therefore fixed for the server's life, so the server must know it:

* Terminals.  A module asks at import whether stdout is a terminal
  (colours, prompts).  Which of fds 0-2 are terminals is part of the
  server's key, and a server whose launches have terminals preloads with
  pseudo-terminals (of the recording run's size) on those fds, so that
  its imports see what a direct run's imports see.
* Environment variables.  Every variable the imports read (os.environ,
  os.environb, os.getenv) is noted; a launch whose value of one differs
  from the server's is not served (it runs directly).  Reading them all
  (iterating, copying) makes them all count.  Variables the imports set
  themselves, and warmstart's own, do not count.
* The working directory.  Whether the imports asked for it (os.getcwd,
  os.getcwdb, and so os.path.abspath of a relative name and Path.cwd) is
  noted; then a launch from another directory is not served.
* Output.  What the imports write to stdout or stderr (a module that
  prints, a warning shown at import) would go to the server's log, not
  to a launch, and a launch could not replay it in its place among the
  program's own output: a server whose imports wrote anything is not
  started (every launch runs directly).
"""
import os
import signal
import sys

ALL = object()


class Observed:
    """Context for the preload: observe, then restore."""

    def __init__(self, tty, size):
        self.tty = tuple(tty)
        self.size = size            # (columns, lines) or None
        self.read = set()           # names (bytes) read, or contains ALL
        self.cwd_read = False
        self.output = b""           # what fds 1 and 2 received (a prefix)
        self._saved = []
        self._sinks = []            # (fd, saved, memfd) for fds 1-2 off a tty

    def __enter__(self):
        self._classes = (type(os.environ), type(os.environb))
        os.environ.__class__ = _recording(self._classes[0], self.read)
        os.environb.__class__ = _recording(self._classes[1], self.read)
        self._getcwd = os.getcwd, os.getcwdb

        def noting(f):
            def getcwd():
                self.cwd_read = True
                return f()
            return getcwd
        os.getcwd, os.getcwdb = map(noting, self._getcwd)
        for fd, want in enumerate(self.tty):
            if want:
                self._saved.append((fd, os.dup(fd), *_terminal_on(fd,
                                                                  self.size)))
            elif fd in (1, 2):
                # A file, not a pipe: a module writing much must not block.
                sink = os.memfd_create("warmstart-preload-output",
                                       os.MFD_CLOEXEC)
                self._sinks.append((fd, os.dup(fd), sink))
                os.dup2(sink, fd)
        # A module writing more at import than a pseudo-terminal holds
        # would block the preload: a server that hangs dies instead.
        self._alarm = (self._saved
                       and signal.getsignal(signal.SIGALRM) == signal.SIG_DFL)
        if self._alarm:
            signal.alarm(120)
        return self

    def __exit__(self, *exc):
        if self._alarm:
            signal.alarm(0)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        for fd, saved, master, slave in self._saved:
            if fd in (1, 2):
                self.output += _drain(master)
            os.dup2(saved, fd)
            for d in (saved, master, slave):
                os.close(d)
        self._saved = []
        for fd, saved, sink in self._sinks:
            self.output += os.pread(sink, 200, 0)
            os.dup2(saved, fd)
            os.close(saved)
            os.close(sink)
        self._sinks = []
        os.environ.__class__, os.environb.__class__ = self._classes
        os.getcwd, os.getcwdb = self._getcwd

    def names(self):
        """The names read, or ALL."""
        return ALL if ALL in self.read else {n for n in self.read
                                             if not n.startswith(b"WARMSTART")}


def _recording(cls, sink):
    class Recording(cls):
        def __getitem__(self, key):
            sink.add(os.fsencode(key) if isinstance(key, str) else key)
            return cls.__getitem__(self, key)

        def __iter__(self):
            sink.add(ALL)
            return cls.__iter__(self)
    Recording.__name__ = cls.__name__
    Recording.__qualname__ = cls.__qualname__
    return Recording


def _drain(master):
    """What is waiting on a pseudo-terminal's master side (non-blocking)."""
    out = b""
    while len(out) < 200:
        try:
            chunk = os.read(master, 200)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        out += chunk
    return out


def _terminal_on(fd, size):
    import fcntl
    import struct
    import termios
    master, slave = os.openpty()
    if size:
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    struct.pack("HHHH", size[1], size[0], 0, 0))
    os.set_blocking(master, False)
    os.dup2(slave, fd)
    return master, slave


def differs(read, start_env, changes, env):
    """The first variable the preload read whose value in env (a launch's)
    is not the one the preload saw; None if they all agree."""
    if read is ALL:
        names = start_env.keys() | env.keys()
    else:
        names = read
    for k in names:
        if k in changes or k.startswith(b"WARMSTART"):
            continue
        if env.get(k) != start_env.get(k):
            return k
    return None
