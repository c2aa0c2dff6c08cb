#!/usr/bin/env python3
"""Import circles among a crate's modules (CI: shuyu-server's areas import one another one way).

Reads every `.rs` file under SRC (default `crates/shuyu-server/src`), collects the
`crate::a::b` paths it names (in `use` trees and inline, comments and `#[cfg(test)] mod
tests` / `mod testing` left out), resolves each to the longest module that exists, and finds the strongly
connected components of that graph. A circle is allowed only inside one area: all its
modules under the same top-level folder (e.g. `audit::trail` and `audit::retention`).
Prints every circle; exits 1 when one crosses areas or touches the top level.

    python3 tools/import_circles.py [SRC] [-v]
"""
import os
import re
import sys


def modules(root):
    mods = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), root)[:-3]
            parts = rel.split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            mods["::".join(parts)] = os.path.join(dirpath, name)
    return mods


def expand(tree):
    """`a::{b, c::{d, e as f}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+as\s+[A-Za-z_][A-Za-z0-9_]*", "", tree)
    tree = re.sub(r"\s+", "", tree)
    out = []

    def rec(prefix, text):
        depth, items, cur = 0, [], ""
        for ch in text:
            if ch == "{":
                depth += 1
            if ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                items.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            items.append(cur)
        for item in items:
            if "{" in item:
                head, rest = item.split("{", 1)
                rec(prefix + head, rest[:-1])
            else:
                out.append(prefix + item)

    rec("", tree)
    return out


def edges_of(mods):
    def resolve(path):
        parts = path.split("::")
        while parts:
            m = "::".join(parts)
            if m in mods:
                return m
            parts = parts[:-1]
        return ""

    edges = {m: set() for m in mods}
    for m, path in mods.items():
        src = open(path, encoding="utf-8").read()
        # Test code (`mod tests`, and test-support modules such as the store's `testing`) is
        # left out: it sits at the end of a file.
        tests = re.search(r"#\[cfg\(test\)\]\s*(pub(\(crate\))?\s+)?mod (tests|testing)\b", src)
        if tests:
            src = src[: tests.start()]
        src = re.sub(r"//[^\n]*", "", src)
        paths = []
        for u in re.finditer(r"use\s+crate::([^;]+);", src, re.S):
            paths += expand(u.group(1))
        paths += re.findall(r"crate::((?:[a-z_][a-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*)", src)
        for p in paths:
            target = resolve(p.strip(":"))
            if target and target != m and not m.startswith(target + "::"):
                edges[m].add(target)
    return edges


def circles(edges):
    sys.setrecursionlimit(10000)
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def main():
    args = [a for a in sys.argv[1:] if a != "-v"]
    root = args[0] if args else "crates/shuyu-server/src"
    mods = modules(root)
    areas = {m.split("::")[0] for m in mods if "::" in m}
    edges = edges_of(mods)
    bad = 0
    for comp in circles(edges):
        tops = {m.split("::")[0] for m in comp}
        inside = len(tops) == 1 and all("::" in m for m in comp) and tops <= areas
        verdict = "inside one area" if inside else "CROSSES AREAS"
        bad += not inside
        print(f"circle of {len(comp)} ({verdict}): {' '.join(comp)}")
        if "-v" in sys.argv:
            members = set(comp)
            for m in comp:
                print(f"    {m} -> {' '.join(sorted(edges[m] & members))}")
    print(f"{len(mods)} modules; {bad} circle(s) crossing areas")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
