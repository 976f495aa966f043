"""Code from an image behaves as code from a normal import: identities,
constants, interning, tracing, monitoring, debugging, specialisation."""
import json
import sys
import textwrap

import pytest

import warmstart
from conftest import run_python

SOURCE = textwrap.dedent('''
    import sys
    SMALL = 7
    MINUS = -5
    BIG = 10 ** 30
    NEG = -12345678901234567890
    F = 1.5
    NEGZERO = -0.0
    C = 2 + 3j
    E = ()
    S = ''
    CH = 'a'
    LCH = '\xe9'
    B1 = b'x'
    B0 = b''
    LONGB = b'\\x00\\x01bytes'
    UNI = 'h\\xe9llo w\\xf6rld \\u2211 \\U0001f600'
    UCS2 = '\\u03a9mega'
    LAT = 'caf\\xe9'
    ELL = ...
    NEST = (1, (2, (3, 'deep', (None, True, False, ...))))

    def member(x):
        return x in {"alpha", "beta", "gamma", 1, 2.5, None, (1, 2)}

    def gen(n):
        for i in range(n):
            yield i * 2

    async def coro(x):
        return x + 1

    def closure(a):
        def inner(b):
            return a + b
        return inner

    class K:
        __slots__ = ('x',)
        def __init__(self, x):
            self.x = x
        @property
        def double(self):
            return self.x * 2

    def add(a, b=2, *, c=3):
        return a + b + c

    def add2(a, b):
        return a + b

    def driver(n):
        total = 0
        for i in range(n):
            total += add2(i, 1) + add(i)
            total += K(i).double
        return total

    def workload():
        g = list(gen(3))
        c = coro(4)
        try:
            c.send(None)
        except StopIteration as e:
            r = e.value
        return g, r, closure(1)(2), add(1), K(3).double
''')

CHILD = r'''
import bdb, dis, gc, json, sys, types
import warmstart
from warmstart import _image
path, src_path, other = sys.argv[1:4]
img = warmstart.Image(path)
code = img.get_code("wsmod")
mod = types.ModuleType("wsmod")
mod.__file__ = src_path
exec(code, mod.__dict__)
src = open(src_path).read()
ref = types.ModuleType("refmod")
exec(compile(src, src_path, "exec"), ref.__dict__)
out = {}
def check(name, value):
    out[name] = bool(value)

check("small int identity", mod.SMALL is int("7") and mod.MINUS is int("-5"))
check("empty tuple identity", mod.E is tuple())
check("empty str identity", mod.S is str())
# An identifier-like constant is the interned string, as with marshal;
# another one-character latin-1 constant is the runtime's singleton.
check("char identity", mod.CH is sys.intern(chr(97)) and mod.LCH is chr(0xe9))
check("byte identity", mod.B1 is bytes([120]) and mod.B0 is bytes())
check("singletons", mod.NEST[1][1][2] == (None, True, False, ...)
      and mod.NEST[1][1][2][0] is None and mod.NEST[1][1][2][1] is True
      and mod.ELL is Ellipsis)
check("values", (mod.BIG, mod.NEG, mod.F, mod.C, mod.LONGB, mod.UNI, mod.UCS2,
                 mod.LAT) == (ref.BIG, ref.NEG, ref.F, ref.C, ref.LONGB,
                              ref.UNI, ref.UCS2, ref.LAT))
check("negative zero", str(mod.NEGZERO) == "-0.0")
check("string hashes", all(hash(s) == hash("".join(list(s)))
                           for s in (mod.UNI, mod.UCS2, mod.LAT)))
check("bytes hash", hash(mod.LONGB) == hash(bytes(list(mod.LONGB))))
check("utf8", mod.UNI.encode() == ref.UNI.encode()
      and mod.UCS2.encode("utf-16") == ref.UCS2.encode("utf-16"))
fs = [c for c in mod.member.__code__.co_consts if isinstance(c, frozenset)]
check("frozenset constant", len(fs) == 1 and type(fs[0]) is frozenset)
check("frozenset membership",
      all(mod.member(x) for x in ("alpha", "beta", "gamma", 1, 2.5, None, (1, 2)))
      and not any(mod.member(x) for x in ("delta", 3, (2, 1), b"alpha")))
names_ok = True
def walk(co):
    global names_ok
    for n in co.co_names + co.co_varnames:
        names_ok &= sys.intern(n) is n
    for c in co.co_consts:
        if isinstance(c, types.CodeType):
            walk(c)
walk(code)
check("names interned", names_ok)
check("workload", mod.workload() == ref.workload())

# Tracing (sys.settrace and therefore coverage and pdb): same events.
def trace_events(m):
    events = []
    def tracer(frame, event, arg):
        co = frame.f_code
        events.append((event, co.co_name, frame.f_lineno))
        return tracer
    sys.settrace(tracer)
    try:
        m.workload()
    finally:
        sys.settrace(None)
    return events
check("settrace events", trace_events(mod) == trace_events(ref)
      and len(trace_events(mod)) > 20)

if hasattr(sys, "monitoring"):
    M = sys.monitoring
    def monitor(m):
        seen = []
        tool = M.PROFILER_ID
        M.use_tool_id(tool, "ws")
        E = M.events
        for ev in (E.PY_START, E.PY_RETURN, E.LINE, E.PY_YIELD):
            M.register_callback(tool, ev,
                lambda *a, ev=ev: seen.append((ev, a[0].co_name)))
        M.set_events(tool, E.PY_START | E.PY_RETURN | E.LINE | E.PY_YIELD)
        try:
            m.workload()
        finally:
            M.set_events(tool, 0)
            M.free_tool_id(tool)
        return seen
    a, b = monitor(mod), monitor(ref)
    check("sys.monitoring events", a == b and len(a) > 20)

# A debugger breakpoint in image code.
class Dbg(bdb.Bdb):
    hits = []
    def user_line(self, frame):
        if self.break_here(frame):
            self.hits.append((frame.f_code.co_name, dict(frame.f_locals)))
        self.set_continue()
d = Dbg()
line = next(i for i, l in enumerate(src.splitlines(), 1) if "return a + b + c" in l)
d.set_break(src_path, line)
d.runcall(mod.add, 10)
check("breakpoint", d.hits == [("add", {"a": 10, "b": 2, "c": 3})])

# Specialisation of calls between image functions.
mod.driver(3000)
ref.driver(3000)
def ops(f):
    return {i.opname for i in dis.get_instructions(f, adaptive=True)}
check("calls specialised", any(o.startswith("CALL_PY") for o in ops(mod.driver))
      and ops(mod.driver) == ops(ref.driver))
check("driver result", mod.driver(50) == ref.driver(50))

# Code versions (3.13 assigns them at load; they must not collide).
if sys.version_info >= (3, 13):
    versions = []
    def collect(co):
        versions.append(_image._code_version(co))
        for c in co.co_consts:
            if isinstance(c, types.CodeType):
                collect(c)
    collect(code)
    fresh = compile("def f(): pass", "x", "exec")
    check("code versions unique", all(versions) and len(set(versions)) == len(versions)
          and _image._code_version(fresh) not in versions)

gc.collect()
check("tuples untracked", not gc.is_tracked(mod.NEST) and not gc.is_tracked(code.co_consts))
if sys.version_info >= (3, 14):
    # Mortal and immortal as after a normal load (interned strings only are
    # immortal): the eval loop specialises constants on it.
    import marshal
    loaded = marshal.loads(marshal.dumps(compile(src, src_path, "exec")))
    def leaves(x):
        yield x
        if isinstance(x, types.CodeType):
            for a in ("co_consts", "co_names", "co_varnames", "co_filename",
                      "co_name", "co_qualname", "co_code", "co_linetable"):
                yield from leaves(getattr(x, a))
        elif isinstance(x, tuple):
            for y in x:
                yield from leaves(y)
    pairs = list(zip(leaves(code), leaves(loaded), strict=True))
    check("immortal as loaded", len(pairs) > 100 and all(
        sys._is_immortal(a) == sys._is_immortal(b) for a, b in pairs))
    check("constants specialised the same",
          ops(mod.workload) == ops(ref.workload))
    # Image strings interned later, immortally (the code constructor does
    # it for names): exit must not free them.
    code.replace(co_names=code.co_names + (mod.UNI, mod.LAT, "fresh!"))
elif sys.version_info >= (3, 12):
    before = sys.getrefcount(mod.BIG)
    keep = [mod.BIG] * 100
    check("immortal", sys.getrefcount(mod.BIG) == before)

# The same image mapped twice: the second mapping is relocated.
img2 = warmstart.Image(path)
check("relocated", img2.header["relocated"] and not img.header["relocated"])
code2 = img2.get_code("wsmod")
m2 = types.ModuleType("wsmod2")
exec(code2, m2.__dict__)
check("relocated code runs", code2 is not code and m2.workload() == ref.workload()
      and m2.NEST == ref.NEST)
# Another image open at the same time.
img3 = warmstart.Image(other)
check("two images", img3.get_code("json") is not None
      and img.get_code("wsmod") is code)
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def wsmod_image(tmp_path_factory, small_image):
    d = tmp_path_factory.mktemp("sem")
    src = d / "wsmod.py"
    src.write_text(SOURCE)
    img = d / "wsmod.img"
    summary = warmstart.build_image(img, [("wsmod", str(src), False)])
    assert summary["modules"] == 1
    return str(img), str(src)


def test_semantics(wsmod_image, small_image):
    img, src = wsmod_image
    out = json.loads(run_python(CHILD, img, src, small_image).stdout)
    failed = [k for k, v in out.items() if not v]
    assert failed == []
    assert "breakpoint" in out and "two images" in out
    if sys.version_info >= (3, 12):
        assert "sys.monitoring events" in out
        assert ("immortal as loaded" if sys.version_info >= (3, 14)
                else "immortal") in out
    if sys.version_info >= (3, 13):
        assert "code versions unique" in out
