"""Descriptors a process would pass on to the processes it spawns."""
import os
import sys


def inheritable():
    """This process's inheritable descriptors above 2 (from /proc; none
    where /proc cannot be read)."""
    out = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for n in names:
        fd = int(n)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    out.append(fd)
            except OSError:
                pass            # the listing's own descriptor, now closed
    return out


# The numbers a launch may hand its program (3>file, make's jobserver):
# what the server opens for itself while it starts must stay above them.
LOW_RESERVED = 64


def load_ctypes():
    """Import ctypes with descriptors 3 to LOW_RESERVED - 1 taken, so that
    what loading it opens lands above them: libffi 3.5 (Debian 13 and
    later) keeps a descriptor of its own library open from load on, for
    its static trampolines.  In the server, at the lowest free number, it
    would sit where a launch puts the program's descriptor 3."""
    if "_ctypes" in sys.modules:
        import ctypes
        return ctypes
    held = []
    try:
        try:
            held.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            while held[-1] < LOW_RESERVED - 1:
                held.append(os.dup(held[0]))
        except OSError:
            pass                # out of descriptors: load it where it lands
        import ctypes
        return ctypes
    finally:
        for fd in held:
            os.close(fd)
