"""What a served launch may not gain over its caller, and what it takes
from the caller as a direct run would (tier 3).

A worker is forked from the server, so it has the server's identity and
confinement, not the client's.  A launch is served only when the two are
the same in everything a process cannot give itself: uids and gids,
supplementary groups, capability sets, no_new_privs, seccomp, every
namespace, the root directory, the LSM label -- otherwise a client under
`unshare -n`, `setpriv --no-new-privs` or a user removed from a group
since the server started would run with the server's rights, and it runs
directly instead.  What a process may set for itself (nice value,
scheduling policy, CPU affinity, I/O priority, cgroup where we may move
into it) the worker copies from the client; resource limits and the umask
come in the request.  Everything is read from /proc of the client's pid,
which the kernel reports for the connection (SO_PEERCRED), never from
what the client says.  docs/architecture.md lists the comparison.
"""
import os

# What identity() returns, in order (src/server/identity.c).
IDENTITY_FIELDS = (
    "uids, gids, groups, capabilities, no_new_privs or seccomp",
    *("namespace " + ns for ns in (
        "cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time",
        "time_for_children", "user", "uts")),
    "root directory", "LSM label")
_IOPRIO_GET, _IOPRIO_SET, _IOPRIO_WHO_PROCESS = 252, 251, 1     # x86-64
_libc = None


class Differs(Exception):
    """The client has something the server has not, or lacks something
    the server has: the launch runs directly."""


def identity(pid):
    """What must be equal, for process pid, as one tuple."""
    from ._image import identity
    return identity(pid)


def _read(path):
    """A small /proc file, in three system calls (open() takes eight)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.read(fd, 65536).strip(b"\0\n")
        finally:
            os.close(fd)
    except OSError as e:
        return e.errno


class Snapshot:
    """This process's identity and what a launch may set for itself,
    taken once in the server (its workers start with the same)."""

    def __init__(self, pid):
        self.identity = identity(pid)
        self.nice = os.getpriority(os.PRIO_PROCESS, pid)
        self.policy = os.sched_getscheduler(pid)
        self.param = os.sched_getparam(pid)
        self.cpus = os.sched_getaffinity(pid)
        self.ioprio = _ioprio(pid)
        self.cgroup = _read(f"/proc/{pid}/cgroup")


def _ioprio(pid):
    if _libc is None:
        return None
    return _libc.syscall(_IOPRIO_GET, _IOPRIO_WHO_PROCESS, pid)


def prepare():
    """In the server, once: its own Snapshot."""
    global _libc
    try:
        import ctypes
        _libc = ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        _libc = None
    return Snapshot(os.getpid())


def check(mine, pid):
    """Raise Differs unless process pid has exactly our identity."""
    theirs = identity(pid)
    if theirs != mine.identity:
        names = [n for n, a, b in zip(IDENTITY_FIELDS, theirs,
                                      mine.identity) if a != b]
        raise Differs("the caller's " + ", ".join(names)
                      + " differ from the server's")


def take_over(mine, pid):
    """In the worker: the client's scheduling, affinity, I/O priority and
    cgroup, as far as a process may set them for itself; Differs where it
    may not (a client with a better priority than the server's)."""
    try:
        nice = os.getpriority(os.PRIO_PROCESS, pid)
        if nice != mine.nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        policy = os.sched_getscheduler(pid)
        param = os.sched_getparam(pid)
        if policy != mine.policy or param != mine.param:
            os.sched_setscheduler(0, policy, param)
        cpus = os.sched_getaffinity(pid)
        if cpus != mine.cpus:
            os.sched_setaffinity(0, cpus)
    except OSError as e:
        raise Differs(f"cannot take the caller's scheduling: {e}")
    prio = _ioprio(pid)
    if prio is not None and prio >= 0 and prio != mine.ioprio:
        if _libc.syscall(_IOPRIO_SET, _IOPRIO_WHO_PROCESS, 0, prio) < 0:
            raise Differs("cannot take the caller's I/O priority")
    theirs = _read(f"/proc/{pid}/cgroup")
    if theirs != mine.cgroup:
        _join_cgroup(theirs)


def _join_cgroup(theirs):
    """Move into the client's cgroup (v2) when it is another one, so that
    its memory and CPU limits hold; where that is not allowed, Differs."""
    if not isinstance(theirs, bytes) or not theirs.startswith(b"0::/") \
            or b"\n" in theirs:
        raise Differs("the caller is in another cgroup")
    path = b"/sys/fs/cgroup" + theirs[3:] + b"/cgroup.procs"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    except OSError as e:
        raise Differs(f"cannot join the caller's cgroup: {e}")
