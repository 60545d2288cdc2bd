"""Lineage: which files each file was made from, and everything derived from a file.

A document's parents are its ``inputs`` (what extraction found: the input files of the
``cfg``'s ``io`` block, else the sidecar's SAM ``parents``, else spine-prod's lists of the
job's input files, see :func:`spine_docs.spine.job_inputs`; ``provenance.inputs`` says
which). Each is stored in ``lineage.parents`` as ``{text, path, how}``:

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


def name_of(text: str) -> str:
    """The file name an input names (what the name fallback and ``lineage.pending`` hold)."""
    return os.path.basename(text.rstrip("/")) if isinstance(text, str) else str(text)


class Resolver:
    """Resolves the inputs of many children with two reads in all (not two per input): the
    documents at the inputs' normalised paths (``{path: {$in}}``, the ``{path, site}``
    index) and, for the inputs not found there, the documents with their file names
    (``{name: {$in}}``, the ``{name, _id}`` index), kept by (name, dataset, production).

    In process (the embedded catalog, mongomock), where a long ``$in`` compares every
    document with every value, it is one pass over the catalog's path, name, dataset and
    production columns instead; :meth:`empty` and :meth:`learn` let a caller make that pass
    itself (:mod:`spine_docs.links` shares it with the supersede groups)."""

    def __init__(self, db: Any, wanted: Iterable[tuple[Mapping[str, Any], Iterable[str]]]):
        self.paths: set[str] = set()
        self.by_name: dict[tuple, set[str]] = {}
        wanted = [(c, [t for t in texts if isinstance(t, str)]) for c, texts in wanted]
        if not store.is_server(db):
            for d in db.files.find({}, {"path": 1, "name": 1, "dataset": 1, "prod_version": 1, "_id": 0}):
                self.learn(d)
            return
        norms = sorted({n for _c, texts in wanted for n in map(_norm, texts) if n is not None})
        for i in range(0, len(norms), BATCH):
            self.paths.update(d["path"] for d in db.files.find(
                {"path": {"$in": norms[i:i + BATCH]}}, {"path": 1, "_id": 0}))
        names = sorted({name_of(t) for c, texts in wanted if c.get("dataset") is not None
                        for t in texts if _norm(t) not in self.paths and name_of(t)})
        for i in range(0, len(names), BATCH):
            for d in db.files.find({"name": {"$in": names[i:i + BATCH]}},
                                   {"path": 1, "name": 1, "dataset": 1, "prod_version": 1, "_id": 0}):
                self.learn(d)

    @classmethod
    def empty(cls) -> "Resolver":
        """A resolver that knows no document yet (see :meth:`learn`)."""
        self = cls.__new__(cls)
        self.paths, self.by_name = set(), {}
        return self

    def learn(self, d: Mapping[str, Any]) -> None:
        """Know the document ``d`` (its path, name, dataset and production) as a parent."""
        self.paths.add(d["path"])
        self.by_name.setdefault((d.get("name"), d.get("dataset"), d.get("prod_version")), set()).add(d["path"])

    def parent(self, child: Mapping[str, Any], text: str) -> dict[str, Any]:
        norm = _norm(text)
        if norm is not None and norm != child.get("path") and norm in self.paths:
            return {"text": text, "path": norm, "how": "path"}
        name = name_of(text)
        if name and child.get("dataset") is not None:
            found = self.by_name.get((name, child.get("dataset"), child.get("prod_version")), set()) \
                - {child.get("path")}
            if len(found) == 1:
                return {"text": text, "path": next(iter(found)), "how": "name"}
        return {"text": text, "path": None, "how": None}


def _lineage(parents: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``lineage`` sub-document of these parent entries: they, and the file names of the
    unresolved ones (``pending``)."""
    return {"parents": parents, "pending": sorted({name_of(p["text"]) for p in parents if p["path"] is None})}


def lineage_of(child: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
    """The ``lineage`` sub-document of a document (from its ``inputs``)."""
    return _lineage([resolver.parent(child, t) for t in (child.get("inputs") or []) if isinstance(t, str)])


def lineage_ops(docs: Iterable[tuple[Mapping[str, Any], Any]], resolver: Resolver) -> list[UpdateOne]:
    """The updates that bring the ``lineage`` of each ``(document, the lineage it has)``
    to what ``resolver`` makes of the document's inputs (none where they agree)."""
    return [UpdateOne({"_id": d["_id"]}, {"$set": {"lineage": new}}) for d, old in docs
            if (new := lineage_of(d, resolver)) != old]


#: what the links of a document are made from
FIELDS = {"path": 1, "name": 1, "inputs": 1, "dataset": 1, "prod_version": 1, "lineage": 1}


def link(db: Any, paths: Iterable[str], site: str | None = None) -> int:
    """Resolve the parents of the documents at ``paths`` again, then the waiting children of
    those documents. Returns the number of documents updated. A few reads per batch of
    :data:`BATCH` documents, whatever their number of inputs. (``inject`` does the same as
    it writes: see :mod:`spine_docs.links`.)"""
    from .extract import doc_id

    paths = list(dict.fromkeys(paths))
    with store.writing(db):  # one save of the embedded catalog for all of it, not one per batch
        server = store.is_server(db)
        docs: list[dict] = []
        for i in range(0, len(paths), BATCH):
            chunk = paths[i:i + BATCH]
            if site is not None and not server:  # in process: lookups by _id, not a long $in
                docs += [d for d in (db.files.find_one({"_id": doc_id(site, p)}, FIELDS) for p in chunk) if d]
            else:
                query: dict[str, Any] = {"_id": {"$in": [doc_id(site, p) for p in chunk]}} \
                    if site is not None else {"path": {"$in": chunk}}
                docs += db.files.find(query, FIELDS)
        resolver = Resolver(db, [(d, d.get("inputs") or []) for d in docs])
        ops = lineage_ops(((d, d.get("lineage")) for d in docs), resolver)
        ops += waiting_ops(db, {d.get("name") or name_of(d["path"]) for d in docs},
                           skip={d["_id"] for d in docs}, resolver=None if server else resolver)
        return db.files.bulk_write(ops, ordered=False).modified_count if ops else 0


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


def waiting_ops(db: Any, names: set[str], *, skip: set[str] = frozenset(),
                resolver: Resolver | None = None) -> list[UpdateOne]:
    """The updates that resolve the children waiting for files named ``names`` (but those in
    ``skip``, linked whole by the caller): their unresolved parents are looked up again, with
    ``resolver`` (in process: the caller's snapshot) or, on a server, a resolver per batch."""
    ops: list[UpdateOne] = []
    for waiting in _waiting(db, names, FIELDS):
        waiting = [w for w in waiting if w["_id"] not in skip]
        ops += relink_ops(waiting, resolver or Resolver(db, [(w, _unresolved(w)) for w in waiting]))
    return ops


def _unresolved(d: Mapping[str, Any]) -> list[str]:
    return [p["text"] for p in ((d.get("lineage") or {}).get("parents") or []) if p.get("path") is None]


def relink_ops(docs: Iterable[Mapping[str, Any]], resolver: Resolver) -> list[UpdateOne]:
    """The updates that resolve the unresolved parents of ``docs`` (waiting children) that
    ``resolver`` knows now."""
    ops: list[UpdateOne] = []
    for w in docs:
        old = w.get("lineage") or {}
        new = _lineage([p if p.get("path") is not None else resolver.parent(w, p["text"])
                        for p in old.get("parents") or []])
        if new != old:
            ops.append(UpdateOne({"_id": w["_id"]}, {"$set": {"lineage": new}}))
    return ops


@dataclass
class Walk:
    """What :func:`descendants` / :func:`ancestors` found."""

    root: list[str]
    documents: list[tuple[str, str]] = field(default_factory=list)   # (_id, path), root excluded
    edges: list[tuple[str, str]] = field(default_factory=list)       # (parent path, child path)
    depth_of: dict[str, int] = field(default_factory=dict)
    cycles: list[list[str]] = field(default_factory=list)            # each: paths, first == last
    unresolved: dict[str, list[str]] = field(default_factory=dict)   # child path -> texts
    truncated: bool = False   # stopped at ``limit`` files: there are more

    @property
    def paths(self) -> list[str]:
        return [p for _, p in self.documents]


#: values per ``$in`` of a walk (a generation, the walk's documents): a command stays far
#: below a server's 16 MB however many files a generation holds
WALK_BATCH = 10_000


def _find_in(db: Any, field: str, values: Sequence[str], projection: Mapping[str, int],
             collection: str = "files", limit: int | None = None) -> Iterable[dict]:
    """The documents of ``collection`` whose ``field`` is one of ``values``, one ``$in`` per
    :data:`WALK_BATCH`; with ``limit``, at most that many in all."""
    values = list(values)
    n = 0
    for i in range(0, len(values), WALK_BATCH):
        if limit is not None and n >= limit:
            return
        cursor = db[collection].find({field: {"$in": values[i:i + WALK_BATCH]}}, projection)
        if limit is not None:
            cursor = cursor.limit(limit - n)
        for d in cursor:
            n += 1
            yield d


def _children(db: Any, paths: Sequence[str], collection: str = "files", limit: int | None = None) -> list[dict]:
    return list(_find_in(db, "lineage.parents.path", paths, {"path": 1, "lineage.parents": 1}, collection, limit))


def _walk(db: Any, roots: Sequence[str], up: bool, depth: int | None,
          collections: Sequence[str] = ("files",), limit: int | None = None) -> Walk:
    """Breadth-first from ``roots``; with ``limit``, at most that many files besides the
    roots (``truncated`` says that there may be more) and each read of children bounded
    accordingly (a file with a million children costs a bounded read, not a million
    documents)."""
    roots = [normalise_path(r) for r in roots]
    walk = Walk(root=roots)
    seen = set(roots)
    for r in roots:
        walk.depth_of[r] = 0

    def room() -> bool:
        if limit is not None and len(seen) - len(roots) >= limit:
            walk.truncated = True
            return False
        return True

    frontier, level = list(roots), 0
    while frontier and (depth is None or level < depth) and not walk.truncated:
        level += 1
        nxt: list[str] = []
        front = set(frontier)
        if up:
            for d in (d for c in collections
                      for d in _find_in(db, "path", frontier, {"path": 1, "lineage.parents": 1}, c)):
                for p in ((d.get("lineage") or {}).get("parents") or []):
                    if p.get("path") is None:
                        texts = walk.unresolved.setdefault(d["path"], [])
                        if p["text"] not in texts:  # (a path in files and in files_archive: once)
                            texts.append(p["text"])
                        continue
                    if p["path"] not in seen:
                        if not room():
                            continue
                        seen.add(p["path"])
                        nxt.append(p["path"])
                    walk.edges.append((p["path"], d["path"]))
        else:
            # rows enough for every new child that fits plus one, besides the seen ones (a
            # path indexed at several sites is one row per site: a full read then says "maybe more")
            bound = None if limit is None else limit - (len(seen) - len(roots)) + len(seen) + 1
            for c in collections:
                rows = _children(db, frontier, c, bound)
                if bound is not None and len(rows) >= bound:
                    walk.truncated = True
                for d in rows:
                    if d["path"] not in seen:
                        if not room():
                            continue
                        seen.add(d["path"])
                        nxt.append(d["path"])
                    for p in ((d.get("lineage") or {}).get("parents") or []):
                        if p.get("path") in front:
                            walk.edges.append((p["path"], d["path"]))
        for path in nxt:
            walk.depth_of[path] = level
        frontier = sorted(set(nxt))
    found = [p for p in seen if p not in set(roots)]
    if found:
        walk.documents = sorted({(d["_id"], d["path"]) for c in collections
                                 for d in _find_in(db, "path", found, {"_id": 1, "path": 1}, c)})
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


def descendants(db: Any, paths: Sequence[str], depth: int | None = None,
                collections: Sequence[str] = ("files",), limit: int | None = None) -> Walk:
    """Every file derived from ``paths`` (children, their children, ...), each once.
    ``collections``: where the documents are looked up (``("files", "files_archive")``:
    through archived documents too, e.g. a chain that was pruned whole); ``limit``: at most
    that many files (``Walk.truncated`` when there may be more)."""
    return _walk(db, paths, up=False, depth=depth, collections=collections, limit=limit)


def ancestors(db: Any, paths: Sequence[str], depth: int | None = None,
              collections: Sequence[str] = ("files",), limit: int | None = None) -> Walk:
    """Every catalog file ``paths`` were made from, transitively (unresolved inputs listed);
    ``collections`` and ``limit`` as for :func:`descendants`."""
    return _walk(db, paths, up=True, depth=depth, collections=collections, limit=limit)


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


def dot_quote(text: str) -> str:
    """``text`` as a DOT quoted string (backslashes and double quotes escaped, line breaks
    spelled out)."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_dot(walk: Walk) -> str:
    out = ["digraph lineage {", "  rankdir=LR;"]
    for a, b in walk.edges:
        out.append(f"  {dot_quote(a)} -> {dot_quote(b)};")
    for child, texts in walk.unresolved.items():
        for t in texts:
            out.append(f"  {dot_quote(t)} [style=dashed]; {dot_quote(t)} -> {dot_quote(child)} [style=dashed];")
    out.append("}")
    return "\n".join(out) + "\n"


#: the nodes a lineage graph draws at most, and the generations each way (the explorer's detail panel)
GRAPH_NODES = 40
GRAPH_DEPTH = 2


@dataclass
class Graph:
    """A file's lineage neighbourhood, drawn: :func:`graph`."""

    root: str
    dot: str
    nodes: list[str]                   # file paths drawn, the root first, then by distance
    edges: list[tuple[str, str]]       # (parent path, child path) drawn
    unresolved: list[tuple[str, str]]  # (input text, child path) drawn, dashed
    capped: bool                       # files or inputs were left out (there are more)
    cycles: list[list[str]]


def graph(db: Any, path: str, depth: int | None = None, max_nodes: int | None = None) -> Graph:
    """The lineage graph around the file at ``path``: its ancestors and descendants up to
    ``depth`` generations each way, at most ``max_nodes`` nodes (files and unresolved
    inputs, the nearest first; ``capped`` when some were left out), as DOT (``rankdir=LR``,
    parents on the left; the file itself filled; each node labelled with its file name, its
    path as tooltip; unresolved inputs dashed). Two bounded walks (:func:`ancestors`,
    :func:`descendants`); a cycle is drawn as the edges it has, never followed. Defaults:
    :data:`GRAPH_DEPTH`, :data:`GRAPH_NODES`."""
    depth = GRAPH_DEPTH if depth is None else depth
    max_nodes = GRAPH_NODES if max_nodes is None else max_nodes
    root = normalise_path(path)
    up = ancestors(db, [root], depth=depth, limit=max_nodes)
    down = descendants(db, [root], depth=depth, limit=max_nodes)
    ranked = sorted({p for p in (*up.depth_of, *down.depth_of) if p != root},
                    key=lambda p: (min(up.depth_of.get(p, depth + 1), down.depth_of.get(p, depth + 1)), p))
    inputs = sorted({(t, child) for child, texts in up.unresolved.items() for t in texts},
                    key=lambda tc: (up.depth_of.get(tc[1], 0), tc[1], tc[0]))
    room = max(0, max_nodes - 1)
    nodes = [root] + ranked[:room]
    kept = set(nodes)
    inputs = [(t, c) for t, c in inputs if c in kept][:max(0, room - len(ranked))]
    capped = up.truncated or down.truncated or len(ranked) > room or \
        len(inputs) < sum(len(t) for c, t in up.unresolved.items())
    edges = sorted({e for e in (*up.edges, *down.edges) if e[0] in kept and e[1] in kept})
    out = ["digraph lineage {", "  rankdir=LR;", '  node [shape=box, fontsize=10, style=rounded];']
    for p in nodes:
        style = ', style="rounded,filled", fillcolor="#dbe9f6"' if p == root else ""
        out.append(f"  {dot_quote(p)} [label={dot_quote(name_of(p))}, tooltip={dot_quote(p)}{style}];")
    for a, b in edges:
        out.append(f"  {dot_quote(a)} -> {dot_quote(b)};")
    for t, c in inputs:
        node = dot_quote(f"input:{t}")
        out.append(f'  {node} [label={dot_quote(name_of(t))}, tooltip={dot_quote(t + " (not in the catalog)")}, '
                   f'style="rounded,dashed"];')
        out.append(f"  {node} -> {dot_quote(c)} [style=dashed];")
    out.append("}")
    return Graph(root=root, dot="\n".join(out) + "\n", nodes=nodes, edges=edges, unresolved=inputs,
                 capped=capped, cycles=find_cycles(edges))


#: parents or children a detail view lists at most (the rest: ``spine-docs lineage``)
NEIGHBOURS = 100


def neighbours(db: Any, path: str, limit: int | None = None) -> dict[str, Any]:
    """The direct parents and children of the file at ``path`` (any site), for a detail
    view: ``{"parents": [{"_id", "path"}], "children": [{"_id", "path"}], "unresolved":
    [input text], "more": {"parents": bool, "children": bool}}`` (sorted; retired files
    included: a link still says where a file came from). Two one-level walks
    (:func:`ancestors`, :func:`descendants`), each of at most ``limit`` files (default
    :data:`NEIGHBOURS`: a calibration input of every file of a production has a million
    children); ``more`` says when there may be others."""
    limit = NEIGHBOURS if limit is None else limit
    up = ancestors(db, [path], depth=1, limit=limit)
    down = descendants(db, [path], depth=1, limit=limit)
    return {"parents": [{"_id": i, "path": p} for i, p in up.documents],
            "children": [{"_id": i, "path": p} for i, p in down.documents],
            "unresolved": sorted({t for texts in up.unresolved.values() for t in texts}),
            "more": {"parents": up.truncated, "children": down.truncated}}