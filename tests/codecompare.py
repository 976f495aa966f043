"""Deep comparison of code objects, used to check image code against what
marshal gives for the same module."""
import dis
import io
import math
import re

_ADDRESS = re.compile(r" at 0x[0-9a-f]+")

CODE_ATTRS = (
    "co_argcount", "co_posonlyargcount", "co_kwonlyargcount", "co_nlocals",
    "co_stacksize", "co_flags", "co_firstlineno", "co_code", "co_names",
    "co_varnames", "co_freevars", "co_cellvars", "co_filename", "co_name",
    "co_qualname", "co_linetable", "co_exceptiontable",
)


def _same_value(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b) or (
            math.isnan(a) and math.isnan(b))
    if isinstance(a, complex):
        return _same_value(a.real, b.real) and _same_value(a.imag, b.imag)
    return a == b


def diff(a, b, where="", with_dis=True):
    """List of differences between two objects found in code constants."""
    out = []
    if type(a) is not type(b):
        return [f"{where}: type {type(a).__name__} != {type(b).__name__}"]
    if hasattr(a, "co_code"):
        for attr in CODE_ATTRS:
            va, vb = getattr(a, attr), getattr(b, attr)
            if va != vb or type(va) is not type(vb):
                out.append(f"{where}.{attr}: {va!r:.80} != {vb!r:.80}")
        if list(a.co_positions()) != list(b.co_positions()):
            out.append(f"{where}.co_positions() differ")
        if list(a.co_lines()) != list(b.co_lines()):
            out.append(f"{where}.co_lines() differ")
        if with_dis and _dis(a) != _dis(b):
            out.append(f"{where}: dis output differs")
        if len(a.co_consts) != len(b.co_consts):
            out.append(f"{where}.co_consts: length differs")
        else:
            for i, (ca, cb) in enumerate(zip(a.co_consts, b.co_consts)):
                out += diff(ca, cb, f"{where}.{a.co_name}[{i}]", with_dis)
        return out
    if isinstance(a, tuple):
        if len(a) != len(b):
            return [f"{where}: tuple length {len(a)} != {len(b)}"]
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff(x, y, f"{where}({i})", with_dis)
        return out
    if isinstance(a, frozenset):
        if a != b:
            out.append(f"{where}: frozenset {a!r:.80} != {b!r:.80}")
        return out
    if not _same_value(a, b):
        out.append(f"{where}: {a!r:.80} != {b!r:.80}")
    return out


def _dis(code):
    """dis output, with frozenset constants printed in sorted order: their
    iteration order depends on hash randomisation, image or not."""
    f = io.StringIO()
    dis.dis(code, file=f, depth=0)
    text = f.getvalue()
    for ins in dis.get_instructions(code):
        if isinstance(ins.argval, frozenset) and ins.argrepr:
            canonical = "frozenset({%s})" % ", ".join(
                sorted(repr(x) for x in ins.argval))
            text = text.replace(ins.argrepr, canonical)
    return _ADDRESS.sub(" at 0x?", text)
