"""What warmstart keeps per user, and its bounds: the auto cache's images
(auto.py) and the server directory's files (server.py), listed by entry
(one image, or one server's files) for `warmstart cache list|clean` and
`warmstart doctor`, and kept under a size cap.

  WARMSTART_CACHE_MAX   the cap of each directory: bytes, or with a K, M
                        or G suffix (powers of 1024); 0 means no cap.
                        Default 1G.

When a directory grows past its cap, the entries used least recently go
first: an image by the time a run last used it (auto.py marks it, at
most once an hour), a server by the last time it served (server.py
refreshes its .json's mtime, at most once a minute).  An image being
rewritten and a running server are never removed.  The cap is enforced
off the start-up path: by the auto cache's writer after it writes an
image, and by a server as it starts listening.  The directories
themselves are opened and checked as everywhere else (privdir.py), and
only regular files of ours are counted or removed.
"""
import os
import stat
import time

DEFAULT_MAX = 1 << 30
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text):
    """'512M' -> bytes; ValueError for anything else."""
    t = text.strip().upper()
    t = t[:-2] if t.endswith("IB") else t.removesuffix("B")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    number = t[:len(t) - len(unit)]
    if not number.isdigit():
        raise ValueError(f"not a size: {text!r} (examples: 0, 500M, 2G)")
    return int(number) * _UNITS[unit]


def cap(env=os.environ):
    """The cap in bytes (None: no cap), and a warning for a bad value."""
    text = env.get("WARMSTART_CACHE_MAX")
    if not text:
        return DEFAULT_MAX, None
    try:
        n = parse_size(text)
    except ValueError as e:
        return DEFAULT_MAX, f"ignoring WARMSTART_CACHE_MAX: {e}"
    return (n or None), None


def server_alive(pid):
    """Is pid a warm server (not a recycled pid)?"""
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            return b"warmstart.server" in f.read()
    except (OSError, TypeError, ValueError):
        return False


class Entry:
    """One image or one server: the files that make it up."""

    def __init__(self, kind, key):
        self.kind = kind            # "image" or "server"
        self.key = key
        self.names = []
        self.size = 0
        self.used = 0.0             # seconds since the epoch
        self.busy = False           # being written, or a running server
        self.state = ""
        self.info = None            # a server's .json

    def __repr__(self):
        return f"<{self.kind} {self.key} {self.size} B {self.state}>"


def _files(d):
    """(name, lstat) of the regular files of ours in d."""
    out = []
    for name in d.listdir():
        st = d.stat(name)
        if st is None or st.st_uid != os.getuid():
            continue
        if stat.S_ISREG(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            out.append((name, st))
    return out


def image_entries(d):
    """The auto cache's entries: <key>.img and what goes with it (.skip,
    and a writer's .writing and .job.<pid>)."""
    found = {}
    for name, st in _files(d):
        key, dot, rest = name.partition(".img")
        if not dot or len(key) != 16:
            continue
        e = found.setdefault(key, Entry("image", key))
        e.names.append(name)
        e.size += st.st_size
        if rest == "":
            e.used = max(e.used, st.st_atime, st.st_mtime)
        elif rest == ".writing":
            e.busy = True
    for e in found.values():
        e.state = "being written" if e.busy else (
            "ready" if f"{e.key}.img" in e.names else "no image")
    return sorted(found.values(), key=lambda e: e.used, reverse=True)


def server_entries(d):
    """The server directory's entries: <key>.sock, .preload, .log, .json,
    .refused and .lock."""
    import json
    found = {}
    for name, st in _files(d):
        key, dot, _ = name.partition(".")
        if not dot or len(key) != 16:
            continue
        e = found.setdefault(key, Entry("server", key))
        e.names.append(name)
        e.size += st.st_size
        e.used = max(e.used, st.st_mtime)
    for e in found.values():
        try:
            e.info = json.loads(d.read(e.key + ".json"))
        except (OSError, ValueError):
            e.info = None
        lock = d.stat(e.key + ".lock")
        if e.info and server_alive(e.info.get("pid")):
            e.busy, e.state = True, "running"
        elif lock is not None and time.time() - lock.st_mtime < 600:
            # A run recording what this server will import (server.py).
            e.busy, e.state = True, "starting"
        elif f"{e.key}.refused" in e.names:
            e.state = "refused"
        else:
            e.state = "stopped"
    return sorted(found.values(), key=lambda e: e.used, reverse=True)


def remove(d, entry):
    for name in entry.names:
        d.unlink(name)


def trim(d, entries, limit, keep=()):
    """Remove the least recently used entries until the rest fit in
    limit bytes; busy ones and those named in keep stay.  Returns the
    removed entries."""
    total = sum(e.size for e in entries)
    removed = []
    for e in sorted(entries, key=lambda e: e.used):
        if limit is None or total <= limit:
            break
        if e.busy or e.key in keep:
            continue
        remove(d, e)
        total -= e.size
        removed.append(e)
    return removed


def trim_images(d):
    limit, _ = cap()
    return trim(d, image_entries(d), limit)


def trim_servers(d, keep=()):
    limit, _ = cap()
    return trim(d, server_entries(d), limit, keep)
