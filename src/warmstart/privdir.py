"""Directories only this user can change, used through a descriptor.

warmstart reads back what it left in a directory: the warm server's
sockets and records (the environment of a launch, the modules a server
imports) and the auto cache's images (code that runs).  Another local user
may have planted any of it, or swapped a directory under a running
process.  So a directory is opened once, walking its path component by
component without following symlinks; every component must be owned by
root or by us and writable by no one else unless it is sticky (as /tmp
is), and the directory itself must be ours and closed to others
(`forbid`: 0o077 for the server directory, whose records hold secrets,
0o022 for the cache).  Everything after that is relative to the
descriptor: no name is looked up from the root again.  The C client has
the same walk (src/client/privdir.c).
"""
import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Unsafe(OSError):
    """The directory or file may be controlled by another user."""


def _check_component(st, path):
    if st.st_uid not in (0, os.getuid()):
        raise Unsafe(f"{path} is owned by uid {st.st_uid}")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise Unsafe(f"{path} is writable by other users")


class PrivateDir:
    """An open directory that only this user can change."""

    def __init__(self, path, forbid=0o077, create=True):
        self.path = os.path.realpath(path)
        self.forbid = forbid
        self.fd = _walk(self.path, forbid, create)

    # -- files ------------------------------------------------------------
    def open(self, name, flags=os.O_RDONLY):
        """Open an existing regular file of ours that no one else can write."""
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=self.fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Unsafe(f"{self.join(name)} is not a regular file")
            if st.st_uid != os.getuid() or st.st_mode & self.forbid:
                raise Unsafe(f"{self.join(name)} is owned by uid {st.st_uid}"
                             f" with mode {stat.S_IMODE(st.st_mode):o}")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read(self, name):
        with os.fdopen(self.open(name), "rb") as f:
            return f.read()

    def create(self, name, flags=os.O_WRONLY):
        """A new file, 0600; an existing name (or a symlink) is an error."""
        return os.open(name, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                       | os.O_CLOEXEC, 0o600, dir_fd=self.fd)

    def create_fresh(self, name, flags=os.O_WRONLY):
        """As create, replacing what was there (a log of an earlier run)."""
        self.unlink(name)
        return self.create(name, flags)

    def write(self, name, data):
        """Replace name by a file holding data, atomically."""
        tmp = f"{name}.{os.getpid()}.tmp"
        with os.fdopen(self.create_fresh(tmp), "wb") as f:
            f.write(data)
        self.rename(tmp, name)

    def rename(self, old, new):
        os.rename(old, new, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def unlink(self, name):
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def stat(self, name):
        """lstat of name, or None."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except OSError:
            return None

    def exists(self, name):
        return self.stat(name) is not None

    def listdir(self):
        return os.listdir(self.fd)

    # -- sockets ------------------------------------------------------------
    def address(self, name):
        """A socket address that resolves through our descriptor: the
        kernel follows /proc/self/fd/N to this very directory."""
        return f"/proc/self/fd/{self.fd}/{name}"

    def join(self, name):
        """The path of name, for messages and for other processes."""
        return os.path.join(self.path, name)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _walk(path, forbid, create):
    if not os.path.isabs(path):
        raise Unsafe(f"{path} is not an absolute path")
    parts = [p for p in path.split("/") if p]
    fd = os.open("/", _DIR_FLAGS)
    try:
        _check_component(os.fstat(fd), "/")
        done = ""
        for i, name in enumerate(parts):
            done += "/" + name
            try:
                new = _open_dir(name, fd, done)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, 0o700, dir_fd=fd)
                except FileExistsError:
                    pass
                new = _open_dir(name, fd, done)
            os.close(fd)
            fd = new
            st = os.fstat(fd)
            if i < len(parts) - 1:
                _check_component(st, done)
            elif st.st_uid != os.getuid():
                raise Unsafe(f"{done} is owned by uid {st.st_uid}")
            elif st.st_mode & forbid:
                raise Unsafe(f"{done} has mode {stat.S_IMODE(st.st_mode):o};"
                             f" it must not be open to other users")
        return fd
    except BaseException:
        os.close(fd)
        raise


def _open_dir(name, fd, shown):
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except NotADirectoryError:
        # A file where a directory should be is a cache that cannot be
        # used; a symlink, where the resolved path had none, a swap.
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise Unsafe(f"{shown} is a symlink") from None
        raise
