"""The warm server: a process that has imported a program's modules and
forks a child per launch (tier 3).  docs/architecture.md has the picture;
src/client/protocol.h the messages.

Life cycle
  1. `warmstart-exec` finds no server for a command, takes <base>.lock and
     runs the command directly with WARMSTART_SERVE=<base>.  That run
     (_boot.serve_at_exit) notes its start-up argv, environment and cwd and, at
     exit, the modules it imported, writes them to <base>.preload and
     spawns `python <same flags> -c ...server.main() <base>` in a new
     session.
  2. The server checks that it is the interpreter and command the client
     named, imports the modules (never the program's __main__), refuses
     to serve if that started threads, freezes the heap for the GC, binds
     <base>.sock (atomically, by rename) and drops the lock.
  3. Per launch: peer uid checked, request read, key material compared,
     every file the preloaded state came from re-checked (a change
     retires the server: "stale"), fork; the child is worker.run().  The
     server reports a child's exit status when it reaps it and kills a
     child whose client went away.
  4. It exits after WARMSTART_SERVER_IDLE seconds (default 600) without
     launches or children, on STOP, when retired, or when <base>.sock is
     no longer its own.
"""
import errno
import gc
import importlib
import marshal
import mmap
import os
import select
import selectors
import signal
import socket
import struct
import sys
import threading
import time

from . import caches, command, confinement, preload, privdir, protocol, worker
from .caches import server_alive as _alive
from .fds import inheritable as inheritable_fds, load_ctypes

PENDING_SECONDS = 10            # a connection's time to send its request
DEFAULT_IDLE = 600
DEFAULT_MAX = 32                # servers per user (WARMSTART_SERVER_MAX)
SPARE_DELAY = 0.05              # make_spare while launches run
LEARNED_BYTES = 65536           # pages.c: 4095 runs of written pages


class Files:
    """One command's files in the server directory, <key>.sock, .preload,
    .log, .json, .refused and .lock, reached through the directory's
    descriptor (privdir.py): every process that uses them opens the
    directory itself and checks it, since a path handed over (the
    WARMSTART_SERVE variable, the server's argv) is only a name."""

    def __init__(self, base):
        d, key = os.path.split(os.fsdecode(base))
        if len(key) != 16 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"not a server key: {key!r}")
        self.dir = privdir.PrivateDir(d, 0o077, create=False)
        self.key = key
        self.base = self.dir.join(key)

    def name(self, suffix):
        return self.key + suffix

    def read(self, suffix):
        return self.dir.read(self.key + suffix)

    def write(self, suffix, data):
        self.dir.write(self.key + suffix, data)

    def unlink(self, suffix):
        self.dir.unlink(self.key + suffix)

    def exists(self, suffix):
        return self.dir.exists(self.key + suffix)

    def file_id(self, suffix):
        st = self.dir.stat(self.key + suffix)
        return None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns)

    def address(self, suffix=".sock"):
        return self.dir.address(self.key + suffix)

    def close(self):
        self.dir.close()


# -- 1. the recording run ------------------------------------------------

def write_record(files, record):
    files.write(".preload", marshal.dumps(record))


def spawn(files, record):
    """Start a server for files.base in a new session, in the background."""
    exe = record["executable"]
    args = [exe, *record["spawn_flags"],
            "-c", "import warmstart.server as s; s.main()", files.base]
    log = files.dir.create_fresh(files.name(".log"))
    try:
        # Nothing of the recording run's but the log: a pipe it was given
        # as fd 3 must not stay open for the server's whole life.
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_DUP2, log, 1),
                   (os.POSIX_SPAWN_DUP2, log, 2)]
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in inheritable_fds()
                    if fd != log]
        os.posix_spawn(exe, args, record["env"],
                       file_actions=actions, setsid=True)
    finally:
        os.close(log)


# -- 2. start-up ---------------------------------------------------------

class Server:
    def __init__(self, files):
        self.files = files
        self.listener = None
        self.selector = None
        self.wakeup = None
        self.workers = {}           # pid -> connection to its client
        self.pending = {}           # connection -> when, request not yet in
        self.spare = None           # (pid, channel) of a pre-forked worker
        self.quiet = False          # no events for SPARE_DELAY, launches run
        self.retiring = False
        self.stopping = False
        self.old_streams = (sys.__stdin__, sys.__stdout__, sys.__stderr__)
        self.main_template = {k: v for k, v in vars(sys.modules["__main__"]).items()
                              if k.startswith("__")}
        self.idle = float(os.environ.get("WARMSTART_SERVER_IDLE", DEFAULT_IDLE))
        # Before the preload: which dispositions its imports changed.
        self.start_signals = {}
        for sig in signal.valid_signals():
            try:
                self.start_signals[sig] = signal.getsignal(sig)
            except (OSError, ValueError):
                pass

    def refuse(self, why):
        log(f"refusing to serve: {why}")
        self.files.write(".refused", (why + "\n").encode())
        self.files.unlink(".lock")
        sys.exit(1)

    def prepare(self, record):
        os.chdir(record["cwd"])
        if (tuple(sys.flags) != tuple(record["flags"])
                or sys.warnoptions != record["warnoptions"]
                or {k: str(v) for k, v in sys._xoptions.items()}
                != record["xoptions"]):
            self.refuse("the server's interpreter flags differ from the program's")
        env = record["env"]
        try:
            cmd = command.Command(record["argv"], env, record["cwd"])
        except command.Direct as e:
            self.refuse(f"command not served: {e}")
        self.material = cmd.key_material(env, record["tty"])
        if command.server_key(self.material) != self.files.key:
            self.refuse("client and server disagree on the command's key")
        self.command = cmd
        path0 = {b"m": record["cwd"], b"c": b"", b"s": os.path.dirname(cmd.script or b"")}
        if not sys.flags.safe_path:
            sys.path[0] = os.fsdecode(path0[cmd.kind])
        preload_start = time.time_ns()
        # In place, as in the workers: a module may keep the list itself.
        saved_argv = list(sys.argv)
        sys.argv[:] = record.get("argv_at_exit") or saved_argv
        failed = {}
        with preload.Observed(record["tty"], record.get("size")) as seen:
            for name in record["modules"] + record["extra"]:
                if name in sys.modules:
                    continue
                try:
                    importlib.import_module(name)
                except BaseException as e:  # noqa: the program's business
                    failed[name] = repr(e)
        if seen.output:
            sys.argv[:] = saved_argv
            self.refuse(f"the imports write output, which a launch would "
                        f"not show: {seen.output[:60]!r}")
        self.env_read = seen.names()
        self.cwd_read = seen.cwd_read
        self.start_env = env
        sys.argv[:] = saved_argv
        # What the imports did to the environment (awscli, for one, sets
        # AWS_DATA_PATH): a launch gets its client's environment with the
        # same changes made, as its own imports would have made them.
        start_env, now = env, dict(os.environb)
        self.env_changes = {k: now.get(k) for k in start_env.keys() | now.keys()
                            if start_env.get(k) != now.get(k)}
        for name, why in failed.items():
            log(f"not preloaded: {name}: {why}")
        sys.modules["__main__"].__dict__.clear()
        sys.modules["__main__"].__dict__.update(self.main_template)
        self.check_threads()
        self.program_signals = {}
        for sig in signal.valid_signals():
            try:
                self.program_signals[sig] = signal.getsignal(sig)
            except (OSError, ValueError):
                pass
        # Signals whose disposition a launch inherits from its caller:
        # those the imports left as they were (not to a handler of
        # theirs), but SIGPIPE and SIGXFSZ, which Python always ignores.
        always = {getattr(signal, n) for n in ("SIGPIPE", "SIGXFSZ")
                  if hasattr(signal, n)}
        self.free_signals = {
            sig for sig, h in self.start_signals.items()
            if h is not None and self.program_signals.get(sig) is h
            and sig not in always and h in (signal.SIG_DFL, signal.SIG_IGN,
                                            signal.default_int_handler)}
        self.free_ignored = {sig for sig in self.free_signals
                             if self.program_signals[sig] == signal.SIG_IGN}
        self.blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        self.confined = confinement.prepare()
        # Shared with every worker: the pages a launch wrote, which the
        # next spare copies before it waits (src/server/pages.c).
        self.learned = mmap.mmap(-1, LEARNED_BYTES)
        self.watch = Watch(_watched_paths())
        # A file edited while we imported may have been read before the
        # edit and stat-ed after it: the snapshot would call stale code
        # fresh for the server's whole life.  Start again later instead
        # (timestamps lag the clock by up to a kernel tick: a margin).
        since = preload_start - 10_000_000
        for path, ident in self.watch.snapshot:
            if ident is not None and ident[2] >= since and os.path.isfile(path):
                log(f"not serving: {path} changed while preloading")
                self.files.unlink(".lock")
                sys.exit(0)
        # A worker's compile() (of -c code, of a script) would first build
        # the ast module's 120 types for its interpreter: 1 ms per launch
        # (3.12 here, 2026-12-02) unless they exist before the fork.
        compile("", "<warmstart>", "exec")
        self.preloaded = len(sys.modules)
        self.for_workers = worker.Preloaded(
            self.main_template, self.old_streams, self.env_changes,
            self.program_signals, self.free_signals, self.free_ignored,
            self.blocked, self.confined, self.learned, self.close_in_child)
        gc.collect()
        gc.freeze()

    def check_threads(self):
        """Refuse to serve with threads that a fork would not carry: a
        child has only the thread that forked.  Python threads always
        count.  Native threads count unless their library stops them at
        fork (pthread_atfork; OpenBLAS, loaded by NumPy, does): a trial
        fork tells."""
        python = [t.name for t in threading.enumerate()
                  if t is not threading.main_thread()]
        if python:
            self.refuse("preloading started threads (" + ", ".join(python)
                        + "); a process with threads cannot be forked safely")
        if self.other_threads():
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            left = self.other_threads()
            if left:
                self.refuse("preloading started threads (" + ", ".join(left)
                            + ") that do not stop at fork; a process with "
                            "threads cannot be forked safely")
            log("native threads stopped at fork (pthread_atfork); serving")

    @staticmethod
    def other_threads():
        names = [t.name for t in threading.enumerate()
                 if t is not threading.main_thread()]
        try:
            n = len(os.listdir("/proc/self/task"))
        except OSError:
            n = 1
        if n > 1 and not names:
            names = [f"{n - 1} native thread(s)"]
        return names

    def already_served(self):
        """Does a live server answer on our socket?  Then this one (started
        by a client that raced it) has nothing to do."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.files.address())
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def listen(self):
        if self.already_served():
            log("another server already serves this command")
            self.files.unlink(".lock")
            sys.exit(0)
        tmp = f".sock.{os.getpid()}"
        self.files.unlink(tmp)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Created 0600 whatever the umask: the directory is 0700 already.
        old_umask = os.umask(0o177)
        try:
            s.bind(self.files.address(tmp))
        finally:
            os.umask(old_umask)
        s.listen(64)
        self.files.dir.rename(self.files.name(tmp), self.files.name(".sock"))
        self.sock_id = self.files.file_id(".sock")
        self.listener = s
        self.files.unlink(".lock")
        self.files.unlink(".refused")
        import json
        info = {"pid": os.getpid(), "argv": [os.fsdecode(a) for a in self.command.argv],
                "cwd": os.fsdecode(self.command.cwd), "started": time.time(),
                "modules": self.preloaded, "watched": len(self.watch),
                "python": sys.version.split()[0]}
        self.files.write(".json", json.dumps(info).encode())
        self.used = time.monotonic()
        self.retire_least_used()
        for e in caches.trim_servers(self.files.dir, keep={self.files.key}):
            log(f"removed the files of server {e.key} ({e.state}): the "
                f"directory is over its cap (WARMSTART_CACHE_MAX)")

    def retire_least_used(self):
        """Keep at most WARMSTART_SERVER_MAX servers (default 32) for this
        user: each holds processes and an inotify instance, of which a
        user has few.  The ones used least recently (the mtime of their
        .json, refreshed at most once a minute) stop first."""
        import json
        try:
            cap = int(os.environ.get("WARMSTART_SERVER_MAX", DEFAULT_MAX))
        except ValueError:
            cap = DEFAULT_MAX
        d = self.files.dir
        others = []
        for n in d.listdir():
            key = n[:-5]
            if not n.endswith(".json") or key == self.files.key:
                continue
            try:
                info = json.loads(d.read(n))
                st = d.stat(n)
            except (OSError, ValueError):
                continue
            if st is not None and _alive(info.get("pid")):
                others.append((st.st_mtime, key))
        others.sort()
        for _, key in others[:max(0, len(others) + 1 - cap)]:
            log(f"stopping server {key}: more than {cap} servers")
            try:
                stop(d.join(key))
            except (OSError, ValueError):
                pass

    def note_use(self):
        now = time.monotonic()
        if now - self.used > 60:
            self.used = now
            try:
                os.utime(self.files.name(".json"), dir_fd=self.files.dir.fd,
                         follow_symlinks=False)
            except OSError:
                pass

    # -- 3. serving ---------------------------------------------------------

    def serve(self):
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wakeup = (r, w)
        signal.set_wakeup_fd(w)
        signal.signal(signal.SIGCHLD, lambda *a: None)
        signal.signal(signal.SIGTERM, self._on_term)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(r, selectors.EVENT_READ, "wakeup")
        last = time.monotonic()
        while True:
            if self.stopping or (self.retiring and not self.workers):
                break
            try:
                self.make_spare()
            except OSError as e:        # fork refused (limits, memory)
                log(f"no spare worker: {e}")
            wait = min(5, self.idle)
            if self.spare is None and self.workers:
                wait = min(wait, SPARE_DELAY)
            events = self.selector.select(timeout=wait)
            if not events and self.workers:
                self.quiet = True       # a spare may be made now
            for key, _ in events:
                what = key.data
                if what == "accept":
                    self.accept()
                elif what == "pending":
                    conn = key.fileobj
                    self.selector.unregister(conn)
                    del self.pending[conn]
                    self.handle(conn)
                elif what == "wakeup":
                    try:
                        while os.read(r, 512):
                            pass
                    except BlockingIOError:
                        pass
                    self.reap()
                else:
                    self.client_gone(what)
                last = time.monotonic()
            self.reap()
            if self.pending:
                self.expire_pending(time.monotonic())
            if not self.workers and time.monotonic() - last > self.idle:
                log("idle timeout")
                break
            if (not self.retiring
                    and self.files.file_id(".sock") != self.sock_id):
                log("socket replaced or removed")
                self.retire(unlink=False)
        self.shutdown()

    def _on_term(self, *args):
        self.stopping = True

    def accept(self):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        try:
            _, uid, _ = protocol.peer(conn)
            if uid != os.getuid():
                log(f"refused a client of uid {uid}")
                conn.close()
                return
            ready = select.select([conn], [], [], 0)[0]
        except OSError:
            conn.close()
            return
        if not ready:
            # Its request is read when it comes: a connection that sends
            # nothing must not hold up the launches behind it.
            self.pending[conn] = time.monotonic()
            self.selector.register(conn, selectors.EVENT_READ, "pending")
            return
        self.handle(conn)

    def handle(self, conn):
        """Read one request from conn and act on it."""
        keep = False
        try:
            conn.settimeout(10)     # the rest of a message already begun
            tag, payload, fds = protocol.receive(conn, protocol.MAX_FDS)
            try:
                if tag == protocol.STOP:
                    self.stopping = True
                    protocol.send(conn, protocol.BYE)
                    return
                if tag != protocol.RUN:
                    return
                keep = self.launch(conn, payload, fds)
            finally:
                for fd in fds:
                    os.close(fd)
        except EOFError:
            pass
        except (OSError, ValueError, struct.error) as e:
            log(f"bad request: {e!r}")
        finally:
            if not keep:
                conn.close()

    def expire_pending(self, now):
        for conn, since in list(self.pending.items()):
            if now - since > PENDING_SECONDS:
                del self.pending[conn]
                self.selector.unregister(conn)
                conn.close()

    def launch(self, conn, payload, fds):
        """Fork a worker for one RUN request; True if conn is kept."""
        try:
            req = protocol.Request(payload)
        except command.Direct as e:
            protocol.nope(conn, str(e))
            return False
        if len(fds) != 3 + len(req.extra_fds):
            raise ValueError("a RUN request carries fds 0-2 and its others")
        tty = [os.isatty(fd) for fd in fds[:3]]
        if req.command.key_material(req.env, tty) != self.material:
            protocol.nope(conn, b"another command")
            return False
        name = preload.differs(self.env_read, self.start_env,
                               self.env_changes, req.env)
        if name is not None:
            protocol.nope(conn, b"the preloaded imports read $"
                        + name + b", which this launch has otherwise")
            return False
        if self.cwd_read and req.cwd != self.command.cwd:
            protocol.nope(conn, b"the preloaded imports read the "
                        b"working directory, which this launch has otherwise")
            return False
        stale = self.watch.changed()
        if stale:
            protocol.nope(conn, f"stale: {stale}")
            if not self.retiring:
                log(f"retiring: {stale}")
                self.retire()
            return False
        if self.other_threads():
            protocol.nope(conn, b"server has threads")
            return False
        self.note_use()
        try:
            settable = confinement.check(self.confined, protocol.peer(conn)[0])
        except confinement.Differs as e:
            protocol.nope(conn, str(e))
            return False
        pid = self.hand_to_spare(conn, payload, fds, settable)
        if pid is None:
            self.flush()
            pid = os.fork()
            if pid == 0:
                conn.settimeout(None)
                worker.run(self.for_workers, conn, req, fds,
                           settable)                    # does not return
        self.workers[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, pid)
        return True

    # A spare: a worker forked ahead of time, waiting for a launch, so that
    # fork and the child's first copy-on-write faults are not paid while a
    # client waits.  The server makes the next one right after a launch.

    def flush(self):
        for stream in self.old_streams:
            if stream is not None:
                stream.flush()

    def make_spare(self):
        """Fork a spare once the launches have ended, or after SPARE_DELAY
        without events while they run: a fork while a launch runs slows
        that launch (a served `-c pass` took 0.7 ms longer with the spare
        forked right after the hand-off, 3.12 here, 2026-12-02)."""
        if (self.spare is not None or self.retiring
                or (self.workers and not self.quiet) or self.other_threads()):
            return
        self.quiet = False
        parent_end, child_end = socket.socketpair()
        self.flush()
        pid = os.fork()
        if pid == 0:
            parent_end.close()
            worker.wait_as_spare(self.for_workers, child_end)  # no return
        child_end.close()
        self.spare = (pid, parent_end)

    def hand_to_spare(self, conn, payload, fds, settable):
        """Give a checked launch to the spare; its pid, or None without
        one.  The spare is told what to take over from the client."""
        if self.spare is None:
            return None
        pid, chan = self.spare
        self.spare = None
        try:
            protocol.send_fds(chan, protocol.HAND,
                              marshal.dumps((settable, payload)),
                              [conn.fileno(), *fds])
        except OSError:
            _kill(pid)
            return None
        finally:
            chan.close()
        return pid

    def drop_spare(self):
        if self.spare is not None:
            pid, chan = self.spare
            self.spare = None
            chan.close()
            _kill(pid)

    def client_gone(self, pid):
        conn = self.workers.get(pid)
        if conn is None:
            return
        try:
            data = conn.recv(64, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            # The client died (or exited after the worker's EXIT): a
            # program whose launcher was killed ends with it.
            self.selector.unregister(conn)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def reap(self):
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.workers.pop(pid, None)
            if conn is None:
                if self.spare is not None and self.spare[0] == pid:
                    self.spare[1].close()
                    self.spare = None
                continue
            if os.WIFSIGNALED(status):
                how = (protocol.SIGNALED, os.WTERMSIG(status))
            else:
                how = (protocol.EXITED, os.WEXITSTATUS(status))
            try:
                protocol.send_exit(conn, how)
            except OSError:
                pass
            try:
                self.selector.unregister(conn)
            except (KeyError, ValueError):
                pass
            conn.close()

    def retire(self, unlink=True):
        """Serve no more launches; exit once the running ones have ended."""
        self.retiring = True
        self.drop_spare()
        if unlink and self.files.file_id(".sock") == self.sock_id:
            self.files.unlink(".sock")
        self.selector.unregister(self.listener)
        self.listener.close()

    def shutdown(self):
        self.drop_spare()
        if not self.retiring and self.files.file_id(".sock") == self.sock_id:
            self.files.unlink(".sock")
        try:
            import json
            if json.loads(self.files.read(".json")).get("pid") == os.getpid():
                self.files.unlink(".json")
        except (OSError, ValueError):
            pass
        log("exiting")

    def close_in_child(self):
        """In a worker: drop everything that belongs to the server."""
        signal.set_wakeup_fd(-1)
        self.selector.close()
        self.listener.close()
        for fd in self.wakeup:
            os.close(fd)
        self.watch.close()
        self.files.close()
        for conn in [*self.workers.values(), *self.pending]:
            conn.close()
        self.workers.clear()
        self.pending.clear()
        if self.spare is not None:
            self.spare[1].close()
            self.spare = None


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- staleness -----------------------------------------------------------

def _file_id(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _watched_paths():
    """Every file the preloaded state came from, and every directory in
    which a new file could shadow one of them."""
    import site
    paths = {sys.executable, os.path.realpath(sys.executable),
             os.path.join(sys.prefix, "pyvenv.cfg")}
    for m in list(sys.modules.values()):
        f = getattr(m, "__file__", None)
        if isinstance(f, str):
            paths.add(os.path.abspath(f))
        for d in getattr(m, "__path__", None) or ():
            if isinstance(d, str):
                paths.add(os.path.abspath(d))
    for d in sys.path:
        paths.add(os.path.abspath(d or "."))
    sitedirs = list(getattr(site, "getsitepackages", lambda: [])())
    if site.ENABLE_USER_SITE:
        sitedirs.append(site.getusersitepackages())
    for d in sitedirs:
        try:
            paths.update(os.path.join(d, n) for n in os.listdir(d)
                         if n.endswith(".pth"))
        except OSError:
            pass
    return sorted(paths)


def _snapshot(paths):
    return [(p, _file_id(p)) for p in paths]


def _changed(watch):
    for path, ident in watch:
        if _file_id(path) != ident:
            return f"{path} changed"
    return None


class Watch:
    """Tells whether any watched path changed since the snapshot.

    With inotify (Linux) a launch costs one non-blocking read whatever
    the number of files: the kernel queues an event in the same system
    call that changes a file, so a change made before a launch is always
    seen by it.  Directories holding watched files are watched (that
    covers edits, replacements by rename, deletions and new shadowing
    files); an event there that could change an import retires the
    server (see _matters).  Without inotify, every path is stat-ed per
    launch."""

    MASK = 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800
    # IN_MODIFY ATTRIB CLOSE_WRITE MOVED_FROM MOVED_TO CREATE DELETE
    # DELETE_SELF MOVE_SELF
    IN_Q_OVERFLOW = 0x4000
    IN_ISDIR = 0x40000000

    def __init__(self, paths):
        import importlib.machinery as machinery
        self.SUFFIXES = tuple(os.fsencode(s) for s in
                              machinery.all_suffixes() + [".pth"])
        self.snapshot = _snapshot(paths)
        self.fd = None
        self.dirs = {}
        self.names = {}             # directory -> names of watched files
        for p in paths:
            if not os.path.isdir(p):
                self.names.setdefault(os.path.dirname(p), set()).add(
                    os.fsencode(os.path.basename(p)))
        try:
            self._init_inotify(paths)
        except (OSError, AttributeError, ImportError) as e:
            log(f"no inotify ({e}); stat-ing {len(paths)} paths per launch")
            if self.fd is not None:
                os.close(self.fd)
            self.fd = None

    def _init_inotify(self, paths):
        ctypes = load_ctypes()
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.fd = fd
        dirs = set()
        for p in paths:
            dirs.add(p if os.path.isdir(p) else os.path.dirname(p))
        for d in sorted(dirs):
            if not os.path.isdir(d):
                continue
            wd = libc.inotify_add_watch(fd, os.fsencode(d), self.MASK)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {d}")
            self.dirs[wd] = d
        # A change between the snapshot and the watches being in place.
        why = _changed(self.snapshot)
        if why:
            raise OSError(0, why)

    def changed(self):
        """None, or what changed."""
        if self.fd is None:
            return _changed(self.snapshot)
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return None
        i = 0
        while i + 16 <= len(data):
            wd, mask, _, n = struct.unpack_from("=iIII", data, i)
            name = data[i + 16:i + 16 + n].rstrip(b"\0")
            i += 16 + n
            if mask & self.IN_Q_OVERFLOW:
                return "too many changes to follow"
            where = self.dirs.get(wd, "?")
            if self._matters(where, name, mask & self.IN_ISDIR):
                return f"{os.path.join(where, os.fsdecode(name))} changed"
        return None

    def _matters(self, where, name, isdir):
        """Could this change in a watched directory change what the
        preloaded state would be?  A watched file itself, anything an
        import could pick up (a module file, a .pth file, a directory
        that could be a package), the directory itself (empty name) --
        not a log file written into the working directory, nor bytecode
        caches.  A new directory is empty when created; the files that
        make it a package come later, so its creation is what counts."""
        if not name:
            return True
        if name == b"__pycache__":
            return False
        if isdir:
            return os.fsdecode(name).isidentifier()
        return (name in self.names.get(where, ())
                or name.endswith(self.SUFFIXES))

    def __len__(self):
        return len(self.snapshot)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main():
    try:
        files = Files(sys.argv[1])
    except (OSError, ValueError) as e:
        log(f"refusing to serve: {e}")
        sys.exit(1)
    server = Server(files)
    if server.already_served():
        files.unlink(".lock")
        return
    try:
        record = marshal.loads(files.read(".preload"))
    except (OSError, EOFError, ValueError) as e:
        server.refuse(f"no readable record of the program: {e}")
    server.prepare(record)
    server.listen()
    log(f"serving {server.preloaded} modules, watching {len(server.watch)} paths")
    server.serve()


# -- management (warmstart server ...) ------------------------------------

def servers(env=None):
    """[(base, info dict or None, state)] for every server this user has."""
    import json
    d = command.server_dir(env if env is not None else os.environb)
    if d is None:
        return []
    out = []
    try:
        keys = {n.split(".", 1)[0] for n in d.listdir()
                if n.endswith((".json", ".refused", ".sock"))}
        for key in sorted(keys):
            info = None
            try:
                info = json.loads(d.read(key + ".json"))
            except (OSError, ValueError):
                pass
            try:
                why = d.read(key + ".refused").decode(errors="replace")
                state = "refused: " + why.strip()
            except OSError:
                if info and _alive(info["pid"]):
                    state = "running"
                else:
                    state = "dead"
            out.append((d.join(key), info, state))
    finally:
        d.close()
    return out


def private_memory(pid):
    """Private (unshared) memory of a process in bytes, or None."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            kib = sum(int(line.split()[1]) for line in f
                      if line.startswith(("Private_Clean:", "Private_Dirty:")))
        return kib * 1024
    except (OSError, ValueError, IndexError):
        return None


def children(pid):
    """Pids of a process's children (its spare and running launches)."""
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def stop(base):
    """Stop one server; True if one was running."""
    files = Files(base)
    try:
        files.unlink(".refused")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(files.address())
        if protocol.peer(s)[1] != os.getuid():
            return False
        protocol.send(s, protocol.STOP)
        s.recv(8)
        s.close()
        return True
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ECONNREFUSED, None):
            raise
        return False
    finally:
        files.close()


def restart(base):
    """Stop a server and start a fresh one from its saved record."""
    stop(base)
    files = Files(base)
    try:
        record = marshal.loads(files.read(".preload"))
        for _ in range(50):
            if not files.exists(".sock"):
                break
            time.sleep(0.02)
        spawn(files, record)
    finally:
        files.close()
