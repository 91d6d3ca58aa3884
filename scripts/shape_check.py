#!/usr/bin/env python3
"""Checks the code's shape; exits non-zero, naming each breach.

- Layers import downward only: core → config → the middle layer (dataflow,
  source, sink, checkpoint, serve, rank) → job → the binary. The middle
  layer's modules may use each other, but no module imports upward.
- No import circle between source files.
- No source file over 600 lines, no function over 120 lines, no
  `too_many_arguments` allowance (src/ and tests/).

An import is a path through `crate::`, `popularity::` or `super::` outside
comments; doc links do not count.
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYER = {"core": 0, "config": 1, "job": 3, "main": 4, "cli": 4}
MIDDLE = 2
MAX_FILE, MAX_FN = 600, 120


def rust_files(top):
    for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
        for f in sorted(files):
            if f.endswith(".rs"):
                yield os.path.join(dirpath, f)


def module_of(path):
    rel = os.path.relpath(path, os.path.join(ROOT, "src"))[:-3]
    rel = re.sub(r"(^|/)mod$", "", rel)
    return rel.replace("/", "::") or "lib"


def code_lines(text):
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped.startswith("//"):
            yield line


def imports(path, module, modules):
    """Modules of the crate that `path` names."""
    text = "\n".join(code_lines(open(path).read()))
    found = set()
    here = module.split("::")
    for m in re.finditer(r"\b(crate|popularity|super)::((?:\w+::)*\w+)", text):
        root, rest = m.group(1), m.group(2).split("::")
        if root == "super":
            # `super` is the parent module, whatever file holds this one.
            base = here[:-1]
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
            parts = base + rest
        else:
            parts = rest
        for i in range(len(parts), 0, -1):
            name = "::".join(parts[:i])
            if name in modules and name != module:
                found.add(name)
                break
    return found


def layer(module):
    return LAYER.get(module.split("::")[0], MIDDLE)


def circles(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def subtree_edges(edges):
    """Edges between folders and files as wholes: a module depends on what
    any module below it imports, outside its own subtree. A circle here is
    one that passes through a parent and its child, which the file graph
    cannot show (a child's `super::` and a parent's `mod` are not a circle)."""
    out = {}
    for source, targets in edges.items():
        parts = source.split("::")
        for i in range(1, len(parts) + 1):
            node = "::".join(parts[:i])
            for target in targets:
                if target == node or target.startswith(node + "::"):
                    continue
                if node == target.split("::")[0] or node.startswith(target + "::"):
                    continue
                out.setdefault(node, set()).add(target)
    for node in list(out):
        out.setdefault(node, set())
    return out


def long_functions(path):
    lines = open(path).read().split("\n")
    start = re.compile(r"\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?fn\s+(\w+)")
    for i, line in enumerate(lines):
        m = start.match(line)
        if not m:
            continue
        depth, opened, j = 0, False, i
        while j < len(lines):
            s = re.sub(r"//.*", "", lines[j])
            s = re.sub(r'"(\\.|[^"\\])*"', '""', s)
            s = re.sub(r"'(\\.|[^'\\])'", "''", s)
            depth += s.count("{") - s.count("}")
            opened = opened or "{" in s
            if (opened and depth <= 0) or (not opened and s.rstrip().endswith(";")):
                break
            j += 1
        if j - i + 1 > MAX_FN:
            yield m.group(5), i + 1, j - i + 1


def main():
    breaches = []
    files = list(rust_files("src"))
    modules = {module_of(p): p for p in files}
    edges = {}
    for module, path in modules.items():
        edges[module] = imports(path, module, modules)
        for target in sorted(edges[module]):
            if layer(target) > layer(module):
                breaches.append(f"{module} imports {target}, a layer above it")
    groups = {tuple(g) for g in circles(edges) + circles(subtree_edges(edges))}
    for group in sorted(groups):
        breaches.append("import circle: " + " → ".join(group))
    for path in files + list(rust_files("tests")):
        rel = os.path.relpath(path, ROOT)
        text = open(path).read()
        n = text.count("\n")
        if n > MAX_FILE:
            breaches.append(f"{rel}: {n} lines (at most {MAX_FILE})")
        for name, line, length in long_functions(path):
            breaches.append(f"{rel}:{line}: fn {name} is {length} lines (at most {MAX_FN})")
        if "too_many_arguments" in text:
            breaches.append(f"{rel}: allows too_many_arguments")
    for b in breaches:
        print(b)
    print(f"shape: {len(files)} source files, {len(breaches)} breaches")
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
