"""Flat span dicts → a nested tree, and a compact text rendering of it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["build_tree", "render_tree"]


def build_tree(spans: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nest span dicts (as from ``Span.to_dict()``) under their parents.

    Returns the roots (usually one), each with a ``children`` list sorted by
    start time. A span whose parent is missing (dropped, or not finished when
    the process died) is kept as a root rather than lost.
    """
    nodes = {s["span_id"]: {**s, "children": []} for s in spans}
    roots = []
    for node in nodes.values():
        parent = nodes.get(node.get("parent_id")) if node.get("parent_id") else None
        if parent is node:  # a corrupt row naming itself: keep it visible as a root
            parent = None
        (parent["children"] if parent is not None else roots).append(node)
    for node in nodes.values():
        node["children"].sort(key=lambda n: (n.get("start_ns") or 0))
    roots.sort(key=lambda n: (n.get("start_ns") or 0))
    return roots


def render_tree(roots: Iterable[dict[str, Any]], *, show_plugin: bool = True) -> str:
    """One line per span, indented: ``name [type] (plugin) status``; handy in tests and logs."""
    lines: list[str] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        plugin = node.get("plugin") or {}
        who = f" ({plugin['name']})" if show_plugin and plugin.get("name") else ""
        status = "" if node.get("status") == "ok" else f" !{node.get('status')}"
        lines.append(f"{'  ' * depth}{node['name']} [{node['span_type']}]{who}{status}")
        for child in node.get("children", ()):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return "\n".join(lines)
