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
import errno
import os

from .fds import load_ctypes

# What identity() returns, in order (src/server/identity.c).
IDENTITY_FIELDS = (
    "uids, gids, groups, capabilities, no_new_privs or seccomp",
    *("namespace " + ns for ns in (
        "cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time",
        "time_for_children", "user", "uts")),
    "root directory", "LSM label")
_IOPRIO_SET, _IOPRIO_WHO_PROCESS = 251, 1     # x86-64
_libc = None


class Differs(Exception):
    """The client has something the server has not, or lacks something
    the server has: the launch runs directly."""


def identity(pid, attr=True):
    """What must be equal, for process pid, as one tuple; attr false
    where no LSM label is given to any process (identity.c)."""
    from ._image import identity
    return identity(pid, attr)


def settable(pid):
    """What process pid has that a process may set for itself: (nice,
    policy, priority, cpus, ioprio, cgroup); OSError if it is gone."""
    from ._image import settable
    return settable(pid)


class Snapshot:
    """This process's identity and what a launch may set for itself,
    taken once in the server (its workers start with the same)."""

    def __init__(self, pid):
        self.identity = identity(pid)
        # No LSM that labels processes (EINVAL for our own label): none of
        # them has one, and reading the client's only says so again.
        self.attr = self.identity[-1] != errno.EINVAL
        self.settable = settable(pid)


def prepare():
    """In the server, once: its own Snapshot."""
    global _libc
    try:
        ctypes = load_ctypes()
        _libc = ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        _libc = None
    return Snapshot(os.getpid())


def check(mine, pid):
    """In the server, before a launch is handed on: raise Differs unless
    process pid has exactly our identity.  Returns what the worker must
    take over from it (for take_over), or None where it has ours."""
    theirs = identity(pid, mine.attr)
    if theirs != mine.identity:
        names = [n for n, a, b in zip(IDENTITY_FIELDS, theirs,
                                      mine.identity) if a != b]
        raise Differs("the caller's " + ", ".join(names)
                      + " differ from the server's")
    try:
        values = settable(pid)
    except OSError as e:
        raise Differs(f"cannot read the caller's scheduling: {e}")
    return None if values == mine.settable else values


def take_over(mine, theirs):
    """In the worker: the client's scheduling, affinity, I/O priority and
    cgroup (theirs, from check), as far as a process may set them for
    itself; Differs where it may not (a client with a better priority
    than the server's)."""
    nice, policy, priority, cpus, ioprio, cgroup = theirs
    try:
        if nice != mine.settable[0]:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        if (policy, priority) != mine.settable[1:3]:
            os.sched_setscheduler(0, policy, os.sched_param(priority))
        if cpus != mine.settable[3]:
            os.sched_setaffinity(0, _cpus(cpus))
    except OSError as e:
        raise Differs(f"cannot take the caller's scheduling: {e}")
    if ioprio >= 0 and ioprio != mine.settable[4]:
        if _libc is None or _libc.syscall(_IOPRIO_SET, _IOPRIO_WHO_PROCESS,
                                          0, ioprio) < 0:
            raise Differs("cannot take the caller's I/O priority")
    if cgroup != mine.settable[5]:
        _join_cgroup(cgroup)


def _cpus(mask):
    """The CPU numbers set in an affinity mask as the kernel fills it."""
    bits = int.from_bytes(mask, "little")
    return {n for n in range(bits.bit_length()) if bits >> n & 1}


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
