"""Descriptors a process would pass on to the processes it spawns."""
import os


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
