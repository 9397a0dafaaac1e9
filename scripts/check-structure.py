#!/usr/bin/env python3
"""Checks the shape of the crate's code; CI runs it with the lints.

- Layers: every top-level module of `crates/orion/src` belongs to one layer of
  LAYERS and imports only modules of its own layer or below (the domain imports
  no transport). Every `crate::<module>` path counts, in `use` lines, inline
  and in comments (a doc naming `crate::x` links to it). A new module must be
  given a layer here.
- No cycles, between top-level modules nor between files: no module imports
  one that (directly or through others) imports it. At file level every
  `crate::`, `super::` and `self::` path counts, and a parent's `use child::`;
  a parent's `pub use child::...` is the parent's face, not an import.
- Long functions: a function over 80 lines needs a `// long:` comment on one of
  the lines just above it saying why splitting it would hurt.

Prints the figures (modules and files in cycles, longest function, functions
over 80 lines) and exits 1 on an import from a layer above, a module in no
layer, a cycle, or an unexplained long function.
`--report` prints the figures and never fails.
"""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "crates" / "orion" / "src"
LIMIT = 80
# String and character literals: blanked before a line's comment is cut (a
# `"http://"` is no comment).
LITERAL = re.compile(r"'(\\.|[^'\\])'|\"(\\.|[^\"\\])*\"")
FN = re.compile(r"^\s*(pub(\([a-z]+\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+([a-z_][a-z0-9_]*)")
# `crate::a::b`, `super::x`, `self::y`, and a `::{` group after them.
MODULE_PATH = re.compile(r"\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)*)(::\{)?")
# A parent's own use of a child module (`use child::...`, not `pub use`).
CHILD_USE = re.compile(r"^\s*use\s+([a-z_][a-z0-9_]*)::", re.M)
TEST_MOD = re.compile(r"^\s*#\[cfg\(test\)\]")
TESTS_BLOCK = re.compile(r"^\s*(pub(\(crate\))?\s+)?mod tests\b")
# The house, lowest floor first (docs/design.md draws it).
LAYERS = [
    ("foundation", ["logging", "backoff", "topics", "metrics", "tasks"]),
    ("domain", ["tracking", "config", "attention", "command", "homeassistant", "status", "health"]),
    ("engines", ["stream", "framebus", "worker", "live", "control"]),
    ("transports", ["mqtt", "outbox", "http", "ui"]),
    ("assembly", ["camera"]),
    ("top", ["orchestrator", "ctl"]),
]
FLOOR = {module: floor for floor, (_, modules) in enumerate(LAYERS) for module in modules}


def top_module(path: Path) -> str | None:
    rel = path.relative_to(SRC)
    if rel.parts[0] == "bin" or rel.name == "lib.rs":
        return None
    return rel.parts[0].removesuffix(".rs")


def without_tests(text: str, comments: bool = False) -> list[str]:
    """The lines of a file up to its `#[cfg(test)] mod tests` (kept at the end
    by convention); comments blanked unless `comments`. A `#[cfg(test)]` item
    that is not the test module is kept."""
    source = text.splitlines()
    lines = []
    for i, line in enumerate(source):
        if TEST_MOD.match(line) and any(TESTS_BLOCK.match(l) for l in source[i + 1 : i + 3]):
            break
        lines.append(line if comments else re.sub(r"//.*", "", LITERAL.sub('""', line)))
    return lines


def imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.rs")):
        module = top_module(path)
        if module is None:
            continue
        uses = graph.setdefault(module, set())
        # Docs count: a `crate::x` named in a comment is a link to it.
        code = "\n".join(without_tests(path.read_text(), comments=True))
        targets = [p[1] for p in paths_in(code) if p[0] == "crate" and len(p) > 1]
        uses.update(t for t in targets if t != module and t not in ("self", "super"))
    for uses in graph.values():
        uses &= graph.keys()
    return graph


def file_module(path: Path) -> tuple[str, ...] | None:
    """The module path of a file (`outbox/store.rs`: outbox::store)."""
    rel = path.relative_to(SRC)
    if rel.parts[0] == "bin" or rel.name == "lib.rs":
        return None
    parts = [*rel.parts[:-1], rel.name.removesuffix(".rs")]
    return tuple(parts[:-1] if parts[-1] == "mod" else parts)


def group_items(code: str, at: int) -> list[list[str]]:
    """The paths of a `{...}` use group whose `{` is just before `at`, nested
    groups expanded (`{a::{b, c}, d}`: a::b, a::c, d)."""
    items: list[list[str]] = []
    item, depth_end = "", None

    def flush(text: str) -> None:
        text = text.split(" as ")[0].strip()
        if text:
            items.append([s for s in text.split("::") if s])

    i = at
    while i < len(code):
        c = code[i]
        if c == "{":
            prefix = [s for s in item.strip().split("::") if s]
            items.extend(prefix + sub for sub in group_items(code, i + 1))
            i, depth, item = i + 1, 1, ""
            while i < len(code) and depth:  # skip the nested group
                depth += {"{": 1, "}": -1}.get(code[i], 0)
                i += 1
            continue
        if c == "}":
            flush(item)
            return items
        if c == ",":
            flush(item)
            item = ""
        else:
            item += c
        i += 1
    return items


def paths_in(code: str) -> list[list[str]]:
    """Every `crate::`/`super::`/`self::` path, groups expanded at any depth."""
    found = []
    for match in MODULE_PATH.finditer(code):
        base = match.group(1).split("::")
        if match.group(2) is None:
            if len(base) > 1:  # not `self.x` or a word `super`
                found.append(base)
            continue
        found.extend(base + item for item in group_items(code, match.end()))
    return found


def file_imports() -> dict[str, set[str]]:
    """Which file's module uses which other file's module."""
    files = {m: p for p in sorted(SRC.rglob("*.rs")) if (m := file_module(p))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        uses = graph.setdefault("::".join(module), set())
        code = "\n".join(without_tests(path.read_text()))
        targets = []
        for segments in paths_in(code):
            base: list[str] = [] if segments[0] == "crate" else list(module)
            rest = segments[1:] if segments[0] == "crate" else segments
            while rest and rest[0] in ("self", "super"):
                base = base[:-1] if rest[0] == "super" else base
                rest = rest[1:]
            targets.append(tuple(base + rest))
        if path.name == "mod.rs":
            targets += [module + (m.group(1),) for m in CHILD_USE.finditer(code)]
        for target in targets:
            # The longest prefix that is a module of its own file.
            known = next((target[:n] for n in range(len(target), 0, -1) if target[:n] in files), None)
            if known and known != module:
                uses.add("::".join(known))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for next_node in sorted(graph[node]):
            if next_node not in index:
                visit(next_node)
                low[node] = min(low[node], low[next_node])
            elif next_node in on_stack:
                low[node] = min(low[node], index[next_node])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def functions() -> list[tuple[int, str, str]]:
    """(lines, "path:line name", "explained" when a `// long:` comment says why
    it may be long, else "") for every non-test function."""
    found = []
    for path in sorted(SRC.rglob("*.rs")):
        lines = without_tests(path.read_text())
        for start, line in enumerate(lines):
            match = FN.match(line)
            if not match:
                continue
            depth, opened, end = 0, False, None
            for number in range(start, len(lines)):
                text = re.sub(r"'(\\.|[^'\\])'|\"(\\.|[^\"\\])*\"", "", lines[number])
                if not opened and ";" in text and "{" not in text:
                    break  # a declaration without a body
                depth += text.count("{") - text.count("}")
                opened = opened or "{" in text
                if opened and depth <= 0:
                    end = number
                    break
            if end is None:
                continue
            above = path.read_text().splitlines()[max(0, start - 6) : start]
            explained = any("// long:" in text for text in above)
            name = f"{path.relative_to(SRC.parent.parent.parent)}:{start + 1} {match.group(6)}"
            found.append((end - start + 1, name, "explained" if explained else ""))
    return sorted(found, reverse=True)


def main() -> int:
    report_only = "--report" in sys.argv
    graph = imports()
    failures = []
    files = file_imports()
    in_cycles = [(c, graph) for c in cycles(graph)] + [(c, files) for c in cycles(files)]
    count = sum(len(component) for component in cycles(graph))
    file_count = sum(len(component) for component in cycles(files))
    print(f"modules: {len(graph)}, in import cycles: {count}; files: {len(files)}, in import cycles: {file_count}")
    for module in sorted(graph):
        if module not in FLOOR:
            print(f"  {module}: in no layer (add it to LAYERS)")
            failures.append("a module in no layer")
            continue
        for used in sorted(graph[module]):
            if FLOOR.get(used, 0) > FLOOR[module]:
                print(f"  {module} ({LAYERS[FLOOR[module]][0]}) imports {used} ({LAYERS[FLOOR[used]][0]}), a layer above")
                failures.append("an import from a layer above")
    for component, uses in in_cycles:
        edges = [f"{a} -> {b}" for a in component for b in sorted(uses[a]) if b in component]
        print(f"  cycle: {', '.join(component)}\n    {'; '.join(edges)}")
        failures.append("an import cycle")
    fns = functions()
    long = [f for f in fns if f[0] > LIMIT]
    if fns:
        print(f"functions: {len(fns)}, longest: {fns[0][0]} lines ({fns[0][1]}), over {LIMIT}: {len(long)}")
    for lines, name, why in long:
        print(f"  {lines:4} {name}{f'  ({why})' if why else ''}")
        if not why:
            failures.append(f"{name} is over {LIMIT} lines without a '// long:' comment")
    if failures and not report_only:
        print("structure: FAILED: " + "; ".join(sorted(set(failures))), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
