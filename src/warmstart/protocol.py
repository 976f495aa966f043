"""The messages between warmstart-exec, a warm server and its workers.

src/client/protocol.h documents each message, field by field; this is
the Python end of the same conversation (the server and the worker).
Every message is a 4-byte tag, a uint32 payload length in host order,
and the payload; descriptors ride on the header (SCM_RIGHTS).
"""
import os
import socket
import struct

from . import command

VERSION = b"2"                  # WS_PROTOCOL_VERSION
MAX_MESSAGE = 1 << 20           # WS_MAX_MESSAGE
MAX_FDS = 64                    # WS_MAX_FDS: 0-2 and up to 61 others

# client -> server
RUN = b"RUN "
STOP = b"STOP"
# server or worker -> client
NOPE = b"NOPE"
PID = b"PID "
EXIT = b"EXIT"
BYE = b"BYE "
# server -> spare worker
HAND = b"HAND"

EXITED, SIGNALED = 0, 1         # the kinds of an EXIT (ws_exit_kind)

_HEADER = struct.Struct("=4sI")
_UINT = struct.Struct("=I")
_EXIT = struct.Struct("=II")


def send(conn, tag, payload=b""):
    conn.sendall(_HEADER.pack(tag, len(payload)) + payload)


def send_fds(conn, tag, payload, fds):
    """One message with *fds* attached to its header."""
    socket.send_fds(conn, [_HEADER.pack(tag, len(payload))], fds)
    conn.sendall(payload)


def nope(conn, why):
    send(conn, NOPE, why if isinstance(why, bytes) else why.encode())


def send_pid(conn, pid):
    send(conn, PID, _UINT.pack(pid))


def send_exit(conn, how):
    """*how*: (EXITED, code) or (SIGNALED, signal number)."""
    send(conn, EXIT, _EXIT.pack(*how))


def receive(conn, maxfds=3):
    """One message: (tag, payload, fds).  EOFError on a clean end (a
    probe, or a client that died); ValueError on a malformed message,
    its descriptors closed."""
    header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, maxfds)
    if not header:
        raise EOFError
    try:
        while len(header) < _HEADER.size:
            more = conn.recv(_HEADER.size - len(header))
            if not more:
                raise ValueError("short header")
            header += more
        tag, n = _HEADER.unpack(header)
        if n > MAX_MESSAGE:
            raise ValueError("message too long")
        chunks, got = [], 0
        while got < n:
            c = conn.recv(min(65536, n - got))
            if not c:
                raise ValueError("short message")
            chunks.append(c)
            got += len(c)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return tag, b"".join(chunks), fds


def peer(conn):
    """(pid, uid, gid) of the process at the other end (SO_PEERCRED)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                            struct.calcsize("3i"))
    return struct.unpack("3i", creds)


class Request:
    """A parsed RUN payload (protocol.h).  command.Direct: a client of
    another protocol version; ValueError: a malformed one."""

    def __init__(self, payload):
        f = payload.split(b"\0")
        if f[0] != VERSION:
            raise command.Direct("another protocol version")
        self.umask = int(f[1], 8)
        self.cwd = f[2]
        argc = int(f[3])
        self.argv = f[4:4 + argc]
        i = 4 + argc
        envc = int(f[i])
        self.env = {}
        for e in f[i + 1:i + 1 + envc]:
            k, sep, v = e.partition(b"=")
            if sep:
                self.env.setdefault(k, v)
        i += 1 + envc
        nlim = int(f[i])
        self.limits = [tuple(int(x) for x in e.split())
                       for e in f[i + 1:i + 1 + nlim]]
        i += 1 + nlim
        ignored, blocked = f[i].split()
        self.ignored = _signals(int(ignored, 16))
        self.blocked = _signals(int(blocked, 16))
        self.extra_fds = [int(x) for x in f[i + 1].split()]
        if any(fd < 3 for fd in self.extra_fds) or \
                len(set(self.extra_fds)) != len(self.extra_fds):
            raise ValueError("malformed descriptor list")
        if not self.argv or any(len(t) != 3 for t in self.limits):
            raise ValueError("malformed request")
        self.command = command.Command(self.argv, self.env, self.cwd)


def _signals(mask):
    return {n for n in range(1, 65) if mask >> (n - 1) & 1}
