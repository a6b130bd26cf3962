#!/usr/bin/env python3
"""Fails if a crate's modules (files) import each other in a cycle, the test modules aside.

    .ci/file-cycles.py [ROOT]

A module's imports are the `crate::a::b`, `super::a` and `child::x` paths in its code
(comments and the `#[cfg(test)] mod tests` block left out), each resolved to the deepest module
of that crate it names (`use super::{a, b}` read as both); a file's `mod` declarations of its
children and its re-exports (`pub use child::X`, its public face) do not count. Prints every cycle found, as
modules in order, and exits 1 if there is one.
"""

import os
import re
import sys


def crate_sources(root):
    for base in ("services", "simulator"):
        for dirpath, dirnames, _ in os.walk(os.path.join(root, base)):
            if os.path.basename(dirpath) == "src":
                dirnames[:] = []
                yield dirpath


def expand_group(match):
    base = match.group(1)
    items = [item.strip() for item in match.group(2).split(",") if item.strip()]
    return " ".join(f"{base}::{item.split(' as ')[0]}" for item in items)


def modules(src):
    """Module path ("" for the crate root) -> the code of its file."""
    found = {}
    for dirpath, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            parts = os.path.relpath(path, src)[:-3].split(os.sep)
            if parts[0] == "bin" or parts == ["main"]:
                continue  # binaries are their own crates
            if parts[-1] in ("mod", "lib"):
                parts = parts[:-1]
            with open(path, encoding="utf-8") as f:
                code = f.read()
            code = re.split(r"#\[cfg\(test\)\]\s*mod tests\b", code)[0]
            code = re.sub(r"//[^\n]*", "", code)
            # a re-export is the module's public face, not a use of the other's code
            code = re.sub(r"\bpub(?:\([^)]*\))?\s+use\b[^;]*;", "", code)
            # `use super::{a, b::c}` reads as `super::a`, `super::b::c`
            code = re.sub(r"\b(crate|super|self)::\{([^{}]*)\}", expand_group, code)
            found["::".join(parts)] = code
    return found


def imports(mods):
    edges = {m: set() for m in mods}
    for m, code in mods.items():
        here = m.split("::") if m else []
        for base, path in re.findall(r"\b(crate|super)((?:::\w+)+)", code):
            segs = path.strip(":").split("::")
            target = segs if base == "crate" else here[:-1] + segs
            for n in range(len(target), 0, -1):
                name = "::".join(target[:n])
                if name in mods:
                    if name != m:
                        edges[m].add(name)
                    break
        # a path that starts at one of the module's own children (`child::x`, `self::child`)
        for child in re.findall(r"(?<![\w:])(?:self::)?(\w+)::\w", code):
            name = "::".join(here + [child])
            if name in mods and name != m:
                edges[m].add(name)
    return edges


def cycles(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    found = 0
    for src in sorted(crate_sources(root)):
        for component in cycles(imports(modules(src))):
            found += 1
            print(f"{os.path.relpath(src, root)}: {' <-> '.join(component)}")
    if found:
        print(f"file-cycles: {found} cycle(s) between modules")
        return 1
    print("file-cycles: no module imports another that imports it back")
    return 0


if __name__ == "__main__":
    sys.exit(main())
