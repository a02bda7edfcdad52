#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Prints the module graph of the heap and checks its shape.

Nodes are the driver's modules (the top-level *.rs files) and the
abstractions (rust/kernel/*.rs). An edge is a `crate::<module>` path or a
`use crate::{...}` item. Fails (exit 1) if modules import each other in a
circle, directly or through others, or if an abstraction imports a driver
module. Also lists which modules use the raw C bindings (`crate::bindings`).

Usage: scripts/module-graph.py [--dot]
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATE_ROOT = "rust_dmabuf_heap"
# Not modules of the graph: the out-of-tree bindings and the KUnit suite.
NOT_MODULES = {"bindings", "kunit"}


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def use_items(block):
    """The first path segment of each item of a `{...}` use list."""
    items, depth, current = [], 0, ""
    for ch in block:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    items.append(current)
    names = []
    for item in items:
        item = item.strip()
        if item:
            names.append(re.split(r"::|\s|\{", item)[0])
    return names


def imports(path):
    text = strip_comments(path.read_text())
    found = set(re.findall(r"\bcrate::(\w+)", text))
    for match in re.finditer(r"\buse crate::\{", text):
        depth, i = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        found.update(use_items(text[match.end():i - 1]))
    # `use crate::{self, ...}` names no module.
    found.discard("self")
    return found


def modules():
    driver = {p.stem: p for p in ROOT.glob("*.rs") if p.stem != CRATE_ROOT}
    layer = {p.stem: p for p in (ROOT / "rust" / "kernel").glob("*.rs")}
    return driver, layer


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def main():
    driver, layer = modules()
    known = set(driver) | set(layer)
    graph, raw_users = {}, []
    for name, path in {**driver, **layer}.items():
        found = imports(path)
        if "bindings" in found:
            raw_users.append(name)
        graph[name] = sorted((found & known) - {name})

    if "--dot" in sys.argv:
        print("digraph modules {")
        for name in sorted(layer):
            print(f'  "{name}" [shape=box];')
        for name, deps in sorted(graph.items()):
            for dep in deps:
                print(f'  "{name}" -> "{dep}";')
        print("}")
        return 0

    print("driver modules (top level) -> what they import")
    for name in sorted(driver):
        print(f"  {name:14} -> {', '.join(graph[name]) or '-'}")
    print("abstractions (rust/kernel/) -> what they import")
    for name in sorted(layer):
        print(f"  {name:14} -> {', '.join(graph[name]) or '-'}")
    print(f"raw C bindings used by: {', '.join(sorted(raw_users))}")

    failed = False
    found_cycles = cycles(graph)
    for component in found_cycles:
        print(f"circle: {' <-> '.join(component)}")
        failed = True
    for name in sorted(layer):
        into_driver = [dep for dep in graph[name] if dep in driver]
        if into_driver:
            print(f"abstraction {name} imports driver modules: {', '.join(into_driver)}")
            failed = True
    if failed:
        print("module graph: FAILED")
        return 1
    print(f"module graph: {len(graph)} modules, no circles, the abstractions import nothing of the driver")
    return 0


if __name__ == "__main__":
    sys.exit(main())
