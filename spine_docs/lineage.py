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


class _Resolver:
    """Resolves the inputs of many children with two reads in all (not two per input): the
    documents at the inputs' normalised paths (``{path: {$in}}``, the ``{path, site}``
    index) and, for the inputs not found there, the documents with their file names
    (``{name: {$in}}``, the ``{name, _id}`` index), kept by (name, dataset, production)."""

    def __init__(self, db: Any, wanted: Iterable[tuple[Mapping[str, Any], Iterable[str]]]):
        wanted = [(c, [t for t in texts if isinstance(t, str)]) for c, texts in wanted]
        if not store.is_server(db):
            # in process, a long $in compares every document with every value: one pass over
            # the catalog's path, name, dataset and production columns instead
            self.paths, self.by_name = set(), {}
            for d in db.files.find({}, {"path": 1, "name": 1, "dataset": 1, "prod_version": 1, "_id": 0}):
                self.paths.add(d["path"])
                key = (d.get("name"), d.get("dataset"), d.get("prod_version"))
                self.by_name.setdefault(key, set()).add(d["path"])
            return
        norms = sorted({n for _c, texts in wanted for n in map(_norm, texts) if n is not None})
        self.paths: set[str] = set()
        for i in range(0, len(norms), BATCH):
            self.paths.update(d["path"] for d in db.files.find(
                {"path": {"$in": norms[i:i + BATCH]}}, {"path": 1, "_id": 0}))
        names = sorted({_name(t) for c, texts in wanted if c.get("dataset") is not None
                        for t in texts if _norm(t) not in self.paths and _name(t)})
        self.by_name: dict[tuple, set[str]] = {}
        for i in range(0, len(names), BATCH):
            for d in db.files.find({"name": {"$in": names[i:i + BATCH]}},
                                   {"path": 1, "name": 1, "dataset": 1, "prod_version": 1, "_id": 0}):
                key = (d.get("name"), d.get("dataset"), d.get("prod_version"))
                self.by_name.setdefault(key, set()).add(d["path"])

    def parent(self, child: Mapping[str, Any], text: str) -> dict[str, Any]:
        norm = _norm(text)
        if norm is not None and norm != child.get("path") and norm in self.paths:
            return {"text": text, "path": norm, "how": "path"}
        name = _name(text)
        if name and child.get("dataset") is not None:
            found = self.by_name.get((name, child.get("dataset"), child.get("prod_version")), set()) \
                - {child.get("path")}
            if len(found) == 1:
                return {"text": text, "path": next(iter(found)), "how": "name"}
        return {"text": text, "path": None, "how": None}


def _lineage(parents: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``lineage`` sub-document of these parent entries: they, and the file names of the
    unresolved ones (``pending``)."""
    return {"parents": parents, "pending": sorted({_name(p["text"]) for p in parents if p["path"] is None})}


def lineage_of(child: Mapping[str, Any], resolver: _Resolver) -> dict[str, Any]:
    """The ``lineage`` sub-document of a document (from its ``inputs``)."""
    return _lineage([resolver.parent(child, t) for t in (child.get("inputs") or []) if isinstance(t, str)])


def link(db: Any, paths: Iterable[str], site: str | None = None) -> int:
    """Resolve the parents of the documents at ``paths`` (just indexed), then the waiting
    children of those documents. Returns the number of documents updated. A few reads per
    batch of :data:`BATCH` documents, whatever their number of inputs."""
    with store.writing(db):  # one save of the embedded catalog for all of it, not one per batch
        return _link(db, list(dict.fromkeys(paths)), site)


#: names of just-indexed files looked up among the waiting children per query (a server)
WAITING_BATCH = 1000


def _waiting(db: Any, names: set[str], fields: Mapping[str, int]) -> Iterable[list[dict]]:
    """The documents with a pending parent named in ``names``, in lists. On a server, by
    ``{lineage.pending: {$in}}`` (its index: a lookup per name); in process (the embedded
    catalog, mongomock), whose ``$in`` on an array compares every document with every name,
    every document with any pending name (``$gt: ""``: one pass), kept when one is in
    ``names``."""
    ordered = sorted(names)
    if store.is_server(db):
        for i in range(0, len(ordered), WAITING_BATCH):
            yield list(db.files.find({"lineage.pending": {"$in": ordered[i:i + WAITING_BATCH]}}, fields))
        return
    if ordered:
        yield [d for d in db.files.find({"lineage.pending": {"$gt": ""}}, fields)
               if not names.isdisjoint((d.get("lineage") or {}).get("pending") or ())]


def _link(db: Any, paths: list[str], site: str | None) -> int:
    from .extract import doc_id

    server = store.is_server(db)
    fields = {"path": 1, "name": 1, "inputs": 1, "dataset": 1, "prod_version": 1, "lineage": 1}
    updated = 0
    names: set[str] = set()
    linked: set[str] = set()
    ops: list[UpdateOne] = []
    resolver: _Resolver | None = None  # in process: one snapshot of the catalog serves all
    for i in range(0, len(paths), BATCH):
        chunk = paths[i:i + BATCH]
        if site is not None and not server:  # in process: lookups by _id, not a long $in
            docs = [d for d in (db.files.find_one({"_id": doc_id(site, p)}, fields) for p in chunk) if d]
        else:
            query: dict[str, Any] = {"_id": {"$in": [doc_id(site, p) for p in chunk]}} if site is not None \
                else {"path": {"$in": chunk}}
            docs = list(db.files.find(query, fields))
        if server or resolver is None:
            resolver = _Resolver(db, [(d, d.get("inputs") or []) for d in docs])
        batch = []
        for d in docs:
            new = lineage_of(d, resolver)
            if new != d.get("lineage"):
                batch.append(UpdateOne({"_id": d["_id"]}, {"$set": {"lineage": new}}))
        if server:  # batch by batch
            if batch:
                updated += db.files.bulk_write(batch, ordered=False).modified_count
        else:  # in process: at the end (a write makes the next read rebuild the engine's caches)
            ops += batch
        names.update(d.get("name") or _name(d["path"]) for d in docs)
        linked.update(d["_id"] for d in docs)
    # children that named these files before they were indexed
    for waiting in _waiting(db, names, fields):
        if server or resolver is None:
            resolver = _Resolver(db, [(w, [p["text"] for p in ((w.get("lineage") or {}).get("parents") or [])
                                           if p.get("path") is None]) for w in waiting])
        for w in waiting:
            if w["_id"] in linked:  # just linked whole above
                continue
            old = w.get("lineage") or {}
            new = _lineage([p if p.get("path") is not None else resolver.parent(w, p["text"])
                            for p in old.get("parents") or []])
            if new != old:
                ops.append(UpdateOne({"_id": w["_id"]}, {"$set": {"lineage": new}}))
    if ops:
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


#: values per ``$in`` of a walk (a generation, the walk's documents): a command stays far
#: below a server's 16 MB however many files a generation holds
WALK_BATCH = 10_000


def _find_in(db: Any, field: str, values: Sequence[str], projection: Mapping[str, int]) -> Iterable[dict]:
    """The files whose ``field`` is one of ``values``, one ``$in`` per :data:`WALK_BATCH`."""
    values = list(values)
    for i in range(0, len(values), WALK_BATCH):
        yield from db.files.find({field: {"$in": values[i:i + WALK_BATCH]}}, projection)


def _children(db: Any, paths: Sequence[str]) -> list[dict]:
    return list(_find_in(db, "lineage.parents.path", paths, {"path": 1, "lineage.parents": 1}))


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
            for d in _find_in(db, "path", frontier, {"path": 1, "lineage.parents": 1}):
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
        walk.documents = sorted((d["_id"], d["path"]) for d in _find_in(db, "path", found, {"_id": 1, "path": 1}))
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
