#!/usr/bin/env python3
"""Import cycles between the files of each crate (`make lint` runs it).

A file depends on another when its code names an item of the other's module
(`use crate::a::b`, `super::x`, `self::child::y`, `child::z` for a child it
declares). `pub use` re-exports are left out: a module's facade names its
children without depending on them. Test modules (`#[cfg(test)] mod tests`)
are left out too. Any strongly connected group of two or more files is a
cycle, printed with the edges that close it; exit 1 if there is one.

Approximate by design (no macro expansion, no glob resolution beyond the
module named), which suits a layout lint: a cycle it reports is real.
"""

import re
import sys
from pathlib import Path

# The repository; another checkout may be named (to compare with an older tree).
REPO = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent


def crates():
    """(crate name, its root files) for every workspace member."""
    out = []
    for manifest in sorted(REPO.glob("**/Cargo.toml")):
        if "target" in manifest.parts or manifest.parent == REPO:
            continue
        src = manifest.parent / "src"
        roots = [p for p in (src / "lib.rs", src / "main.rs") if p.is_file()]
        roots += sorted((src / "bin").glob("*.rs")) if (src / "bin").is_dir() else []
        if roots:
            out.append((manifest.parent.relative_to(REPO), roots))
    return out


def strip(text):
    """Code without comments, string contents and test modules."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    cut = re.search(r"#\[cfg\(test\)\]\s*(pub(\(crate\))?\s+)?mod\s+\w+\s*\{", text)
    return text[: cut.start()] if cut else text


def module_files(root):
    """Module path (tuple) -> file, following `mod x;` from the root."""
    files = {}

    def walk(path, file):
        files[path] = file
        code = strip(file.read_text())
        if file.name in ("lib.rs", "main.rs", "mod.rs") or file.parent.name == "bin":
            base = file.parent
        else:
            base = file.parent / file.stem
        for name in re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code, re.M):
            for candidate in (base / f"{name}.rs", base / name / "mod.rs"):
                if candidate.is_file():
                    walk(path + (name,), candidate)
                    break

    walk((), root)
    return files


def use_paths(tree):
    """Every full path in a use tree such as `crate::{a::X, b::{Y, Z}}`."""
    tree = re.sub(r"\s+", "", tree)

    def expand(prefix, text):
        depth, start, parts = 0, 0, []
        for i, c in enumerate(text):
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            elif c == "," and depth == 0:
                parts.append(text[start:i])
                start = i + 1
        parts.append(text[start:])
        out = []
        for part in filter(None, parts):
            if "{" in part:
                head, rest = part.split("{", 1)
                out += expand(prefix + [s for s in head.split("::") if s], rest[: rest.rindex("}")])
            else:
                out.append(prefix + part.split(" as ")[0].split("::"))
        return out

    return expand([], tree)


def resolve(path, here, files):
    """The module file a path names, from module `here`; None if outside."""
    segments = list(path)
    if not segments:
        return None
    head = segments[0]
    if head == "crate":
        base, rest = (), segments[1:]
    elif head == "super":
        base, rest = here, segments
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    elif head == "self":
        base, rest = here, segments[1:]
    elif here + (head,) in files:
        base, rest = here, segments
    else:
        return None
    module = base
    for segment in rest:
        if module + (segment,) in files:
            module = module + (segment,)
        else:
            break
    return module


def edges_of(files):
    edges = {}
    for here, file in files.items():
        code = strip(file.read_text())
        targets = {}
        for facade, tree in re.findall(r"^\s*(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", code, re.M):
            if facade.strip() == "pub":
                continue
            for path in use_paths(tree):
                targets.setdefault(resolve(path, here, files), f"use {'::'.join(path)}")
        body = re.sub(r"^\s*(pub(?:\([^)]*\))?\s+)?use\s+[^;]+;", "", code, flags=re.M)
        for match in re.finditer(r"\b((?:crate|super|self|\w+)(?:::\w+)+)", body):
            path = match.group(1).split("::")
            targets.setdefault(resolve(path, here, files), match.group(1))
        edges[here] = {t: why for t, why in targets.items() if t is not None and t != here}
    return edges


def cycles(edges):
    """Strongly connected components of two or more modules (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
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

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def main():
    found = 0
    checked = 0
    for crate, roots in crates():
        for root in roots:
            files = module_files(root)
            checked += len(files)
            edges = edges_of(files)
            for group in cycles(edges):
                found += 1
                print(f"{crate}: import cycle between {len(group)} files:")
                for v in group:
                    for w, why in sorted(edges[v].items()):
                        if w in group:
                            print(f"  {files[v].relative_to(REPO)} -> {files[w].relative_to(REPO)} ({why})")
    if found:
        print(f"{found} import cycles; make each dependency go one way (a shared part in a file of its own)")
        return 1
    print(f"module_cycles: no import cycles among {checked} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
