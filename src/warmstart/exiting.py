"""At-exit work that leaves the program's exit status as it was.

A program that ends by an uncaught KeyboardInterrupt must die of SIGINT
(status 130 to a shell), as CPython arranges after finalisation.  CPython
keeps that verdict in one flag, and every exec() or eval() of a *string*
resets it, as an atexit handler importing a module that builds a
namedtuple or a dataclass does.  Our at-exit work (recording, serving,
auto images) imports such modules, so each handler goes through
register() here, which sets the flag again afterwards the only way
CPython offers: a string that raises KeyboardInterrupt.

Imports nothing beyond what the interpreter has at start.
"""
import atexit
import sys


def _ended_by_interrupt():
    # PyErr_Print left the uncaught exception here before finalisation
    # began.  After a -i session that verdict is stale: the REPL ran since.
    if sys.flags.inspect or sys.flags.interactive:
        return False
    exc = getattr(sys, "last_exc", None)           # 3.12+
    if exc is None:
        exc = getattr(sys, "last_value", None)
    return isinstance(exc, KeyboardInterrupt)


def run(func, *args):
    """func(*args) at exit, keeping a SIGINT exit a SIGINT exit.  Importing
    this module at exit does not disturb the flag: it runs no string."""
    interrupted = _ended_by_interrupt()
    try:
        func(*args)
    finally:
        if interrupted:
            try:
                exec("raise KeyboardInterrupt")
            except KeyboardInterrupt:
                pass


def register(func, *args):
    """atexit.register(func, *args), keeping a SIGINT exit a SIGINT exit."""
    atexit.register(run, func, *args)
