"""Lineage: which files each file was made from, and everything derived from a file.

A document's parents are its ``inputs`` (what extraction found: the input files of the
``cfg``'s ``io`` block, else the sidecar's SAM ``parents``). Each is stored in
``lineage.parents`` as ``{text, path, how}``:

* ``how: "path"``: a catalog document has that normalised path (any site);
* ``how: "name"``: else, the only documents with that file name in the same dataset and
  production (the documented fallback: inputs are often written relative to a job's
  directory, or staged under another prefix);
* ``how: None``, ``path: None``: unresolved; the text is kept, never dropped, and its file
  name is listed in ``lineage.pending`` (indexed).

``lineage.parents.path`` is indexed: the children of a file are a query. :func:`link` runs
after each inject for the files it indexed: it resolves their parents, then resolves the
children that were waiting for them (by name, in ``lineage.pending``), so links resolve in
either order, from any site. :func:`descendants` and :func:`ancestors` walk the graph
breadth-first, each file once, and report cycles (a file its own ancestor) instead of
following them.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from pymongo import UpdateOne

from . import store
from .extract import normalise_path

BATCH = 500


def _norm(text: str) -> str | None:
    """The normalised path an input names, or None when it is not an absolute path (a bare
    or relative name, a URL: only its file name can be matched)."""
    if not isinstance(text, str) or not text or "://" in text or not os.path.isabs(text):
        return None
    return normalise_path(text)


def _name(text: str) -> str:
    return os.path.basename(text.rstrip("/")) if isinstance(text, str) else str(text)


def resolve(db: Any, child: Mapping[str, Any], text: str) -> dict[str, Any]:
    """One parent entry ``{text, path, how}`` for the input ``text`` of ``child``."""
    norm = _norm(text)
    if norm is not None and norm != child.get("path") and db.files.find_one({"path": norm}, {"_id": 1}):
        return {"text": text, "path": norm, "how": "path"}
    name = _name(text)
    if name and child.get("dataset") is not None:
        found = {d["path"] for d in db.files.find(
            {"name": name, "dataset": child.get("dataset"), "prod_version": child.get("prod_version")},
            {"path": 1}) if d["path"] != child.get("path")}
        if len(found) == 1:
            return {"text": text, "path": found.pop(), "how": "name"}
    return {"text": text, "path": None, "how": None}


def lineage_of(db: Any, child: Mapping[str, Any]) -> dict[str, Any]:
    """The ``lineage`` sub-document of a document (from its ``inputs``)."""
    parents = [resolve(db, child, t) for t in (child.get("inputs") or []) if isinstance(t, str)]
    pending = sorted({_name(p["text"]) for p in parents if p["path"] is None})
    return {"parents": parents, "pending": pending}


def link(db: Any, paths: Iterable[str], site: str | None = None) -> int:
    """Resolve the parents of the documents at ``paths`` (just indexed), then the waiting
    children of those documents. Returns the number of documents updated."""
    paths = list(dict.fromkeys(paths))
    updated = 0
    for i in range(0, len(paths), BATCH):
        chunk = paths[i:i + BATCH]
        query: dict[str, Any] = {"path": {"$in": chunk}}
        if site is not None:
            query["site"] = site
        docs = list(db.files.find(query, {"path": 1, "name": 1, "inputs": 1, "dataset": 1,
                                          "prod_version": 1, "lineage": 1}))
        ops = []
        for d in docs:
            new = lineage_of(db, d)
            if new != d.get("lineage"):
                ops.append(UpdateOne({"_id": d["_id"]}, {"$set": {"lineage": new}}))
        # children that named these files before they were indexed
        names = sorted({d.get("name") or _name(d["path"]) for d in docs})
        for w in db.files.find({"lineage.pending": {"$in": names}},
                               {"path": 1, "name": 1, "inputs": 1, "dataset": 1, "prod_version": 1, "lineage": 1}):
            old = w.get("lineage") or {}
            parents = [p if p.get("path") is not None else resolve(db, w, p["text"])
                       for p in old.get("parents") or []]
            new = {"parents": parents,
                   "pending": sorted({_name(p["text"]) for p in parents if p["path"] is None})}
            if new != old:
                ops.append(UpdateOne({"_id": w["_id"]}, {"$set": {"lineage": new}}))
        if ops:
            with store.writing(db):
                updated += db.files.bulk_write(ops, ordered=False).modified_count
    return updated


@dataclass
class Walk:
    """What :func:`descendants` / :func:`ancestors` found."""

    root: list[str]
    documents: list[tuple[str, str]] = field(default_factory=list)   # (_id, path), root excluded
    edges: list[tuple[str, str]] = field(default_factory=list)       # (parent path, child path)
    depth_of: dict[str, int] = field(default_factory=dict)
    cycles: list[list[str]] = field(default_factory=list)            # each: paths, first == last
    unresolved: dict[str, list[str]] = field(default_factory=dict)   # child path -> texts

    @property
    def paths(self) -> list[str]:
        return [p for _, p in self.documents]


def _children(db: Any, paths: Sequence[str]) -> list[dict]:
    return list(db.files.find({"lineage.parents.path": {"$in": list(paths)}},
                              {"path": 1, "lineage.parents": 1}))


def _walk(db: Any, roots: Sequence[str], up: bool, depth: int | None) -> Walk:
    roots = [normalise_path(r) for r in roots]
    walk = Walk(root=roots)
    seen = set(roots)
    for r in roots:
        walk.depth_of[r] = 0
    frontier, level = list(roots), 0
    while frontier and (depth is None or level < depth):
        level += 1
        nxt: list[str] = []
        if up:
            for d in db.files.find({"path": {"$in": frontier}}, {"path": 1, "lineage.parents": 1}):
                for p in ((d.get("lineage") or {}).get("parents") or []):
                    if p.get("path") is None:
                        walk.unresolved.setdefault(d["path"], []).append(p["text"])
                        continue
                    walk.edges.append((p["path"], d["path"]))
                    if p["path"] not in seen:
                        seen.add(p["path"])
                        nxt.append(p["path"])
        else:
            for d in _children(db, frontier):
                for p in ((d.get("lineage") or {}).get("parents") or []):
                    if p.get("path") in frontier:
                        walk.edges.append((p["path"], d["path"]))
                if d["path"] not in seen:
                    seen.add(d["path"])
                    nxt.append(d["path"])
        for path in nxt:
            walk.depth_of[path] = level
        frontier = sorted(set(nxt))
    found = [p for p in seen if p not in set(roots)]
    if found:
        walk.documents = sorted((d["_id"], d["path"]) for d in
                                db.files.find({"path": {"$in": found}}, {"_id": 1, "path": 1}))
    walk.edges = sorted(set(walk.edges))
    walk.cycles = find_cycles(walk.edges)
    return walk


def find_cycles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Each cycle of a directed graph once, as ``[a, b, ..., a]`` (iterative DFS, back edges)."""
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    colour = {n: 0 for n in graph}            # 0 new, 1 on the stack, 2 done
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[nxt] == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif colour[nxt] == 0:
                colour[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(sorted(graph[nxt]))))
    return cycles


def descendants(db: Any, paths: Sequence[str], depth: int | None = None) -> Walk:
    """Every file derived from ``paths`` (children, their children, ...), each once."""
    return _walk(db, paths, up=False, depth=depth)


def ancestors(db: Any, paths: Sequence[str], depth: int | None = None) -> Walk:
    """Every catalog file ``paths`` were made from, transitively (unresolved inputs listed)."""
    return _walk(db, paths, up=True, depth=depth)


def render_tree(walk: Walk, up: bool) -> list[str]:
    """An indented tree from the roots (a file reached twice is shown once, then ``(seen)``)."""
    kids: dict[str, list[str]] = {}
    for parent, child in walk.edges:
        a, b = (child, parent) if up else (parent, child)
        kids.setdefault(a, []).append(b)
    lines: list[str] = []
    shown: set[str] = set()

    def visit(node: str, indent: int) -> None:
        again = node in shown
        lines.append("  " * indent + node + ("  (seen above)" if again else ""))
        if again:
            return
        shown.add(node)
        for k in sorted(set(kids.get(node, []))):
            visit(k, indent + 1)
        for text in walk.unresolved.get(node, []) if up else []:
            lines.append("  " * (indent + 1) + f"{text}  (not in the catalog)")

    for r in walk.root:
        visit(r, 0)
    return lines


def render_dot(walk: Walk) -> str:
    out = ["digraph lineage {", "  rankdir=LR;"]
    for a, b in walk.edges:
        out.append(f'  "{a}" -> "{b}";')
    for child, texts in walk.unresolved.items():
        for t in texts:
            out.append(f'  "{t}" [style=dashed]; "{t}" -> "{child}" [style=dashed];')
    out.append("}")
    return "\n".join(out) + "\n"


def neighbours(db: Any, path: str) -> dict[str, list]:
    """The direct parents and children of the file at ``path`` (any site), for a detail
    view: ``{"parents": [{"_id", "path"}], "children": [{"_id", "path"}], "unresolved":
    [input text]}`` (sorted; retired files included: a link still says where a file came
    from). Two one-level walks (:func:`ancestors`, :func:`descendants`)."""
    up = ancestors(db, [path], depth=1)
    down = descendants(db, [path], depth=1)
    return {"parents": [{"_id": i, "path": p} for i, p in up.documents],
            "children": [{"_id": i, "path": p} for i, p in down.documents],
            "unresolved": sorted({t for texts in up.unresolved.values() for t in texts})}
