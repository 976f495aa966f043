"""Learned prefaulting (src/server/pages.c): what a worker records is what
the next spare copies ahead, and nothing in the shared buffer -- which a
served program can write -- can make a spare do more than that."""
import ctypes
import mmap
import os
import random
import struct

import pytest

from warmstart import _image

PAGE = mmap.PAGESIZE


def _exclusive(addr):
    """Is the page at addr present and this process's own?"""
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(addr // PAGE * 8)
        entry = struct.unpack("Q", f.read(8))[0]
    return entry >> 63 & 1 == 1 and entry >> 56 & 1 == 1


def _in_child(fn):
    """Run fn in a forked child; its return value (a small int)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(w, bytes([fn()]))
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    return out[0] if out else None


def test_recorded_pages_are_copied_ahead_by_the_next_fork():
    shared = mmap.mmap(-1, 65536)
    data = mmap.mmap(-1, 64 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    data[:] = b"x" * len(data)          # present in the parent
    base = ctypes.addressof(ctypes.c_char.from_buffer(data))
    written = [3, 4, 5, 40]

    def worker():
        for i in written:
            data[i * PAGE] = ord("y")   # copy-on-write: now the child's own
        return 1 if _image.written(shared) >= len(written) else 0
    assert _in_child(worker) == 1

    def spare():
        before = [_exclusive(base + i * PAGE) for i in (3, 40, 10)]
        _image.prefault(shared)
        after = [_exclusive(base + i * PAGE) for i in (3, 40, 10)]
        same = data[3 * PAGE] == ord("x")   # no byte changed
        return (before == [False] * 3) | (after == [True, True, False]) << 1 \
            | same << 2
    assert _in_child(spare) == 7


def test_a_scribbled_buffer_cannot_crash_a_spare():
    shared = mmap.mmap(-1, 65536)
    rng = random.Random(12)
    for trial in range(20):
        if trial % 2:
            shared[:] = rng.randbytes(len(shared))
        else:
            # Plausible header, ranges anywhere (kernel space, unmapped,
            # wrapping, read-only text).
            shared[:8] = struct.pack("=II", 0x77737066, 4095)
            for i in range(4095):
                shared[8 + i * 16:24 + i * 16] = struct.pack(
                    "=QQ", rng.getrandbits(64) & ~(PAGE - 1),
                    rng.choice([1, 2 ** 20, 2 ** 63]))
        assert _in_child(lambda: _image.prefault(shared) >= 0) == 1


def test_buffer_must_be_writable_and_large_enough():
    with pytest.raises(BufferError):
        _image.written(b"\0" * 64)
    with pytest.raises(ValueError):
        _image.prefault(bytearray(4))
