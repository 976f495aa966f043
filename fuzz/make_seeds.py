"""Write seed images for the fuzzer: small images of a few stdlib modules,
for the interpreter that runs this script (the one the fuzzer embeds)."""
import os
import sys

from warmstart import _image, image

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
src = {m[0]: m for m in image.stdlib_modules(include_tests=False)}
sets = [["keyword"], ["colorsys", "bisect"], ["json", "json.decoder"],
        ["string", "textwrap", "heapq"]]
for i, names in enumerate(sets):
    entries = [(n, image.compile_module(src[n][1]), None) for n in names]
    # Tiny sources too, with every kind of constant.
    entries.append(("k%d" % i, compile(
        "A = (1, 2.5, 3j, b'xy', 'z\\u20ac', 10**40, None, ...)\n"
        "def f(x): return x in {'a', 'b', (1, 2)}\n", "k.py", "exec"), None))
    _image.write_image(os.path.join(out, f"seed{i}.img"), entries,
                       image._preferred_base(names))
