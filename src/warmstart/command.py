"""The Python command line a launch runs, and the server that serves it.

Mirror of src/client/command.c, which the native client uses: both build
the same "key material" (NUL-separated fields naming the interpreter, its
options, the program, the directory that becomes sys.path[0], which of
fds 0-2 are terminals, and every environment variable that changes how
Python starts), whose checksum names
the server's socket.  The server compares a request's material with its
own byte for byte, so a hash collision or a client that disagrees cannot
make it run another command.  Everything is bytes, as the OS gives it.
"""
import os
import stat

# Interpreter options without an argument that a forked worker reproduces;
# -i, -S, -x, -h, -V and unknown ones mean "run directly".
PLAIN_FLAGS = b"bBdEIOPqsuvR"
KEY_PREFIXES = (b"PYTHON", b"LC_", b"LD_", b"WARMSTART_")
KEY_NAMES = {b"LANG", b"LANGUAGE", b"PATH", b"TZ", b"TERM", b"HOME",
             b"VIRTUAL_ENV", b"TMPDIR", b"TEMP", b"TMP"}
NOT_KEY = {b"WARMSTART_SERVE", b"WARMSTART_PRELOAD", b"WARMSTART_VERBOSE"}


class Direct(Exception):
    """This command is run directly, not through a server."""


class Command:
    """A parsed command line: argv (bytes), exe (the file run for
    argv[0]), kind (b"m", b"c" or b"s"), value, prog (index of the argv
    element naming the program), script (realpath) and cwd."""

    def __init__(self, argv, env, cwd):
        self.argv = list(argv)
        self.cwd = cwd
        if env.get(b"PYTHONPROFILEIMPORTTIME"):
            raise Direct("PYTHONPROFILEIMPORTTIME is run directly")
        found, self.exe = _find_executable(self.argv[0], env, cwd)
        # A name like python3 is the interpreter (a pyenv shim is a "#!"
        # script too): only other programs are read.
        script = None if _is_python_name(self.argv[0]) else \
            _script_command(self.exe, found, self.argv)
        if script is not None:
            # The interpreter is not looked at for a "#!" of its own.
            self.argv = script
            self.exe = _find_executable(self.argv[0], env, cwd)[1]
        self.kind, self.value, self.prog = _parse(self.argv)
        self.script = None
        if self.kind == b"s":
            try:
                self.script = os.path.realpath(os.path.join(cwd, self.value),
                                               strict=True)
            except OSError:
                raise Direct("script not found")

    @property
    def args(self):
        """The program's own arguments."""
        return self.argv[self.prog + 1:]

    def key_material(self, env, tty):
        """tty: whether fds 0, 1 and 2 of the launch are terminals."""
        try:
            st = os.stat(self.exe)
            ident = b"%d:%d:%d:%d" % (st.st_dev, st.st_ino, st.st_size,
                                      st.st_mtime_ns)
        except OSError:
            ident = b"0:0:0:0"
        fields = [b"warmstart-exec 1", b"uid=%d" % os.getuid(),
                  b"exe=" + self.exe, b"exe-id=" + ident]
        fields += [b"arg=" + a for a in self.argv[1:self.prog + 1]]
        fields.append(b"kind=" + self.kind)
        if self.kind == b"s":
            fields.append(b"script=" + self.script)
        else:
            fields.append(b"cwd=" + self.cwd)
        fields.append(b"tty=" + bytes(b"01"[bool(t)] for t in tty))
        fields += [b"env=" + e for e in sorted(
            k + b"=" + v for k, v in env.items() if _is_key_variable(k))]
        return b"".join(f + b"\0" for f in fields)


def _is_key_variable(name):
    if name in NOT_KEY:
        return False
    return name in KEY_NAMES or name.startswith(KEY_PREFIXES)


def _absolute(cwd, path):
    if path.startswith(b"/"):
        return path
    return (b"/" if cwd == b"/" else cwd + b"/") + path


def _find_executable(name, env, cwd):
    """(the path execvp passes for name, that path made absolute)."""
    if b"/" in name:
        return name, _absolute(cwd, name)
    path = env.get(b"PATH")
    if path is None:
        raise Direct("interpreter not found on PATH")
    for d in path.split(b":"):
        if not d:
            continue
        cand = d + b"/" + name
        try:
            if os.access(cand, os.X_OK) and stat.S_ISREG(os.stat(cand).st_mode):
                return cand, _absolute(cwd, cand)
        except OSError:
            pass
    raise Direct("interpreter not found on PATH")


def _is_python_name(path):
    base = path.rsplit(b"/", 1)[-1]
    return base.startswith(b"python") and not base[6:].strip(b"0123456789.")


def _script_command(exe, found, argv):
    """For a program whose "#!" line names a Python interpreter (a
    console script): the command the kernel runs, "interpreter [arg]
    found args...".  None for a file that is not a "#!" script; Direct
    for one not served.  As script_command in src/client/command.c."""
    try:
        with open(exe, "rb") as f:
            line = f.read(255)
    except OSError:
        return None
    if not line.startswith(b"#!"):
        return None
    if b"\n" not in line:
        raise Direct("#! line too long")
    # As the kernel splits it: the interpreter, then at most one argument,
    # the rest of the line with its ends trimmed.
    line = line[2:line.index(b"\n")].lstrip(b" \t")
    end = next((i for i, c in enumerate(line) if c in b" \t"), len(line))
    interp = line[:end]
    arg = line[end:].lstrip(b" \t").rstrip(b" \t\r") or None
    if interp in (b"/usr/bin/env", b"/bin/env"):
        if arg is None or arg.startswith(b"-") or any(
                c in arg for c in (b" ", b"\t", b"=")):
            raise Direct("a #!/usr/bin/env line with options")
        interp, arg = arg, None
    if not _is_python_name(interp):
        raise Direct("a #! script of another interpreter")
    return [interp] + ([arg] if arg else []) + [found] + list(argv[1:])


def _parse(argv):
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == b"--check-hash-based-pycs":
            i += 2
            continue
        if not a.startswith(b"-") or a in (b"-", b"--"):
            if a.startswith(b"-"):
                raise Direct("program read from stdin" if a == b"-"
                             else "'--' before the script")
            return b"s", a, i
        if a.startswith(b"--"):
            raise Direct("long option")
        j = 1
        while j < len(a):
            c = a[j:j + 1]
            if c in (b"c", b"m", b"W", b"X"):
                arg = a[j + 1:]
                if not arg:
                    i += 1
                    if i >= len(argv):
                        raise Direct("option without its argument")
                    arg = argv[i]
                if c == b"X" and arg.startswith(b"importtime"):
                    # Its report is of the imports, which the server did.
                    raise Direct("-X importtime is run directly")
                if c in (b"c", b"m"):
                    return c, arg, i
                break
            if c not in PLAIN_FLAGS:
                raise Direct("interpreter option run directly (-i, -S, -x, ...)")
            j += 1
        i += 1
    raise Direct("no program (interactive interpreter)")


def server_dirs(env):
    """The candidates for the server directory, in order of preference:
    $WARMSTART_SERVER_DIR alone if set; else $XDG_RUNTIME_DIR/warmstart,
    then /tmp/warmstart-<uid> (for an XDG_RUNTIME_DIR that another user
    can change, as after `su` without `-`).  As ws_server_dir in
    src/client/command.c."""
    d = env.get(b"WARMSTART_SERVER_DIR")
    if d:
        return [d]
    out = []
    xdg = env.get(b"XDG_RUNTIME_DIR")
    if xdg and xdg.startswith(b"/"):
        out.append(xdg + b"/warmstart")
    out.append(b"/tmp/warmstart-%d" % os.getuid())
    return out


def server_dir(env, create=True):
    """The server directory, open (privdir.PrivateDir), or None."""
    from . import privdir
    for d in server_dirs(env):
        try:
            return privdir.PrivateDir(os.fsdecode(d), 0o077, create)
        except OSError:
            continue
    return None


def server_key(material):
    """The name of a command's server files (socket: <key>.sock)."""
    from ._image import _checksum
    return "%016x" % _checksum(material)
