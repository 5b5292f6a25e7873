#!/usr/bin/env python3
"""Checks the import graph of src/: no circles between files, and no forbidden arrows.

Why:
- A circle (a.rs uses b.rs, which uses a.rs, possibly through other files) makes files that
  can no longer be understood, tested or changed one at a time: they must change together.
- Some arrows must only ever point down. When the request path (http, listen, table, tls,
  ...) reaches back up into the config language (lwsws), Kubernetes (k8s) or the wiring (app),
  a change to how the config is written can break serving, and the layering in src/lib.rs
  stops being true. The forbidden arrows are the FORBIDDEN table below, one reason each.

How (text only, no cargo; Python 3.11 stdlib):
- Each src/**/*.rs is a node. src/lib.rs is the crate root; src/a.rs and src/a/mod.rs are
  `crate::a`, src/a/b.rs is `crate::a::b`. src/main.rs and src/bin/*.rs are roots of their own
  that see the library as `lwsws::`.
- Comments, string and char literals, and `#[cfg(test)] mod ... { }` blocks are blanked first.
- Edges come from plain `use` items (groups and multi-line ones included) and from paths in
  the code, starting with `crate::`, `super::`, `self::` (`lwsws::` in main.rs and src/bin), or
  with a module brought in by such a `use` (`use crate::model;` ... `model::Vhost`).
- A path goes to the file that defines the item: it walks down the modules that exist, then
  follows the `use`/`pub use` of the module it stopped in (`crate::model::Vhost` is defined in
  src/model/vhost.rs, not src/model/mod.rs). `mod x;` and `pub use` are not edges by
  themselves; `pub use` lines are checked against the forbidden arrows, though.
- Not seen: glob re-exports (`pub use x::*`), macros that build paths, test modules in files
  of their own (`#[cfg(test)] mod tests;`), and paths relative to a child module written
  without `self::` (`request::plan(..)` in a mod.rs: a parent using its children is not counted).

Usage: check-imports.py [--graph | --modules] [--src DIR] | --self-test. Exit 1 on a problem.
"""

import argparse
import bisect
import contextlib
import io
import re
import sys
import tempfile
from collections import deque
from pathlib import Path

ANY = "*"  # any top-level module of the library (not main.rs or src/bin)
REQUEST_PATH = {"http", "listen", "table", "tls", "upstream", "protocols"}
# (importers, imported, reason): a file under one of `importers` may not use one of `imported`.
# Both sides are top-level modules (the first segment after `crate::`).
FORBIDDEN = [
    (ANY, {"app"}, "only main.rs and src/bin wire the server together"),
    (REQUEST_PATH, {"lwsws", "k8s"}, "the request path never sees the config language or Kubernetes"),
    (REQUEST_PATH, {"app", "reload", "check"}, "the request path never reaches back into the wiring"),
    ({"model"}, ANY, "the model is plain data: it imports nothing of serving"),
    ({"lwsws", "k8s"}, {"app", "listen", "http"}, "the front ends only produce a model::Config"),
    ({"http"}, {"listen"}, "http serves a connection it is given; listen calls http"),
    ({"table"}, {"http", "listen"}, "the route table is compiled state; the serving side reads it"),
    ({"tls"}, {"acme"}, "tls builds rustls configs; acme hands it certificates"),
]
ROOT_TOPS = {"main", "bin"}

NOISE = re.compile(
    r"""(?P<line>//[^\n]*)
      | (?P<block>/\*)
      | (?P<raw>(?<!\w)b?r(?P<h>\#*)".*?"(?P=h))
      | (?P<str>"(?:\\.|[^"\\])*")
      | (?P<char>'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|.)|[^\\'\n])')""",
    re.S | re.X,
)
TEST_MOD = re.compile(
    r"\#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]\s*(?:\#\s*\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{"
)
USE = re.compile(r"(?<![\w:])(?P<pub>pub\s*(?:\([^)]*\))?\s*)?use\s+(?P<tree>[\w:{$][^;]*);")
USE_TOKEN = re.compile(r"::|[{},*]|\$?\w+")


def blank(text):
    return re.sub(r"[^\n]", " ", text)


def strip_noise(text):
    """Blank comments, strings and char literals, keeping every offset and line."""
    out, i = [], 0
    while m := NOISE.search(text, i):
        end = m.end()
        if m.lastgroup == "block":  # block comments nest in Rust
            depth, end = 1, m.end()
            while depth and end < len(text):
                if text.startswith("/*", end):
                    depth, end = depth + 1, end + 2
                elif text.startswith("*/", end):
                    depth, end = depth - 1, end + 2
                else:
                    end += 1
        out += [text[i : m.start()], blank(text[m.start() : end])]
        i = end
    out.append(text[i:])
    return "".join(out)


def strip_tests(code):
    """Blank every `#[cfg(test)] mod name { ... }` block: test modules may import freely."""
    while m := TEST_MOD.search(code):
        depth, end = 1, m.end()
        while depth and end < len(code):
            depth += {"{": 1, "}": -1}.get(code[end], 0)
            end += 1
        code = code[: m.start()] + blank(code[m.start() : end]) + code[end:]
    return code


def expand_use(tree, base):
    """`crate::a::{b::{C, D as E}, self}` -> [(segments, bound name, offset)]; name '*' = glob."""
    toks = [(m.group(), base + m.start()) for m in USE_TOKEN.finditer(tree)]
    out = []
    if not toks or toks[0][0] == "::":
        return out  # `use ::ext::x`: another crate

    def tree_at(i, prefix):
        segs = list(prefix)
        while i < len(toks):
            tok, off = toks[i]
            if tok == "{":
                i += 1
                while i < len(toks) and toks[i][0] != "}":
                    i = tree_at(i, segs)
                    i += i < len(toks) and toks[i][0] == ","
                return i + 1
            if tok == "*":
                out.append((segs, "*", off))
                return i + 1
            if not (tok == "self" and segs):  # `a::{self}` names `a` itself
                segs = segs + [tok]
            name, i = segs[-1], i + 1
            if i < len(toks) and toks[i][0] == "::":
                i += 1
                continue
            if i + 1 < len(toks) and toks[i][0] == "as":
                name, i = toks[i + 1][0], i + 2
            out.append((segs, name, off))
            return i
        return i

    tree_at(0, [])
    return out


class Graph:
    def __init__(self, src):
        self.src = Path(src)
        self.files = {}  # display name -> module path (tuple), or None for main.rs / src/bin
        self.modules = {}  # module path -> display name (library only)
        for path in sorted(self.src.rglob("*.rs")):
            rel = path.relative_to(self.src)
            name = f"{self.src.name}/{rel.as_posix()}"
            parts = list(rel.with_suffix("").parts)
            if parts[0] == "bin" or parts == ["main"]:
                self.files[name] = None
                continue
            if parts[-1] in ("mod", "lib"):
                parts.pop()
            self.files[name] = tuple(parts)
            self.modules[tuple(parts)] = name
        self.imports = {f: {} for f in self.files}  # name in scope -> absolute path
        self.edges = {}  # (from, to) -> {shown path: line}
        self.refs = []  # (file, shown path, line, absolute path, resolved file)
        self.code, self.uses = {}, {}
        for f in self.files:
            self.code[f] = strip_tests(strip_noise((self.src.parent / f).read_text()))
            self.uses[f] = []
            for m in USE.finditer(self.code[f]):
                for segs, name, off in expand_use(m.group("tree"), m.start("tree")):
                    absolute = self.absolute(f, segs, {})
                    if absolute is None:
                        continue
                    if name not in ("*", "_"):
                        self.imports[f][name] = absolute
                    self.uses[f].append((absolute, name, bool(m.group("pub")), off))
        for f in self.files:
            self.scan(f)

    def top(self, f):
        mod = self.files[f]
        return ("bin" if "/bin/" in f else "main") if mod is None else (mod[0] if mod else "crate")

    def absolute(self, f, segs, aliases):
        """The path from the library root, or None for other crates (and main.rs's own)."""
        mod, first = self.files[f], segs[0]
        if first in aliases:
            return aliases[first] + tuple(segs[1:])
        if mod is None:
            return tuple(segs[1:]) if first == "lwsws" else None
        if first in ("crate", "$crate"):
            return tuple(segs[1:])
        if first in ("self", "super"):
            while segs and segs[0] == "super":
                mod, segs = mod[:-1], segs[1:]
            return mod + tuple(segs[1:] if segs and segs[0] == "self" else segs)
        if mod + (first,) in self.modules:  # a child module, as `pub use child::Name` writes it
            return mod + tuple(segs)
        return None

    def resolve(self, path, depth=0):
        """-> (file defining the item, module path if `path` names a module itself else None)."""
        mod = ()
        for i, seg in enumerate(path):
            if mod + (seg,) in self.modules:
                mod += (seg,)
                continue
            target = self.imports[self.modules[mod]].get(seg)
            if target is not None and depth < 20:
                return self.resolve(target + path[i + 1 :], depth + 1)
            return self.modules[mod], None
        return self.modules[mod], mod

    def scan(self, f):
        """Records every path of `f` in self.refs, and the edges among them in self.edges."""
        lines = [m.start() for m in re.finditer("\n", self.code[f])]
        prefix = "crate::" if self.files[f] is not None else "lwsws::"
        refs, aliases = [], {}  # refs: (absolute path, offset, file it lands in, is an edge)
        for absolute, name, pub, off in self.uses[f]:
            target, module = self.resolve(absolute)
            if module is not None and name != "*" and not pub:
                aliases[name] = module  # `use crate::model;`: `model::..` in the code are the edges
            refs.append((absolute, off, target, not pub and (module is None or name == "*")))
        roots = ["\\$?crate", "super", "self"] if self.files[f] is not None else ["lwsws"]
        inline = re.compile(rf"(?<![\w:.])({'|'.join(roots + [re.escape(a) for a in aliases])})((?:\s*::\s*\w+)+)")
        for m in inline.finditer(USE.sub(lambda u: blank(u.group()), self.code[f])):
            absolute = self.absolute(f, [m.group(1)] + re.findall(r"\w+", m.group(2)), aliases)
            if absolute is not None:
                refs.append((absolute, m.start(), self.resolve(absolute)[0], True))
        for absolute, off, target, edge in refs:
            shown, line = prefix + "::".join(absolute), bisect.bisect(lines, off) + 1
            self.refs.append((f, shown, line, absolute, target))
            if edge and target != f:
                self.edges.setdefault((f, target), {}).setdefault(shown, line)

    def circles(self):
        """Tarjan's strongly connected components (iterative); those of two files or more."""
        succ = {f: sorted(d for s, d in self.edges if s == f) for f in self.files}
        index, low, on_stack, stack, sccs = {}, {}, set(), [], []
        for start in self.files:
            if start in index:
                continue
            work = [(start, 0)]
            while work:
                v, i = work.pop()
                if i == 0:
                    index[v] = low[v] = len(index)
                    stack.append(v)
                    on_stack.add(v)
                if i < len(succ[v]):
                    work.append((v, i + 1))
                    w = succ[v][i]
                    if w not in index:
                        work.append((w, 0))
                    elif w in on_stack:
                        low[v] = min(low[v], index[w])
                    continue
                if low[v] == index[v]:
                    scc = set()
                    while not scc or w != v:
                        w = stack.pop()
                        on_stack.discard(w)
                        scc.add(w)
                    if len(scc) > 1:
                        sccs.append(sorted(scc))
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
        return [(scc, self.cycle_in(scc, succ)) for scc in sorted(sccs)]

    def cycle_in(self, scc, succ):
        """A shortest cycle through the first file of the component (breadth first)."""
        start, parent, queue = scc[0], {}, deque([scc[0]])
        while queue:
            v = queue.popleft()
            for w in succ[v]:
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1] + [start]
                if w in scc and w not in parent:
                    parent[w] = v
                    queue.append(w)
        raise AssertionError("a component without a cycle")

    def forbidden(self):
        """[(file, shown path, line, reasons)]: the module a path names and the one it lands in count."""
        found = {}
        for f, shown, line, absolute, target in self.refs:
            mine = self.top(f)
            theirs = {self.top(target), absolute[0] if absolute else "crate"} - {mine}
            for importers, imported, reason in FORBIDDEN:
                if within(mine, importers) and any(within(t, imported) for t in theirs):
                    found.setdefault((f, shown), [line, []])[1].append(reason)
        return sorted((f, shown, line, "; ".join(why)) for (f, shown), (line, why) in found.items())


def module_circles(g):
    """Circles among the library's top-level modules (`http` -> `protocols` -> `http`): each
    layer must only use the ones below it, even through different files."""
    arrows = {}
    for s_, d in g.edges:
        a, b = g.top(s_), g.top(d)
        if a != b and a not in ROOT_TOPS and b not in ROOT_TOPS and "crate" not in (a, b):
            arrows.setdefault(a, set()).add(b)
    found, state = [], {}

    def visit(m, path):
        state[m] = "open"
        for n in sorted(arrows.get(m, ())):
            if state.get(n) == "open":
                found.append(path[path.index(n) :] + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = "done"

    for m in sorted(arrows):
        if m not in state:
            visit(m, [m])
    return found


def within(top, spec):
    """Whether top-level module `top` is one of `spec` (a set, or ANY)."""
    return top not in ROOT_TOPS if spec == ANY else top in spec


def report(g, args):
    if args.graph:
        for f in sorted(g.files):
            print(f"{f} -> {', '.join(sorted(d for s, d in g.edges if s == f)) or '(none)'}")
    if args.modules:
        arrows = {(g.top(s), g.top(d)) for s, d in g.edges if g.top(s) != g.top(d)}
        for t in sorted({g.top(f) for f in g.files}):
            print(f"{t} -> {', '.join(sorted(d for s, d in arrows if s == t)) or '(none)'}")
    circles, forbidden, layers = g.circles(), g.forbidden(), module_circles(g)
    print(
        f"{len(g.files)} files, {len(g.edges)} edges, {len(circles)} circles, "
        f"{len(forbidden)} forbidden arrows, {len(layers)} module circles"
    )
    for scc, cycle in circles:
        print(f"circle: {' -> '.join(cycle)}")
        for a, b in zip(cycle, cycle[1:]):
            why = ", ".join(f"{p} line {n}" for p, n in sorted(g.edges[(a, b)].items(), key=lambda x: x[1]))
            print(f"    {a} -> {b} ({why})")
        if len(scc) > len(cycle) - 1:
            print(f"    (the same knot holds {len(scc)} files: {', '.join(scc)})")
    for f, shown, line, reason in forbidden:
        print(f"forbidden: {f} imports {shown} at line {line} ({reason})")
    for cycle in layers:
        print(f"module circle: {' -> '.join(cycle)} (see --modules)")
    return 1 if circles or forbidden or layers else 0


SELF_TEST_TREE = {
    "lib.rs": "pub mod a;\npub mod b;\npub mod http;\npub mod lwsws;\n",
    "main.rs": "use lwsws::http::serve;\nfn main() { serve() }\n",
    "lwsws.rs": "pub fn parse() {}\n",
    "a/mod.rs": "mod inner;\npub use inner::Thing; // crate::lwsws::parse in a comment\n",
    "a/inner.rs": "use crate::b::{helper::{Y, Z as Zed}, top};\npub struct Thing;\n",
    "b/mod.rs": "pub mod helper;\npub fn top() {}\n",
    "b/helper.rs": (
        "use super::{\n    top,\n};\npub struct Y;\npub struct Z;\n"
        'const S: &str = "crate::http::serve()"; const C: char = \'"\'; const R: &str = r#"crate::lwsws"#;\n'
        "/* crate::http /* nested */ crate::lwsws */\n"
        "pub fn make() -> crate::a::Thing { top(); crate::a::Thing }\n"
    ),
    "http/mod.rs": (
        "pub fn serve() {\n    crate::lwsws::parse();\n}\n"
        "#[cfg(test)]\nmod tests {\n    use crate::b::top;\n    fn t() { crate::a::Thing; super::serve(); }\n}\n"
    ),
}


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in SELF_TEST_TREE.items():
            (Path(tmp) / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / "src" / name).write_text(text)
        g = Graph(Path(tmp) / "src")
        edges = {(s[4:], d[4:]): sorted(why) for (s, d), why in g.edges.items()}
        want = {
            ("a/inner.rs", "b/helper.rs"): ["crate::b::helper::Y", "crate::b::helper::Z"],
            ("a/inner.rs", "b/mod.rs"): ["crate::b::top"],
            ("b/helper.rs", "b/mod.rs"): ["crate::b::top"],
            ("b/helper.rs", "a/inner.rs"): ["crate::a::Thing"],
            ("http/mod.rs", "lwsws.rs"): ["crate::lwsws::parse"],
            ("main.rs", "http/mod.rs"): ["lwsws::http::serve"],
        }
        assert edges == want, f"edges: {edges}"
        knot = ["src/a/inner.rs", "src/b/helper.rs"]
        assert g.circles() == [(knot, knot + knot[:1])], g.circles()
        forbidden = [(f, p, n) for f, p, n, _ in g.forbidden()]
        assert forbidden == [("src/http/mod.rs", "crate::lwsws::parse", 2)], forbidden
        assert g.edges[("src/b/helper.rs", "src/b/mod.rs")] == {"crate::b::top": 2}, "multi-line use: line"
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert report(g, argparse.Namespace(graph=True, modules=True)) == 1, "exit code"
        for line in (
            "src/b/helper.rs -> src/a/inner.rs, src/b/mod.rs",
            "8 files, 6 edges, 1 circles, 1 forbidden arrows",
            "circle: src/a/inner.rs -> src/b/helper.rs -> src/a/inner.rs",
            "forbidden: src/http/mod.rs imports crate::lwsws::parse at line 2 (",
        ):
            assert line in out.getvalue(), f"{line!r} not in:\n{out.getvalue()}"
    print("check-imports self-test: ok (1 circle through a re-export, 1 forbidden arrow, tests and literals ignored)")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", action="store_true", help="print every file and the files it imports")
    parser.add_argument("--modules", action="store_true", help="the same for the top-level modules")
    parser.add_argument("--self-test", action="store_true", help="check this script on a small made-up tree")
    parser.add_argument("--src", default=Path(__file__).resolve().parent.parent / "src", type=Path, help="default: ../src")
    args = parser.parse_args()
    return self_test() if args.self_test else report(Graph(args.src), args)


if __name__ == "__main__":
    sys.exit(main())
