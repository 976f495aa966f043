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

STATUS_FIELDS = (b"Uid", b"Gid", b"Groups", b"CapInh", b"CapPrm", b"CapEff",
                 b"CapBnd", b"CapAmb", b"NoNewPrivs", b"Seccomp",
                 b"Seccomp_filters")
NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "pid_for_children",
              "time", "time_for_children", "user", "uts")
_IOPRIO_GET, _IOPRIO_SET, _IOPRIO_WHO_PROCESS = 252, 251, 1     # x86-64
_libc = None


class Differs(Exception):
    """The client has something the server has not, or lacks something
    the server has: the launch runs directly."""


def identity(pid):
    """What must be equal, for process pid: {name: value}; a value that
    cannot be read is None (and so differs from a readable one)."""
    base = f"/proc/{pid}/"
    out = {}
    try:
        with open(base + "status", "rb") as f:
            for line in f.read().splitlines():
                k, _, v = line.partition(b":")
                if k in STATUS_FIELDS:
                    out[k.decode()] = v.strip()
    except OSError:
        pass
    for ns in NAMESPACES:
        try:
            out["ns/" + ns] = os.readlink(base + "ns/" + ns)
        except FileNotFoundError:
            out["ns/" + ns] = "absent"      # a kernel without it: both ends
        except OSError:
            out["ns/" + ns] = None
    try:
        st = os.stat(base + "root")
        out["root"] = (st.st_dev, st.st_ino)
    except OSError:
        out["root"] = None
    out["lsm label"] = _read(base + "attr/current")
    return out


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().strip(b"\0\n")
    except OSError as e:
        return e.errno          # EINVAL without an LSM: the same on both ends


def prepare():
    """In the server, once: its own identity, and what the workers need."""
    global _libc
    try:
        import ctypes
        _libc = ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        _libc = None
    return identity(os.getpid())


def check(server_identity, pid):
    """Raise Differs unless process pid has exactly the server's
    identity."""
    theirs = identity(pid)
    names = [k for k, v in server_identity.items() if theirs.get(k) != v]
    if names:
        raise Differs("the caller's " + ", ".join(names)
                      + " differ from the server's")


def take_over(pid):
    """In the worker: the client's scheduling, affinity, I/O priority and
    cgroup, as far as a process may set them for itself; Differs where it
    may not (a client with a better priority than the server's)."""
    try:
        nice = os.getpriority(os.PRIO_PROCESS, pid)
        if nice != os.getpriority(os.PRIO_PROCESS, 0):
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        policy = os.sched_getscheduler(pid)
        param = os.sched_getparam(pid)
        if (policy != os.sched_getscheduler(0)
                or param != os.sched_getparam(0)):
            os.sched_setscheduler(0, policy, param)
        cpus = os.sched_getaffinity(pid)
        if cpus != os.sched_getaffinity(0):
            os.sched_setaffinity(0, cpus)
    except OSError as e:
        raise Differs(f"cannot take the caller's scheduling: {e}")
    if _libc is not None:
        prio = _libc.syscall(_IOPRIO_GET, _IOPRIO_WHO_PROCESS, pid)
        if prio >= 0 and prio != _libc.syscall(_IOPRIO_GET,
                                                _IOPRIO_WHO_PROCESS, 0):
            if _libc.syscall(_IOPRIO_SET, _IOPRIO_WHO_PROCESS, 0, prio) < 0:
                raise Differs("cannot take the caller's I/O priority")
    _join_cgroup(pid)


def _join_cgroup(pid):
    """Move into the client's cgroup (v2) when it is another one, so that
    its memory and CPU limits hold; where that is not allowed, Differs."""
    theirs = _read(f"/proc/{pid}/cgroup")
    ours = _read("/proc/self/cgroup")
    if theirs == ours:
        return
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
