"""The forked child of a warm server: becomes the launched program.

The server has already imported the program's modules.  The child takes
over the client's fds 0-2, cwd, umask, resource limits, environment and
argv, builds sys.stdin/stdout/stderr as a direct run would for those fds,
runs the program the way `python -m/-c/script` does, and exits the way
Py_FinalizeEx begins (non-daemon threads joined, atexit handlers run,
streams flushed) without tearing down the server's heap object by object.
"""
import fcntl        # imported in the server: a worker imports nothing
import io
import os
import resource
import signal
import socket
import sys
import types

from . import confinement, protocol
from .protocol import EXITED, SIGNALED

RLIM_UNSIGNED_INFINITY = 2 ** 64 - 1


class Preloaded:
    """What a worker takes from its server, taken once after the preload:
    __main__'s dunders; the interpreter's own streams; what the imports
    did to the environment and to signal dispositions (program_signals,
    and free_signals: those a launch inherits from its caller, of which
    free_ignored are ignored in the server); the server's signal mask
    (blocked); its confinement; the shared page record (learned); and
    leave(), which closes the server's descriptors in the child."""

    __slots__ = ("main_template", "old_streams", "env_changes",
                 "program_signals", "free_signals", "free_ignored",
                 "blocked", "confined", "learned", "leave")

    def __init__(self, *values):
        for name, value in zip(self.__slots__, values, strict=True):
            setattr(self, name, value)


class Refuse(Exception):
    """The launch cannot be reproduced here; the client runs it directly."""


def wait_as_spare(state, chan):
    """In a spare worker: leave the server behind, then wait for a launch
    the server has checked (HAND: the client's connection and fds, what
    to take over from the client, the request) on chan; exit if the
    server goes away instead.  Never returns."""
    try:
        _leave_server(state)
        _prefault(state)
        import marshal
        tag, message, fds = protocol.receive(chan, 1 + protocol.MAX_FDS)
        chan.close()
        if tag != protocol.HAND or len(fds) < 4:
            os._exit(0)
        conn = socket.socket(fileno=fds[0])
        settable, payload = marshal.loads(message)
        request = protocol.Request(payload)
    except BaseException:
        os._exit(0)
    run(state, conn, request, fds[1:], settable, left=True)


def run(state, conn, request, fds, settable, left=False):
    """In the child, after fork, for a launch the server checked
    (confinement.check; settable is what it found to take over); never
    returns."""
    status = (EXITED, 1)
    try:
        try:
            if not left:
                _leave_server(state)
            conn = _take_over(state, conn, request, fds, settable)
        except Refuse as e:
            protocol.nope(conn, str(e))
            os._exit(0)
        except BaseException as e:
            protocol.nope(conn, f"worker set-up failed: {e!r}")
            os._exit(0)
        protocol.send_pid(conn, os.getpid())
        status = _run_program(request.command, state.main_template)
        _finish(state)
    finally:
        # The first EXIT the client reads counts; the server sends one
        # too when it reaps us (needed for deaths by a signal).
        try:
            protocol.send_exit(conn, status)
        except OSError:
            pass
        _learn(state)
        if status[0] == SIGNALED:
            signal.signal(status[1], signal.SIG_DFL)
            os.kill(os.getpid(), status[1])
        os._exit(status[1] if status[0] == EXITED else 1)


def _prefault(state):
    """In a spare, before it waits: copy now the pages that the last
    launch had to copy while its client waited (src/server/pages.c)."""
    try:
        from ._image import prefault
        prefault(state.learned)
    except (ImportError, OSError, ValueError):
        pass


def _learn(state):
    """After a launch (its client already has its status): note the pages
    it made its own, for the next spare."""
    try:
        from ._image import written
        written(state.learned)
    except BaseException:       # the program's end must stay as it was
        pass


def _leave_server(state):
    """Own process group, none of the server's fds, the program's signal
    handlers (as they were after the preload)."""
    os.setpgid(0, 0)
    state.leave()
    for sig, handler in state.program_signals.items():
        try:
            if signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)
        except (OSError, ValueError, TypeError):
            pass


def _take_over(state, conn, request, fds, settable):
    if settable is not None:
        try:
            confinement.take_over(state.confined, settable)
        except confinement.Differs as e:
            raise Refuse(str(e))
    try:
        os.chdir(request.cwd)
    except OSError as e:
        raise Refuse(f"cannot enter the client's directory: {e}")
    os.umask(request.umask)
    for res, soft, hard in request.limits:
        _apply_limit(res, soft, hard)
    want = dict(request.env)
    for k, v in state.env_changes.items():
        if v is None:
            want.pop(k, None)
        else:
            want[k] = v
    # Only what differs: putenv/unsetenv per variable is not free.
    env = os.environb
    for k in [k for k in env if k not in want]:
        del env[k]
    for k, v in want.items():
        if env.get(k) != v:
            env[k] = v
    cmd = request.command
    # In place: a module may hold the list (a default argument bound to
    # sys.argv at import).
    sys.orig_argv[:] = [os.fsdecode(a) for a in cmd.argv]
    args = [os.fsdecode(a) for a in cmd.args]
    if cmd.kind == b"s":
        sys.argv[:] = [os.fsdecode(cmd.value)] + args
    else:
        sys.argv[:] = ["-" + cmd.kind.decode()] + args
    # Last of what can refuse: after it, conn is another socket object.
    conn = _take_fds(conn, fds, [0, 1, 2] + request.extra_fds)
    _make_stdio(state.old_streams)
    np_random = sys.modules.get("numpy.random")
    if np_random is not None and hasattr(np_random, "seed"):
        np_random.seed()        # stdlib random reseeds itself at fork
    _take_signals(state, request)
    return conn


def _take_signals(state, request):
    """The dispositions and mask a direct run would start with, for the
    signals the preloaded imports left alone (state.free_signals): what
    the caller ignores stays ignored (nohup, a background job), what it
    does not is not, with Python's own start-up rules on top (SIGINT
    raises KeyboardInterrupt unless inherited ignored; SIGPIPE and
    SIGXFSZ are always ignored, and so not free)."""
    ignore = (state.free_signals & request.ignored) - state.free_ignored
    restore = state.free_ignored - request.ignored
    for sig in ignore:
        signal.signal(sig, signal.SIG_IGN)
    for sig in restore:
        signal.signal(sig, signal.default_int_handler
                      if sig == signal.SIGINT else signal.SIG_DFL)
    if request.blocked != state.blocked:
        signal.pthread_sigmask(signal.SIG_SETMASK, request.blocked)


def _take_fds(conn, fds, targets):
    """The client's descriptors at the client's numbers, inheritable as a
    direct run has them; our connection to the client out of their way,
    high up (a program that writes to a descriptor it was not given must
    not reach it).  Returns the connection, moved."""
    if len(fds) != len(targets):
        raise Refuse("descriptors and their numbers do not match")
    mine = set(fds)
    mine.add(conn.fileno())
    for t in targets[3:]:           # 0-2 are the server's /dev/null and log
        if t not in mine and _is_open(t):
            raise Refuse(f"descriptor {t} is in use by the preloaded modules")
    low = max(targets) + 1
    # High, but not so high that the descriptor table must grow far.
    high = max(low + len(fds),
               min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1024) - 2)
    moved = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0,
                          fcntl.fcntl(conn.fileno(), fcntl.F_DUPFD_CLOEXEC,
                                      high))
    conn.close()
    if set(fds).intersection(targets):
        # One would be overwritten before it is moved: stage them above.
        staged = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low) for fd in fds]
        for fd in fds:
            os.close(fd)
        fds = staged
    for fd, t in zip(fds, targets):
        os.dup2(fd, t)              # inheritable, as it was in the client
        os.close(fd)
    return moved


def _is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _apply_limit(res, soft, hard):
    def value(v):
        return resource.RLIM_INFINITY if v == RLIM_UNSIGNED_INFINITY else v
    want = (value(soft), value(hard))
    try:
        if resource.getrlimit(res) != want:
            resource.setrlimit(res, want)
    except (OSError, ValueError) as e:
        raise Refuse(f"cannot apply resource limit {res}: {e}")


def _make_stdio(old_streams):
    """sys.stdin/stdout/stderr as CPython's create_stdio() makes them for
    the fds we now have: the encoding and errors the server's start-up
    chose (the locale and PYTHONIOENCODING are part of the server's key),
    line buffering on a terminal (stderr always), -u honoured."""
    # -u and PYTHONUNBUFFERED are not in sys.flags; the server's own
    # streams, made at its start-up with the same settings, tell.
    buffered = not old_streams[1].write_through
    names = (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w"))
    for (name, fd, mode), old in zip(names, old_streams):
        write = mode == "w"
        buffering = 0 if write and not buffered else -1
        buf = io.open(fd, mode + "b", buffering, closefd=False)
        raw = buf.raw if buffering else buf
        raw.name = "<%s>" % name
        line_buffering = buffered and (raw.isatty() or fd == 2)
        stream = io.TextIOWrapper(
            buf, encoding=old.encoding, errors=old.errors, newline="\n",
            line_buffering=line_buffering, write_through=not buffered)
        stream.mode = mode
        setattr(sys, name, stream)
        setattr(sys, "__%s__" % name, stream)


def _new_main(template, **attrs):
    main = types.ModuleType("__main__")
    main.__dict__.update(template)
    main.__dict__.update(attrs)
    sys.modules["__main__"] = main
    return main


def _run_program(cmd, template):
    """Run as pymain_run_python does; return (EXITED, code) or
    (SIGNALED, signo)."""
    try:
        if cmd.kind == b"m":
            import runpy
            _new_main(template)
            runpy._run_module_as_main(os.fsdecode(cmd.value))
        elif cmd.kind == b"c":
            main = _new_main(template)
            code = compile(os.fsdecode(cmd.value), "<string>", "exec")
            exec(code, main.__dict__)
        else:
            from importlib.machinery import SourceFileLoader
            path = os.path.abspath(os.fsdecode(cmd.value))
            with io.open_code(path) as f:
                source = f.read()
            attrs = dict(__file__=path,
                         __loader__=SourceFileLoader("__main__", path))
            if sys.version_info < (3, 15):
                attrs["__cached__"] = None    # 3.15's pymain sets none
            main = _new_main(template, **attrs)
            exec(compile(source, path, "exec"), main.__dict__)
    except SystemExit as e:
        return EXITED, _exit_code(e)
    except BaseException as e:
        _print_exception(e)
        if isinstance(e, KeyboardInterrupt):
            return SIGNALED, signal.SIGINT
        return EXITED, 1
    return EXITED, 0


def _exit_code(e):
    """_Py_HandleSystemExit: None is 0, an int is itself, anything else is
    printed and is 1."""
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        # As _Py_HandleSystemExit: taken as a C long; one that does not
        # fit is -1.
        if not -2 ** 63 <= code < 2 ** 63:
            # Reported by 3.12 and 3.13 only, at threading shutdown on
            # 3.13 (a program that imported threading gets a longer report
            # there); 3.14 is silent again.
            msg = "OverflowError: Python int too large to convert to C long\n"
            if sys.version_info >= (3, 13):
                msg = "Exception ignored on threading shutdown:\n" + msg
            if (3, 12) <= sys.version_info < (3, 14):
                try:
                    sys.stderr.write(msg)
                except Exception:
                    pass
            return 255
        return code & 0xff
    try:
        sys.stderr.write(str(code) + "\n")
    except Exception:
        pass
    return 1


def _print_exception(e):
    """sys.excepthook as PyErr_Print calls it, without this file's frames
    (a direct run's traceback starts at the program or at runpy)."""
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    e.__traceback__ = tb
    sys.last_type, sys.last_value, sys.last_traceback = type(e), e, tb
    if sys.version_info >= (3, 12):
        sys.last_exc = e
    try:
        sys.excepthook(type(e), e, tb)
    except BaseException:
        sys.__excepthook__(type(e), e, tb)


def _finish(state):
    """What Py_FinalizeEx does before it frees anything."""
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    import atexit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, *state.old_streams):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
