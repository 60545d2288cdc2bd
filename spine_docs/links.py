"""Links: what the files one inject writes change in the relations between files (their
lineage, and the supersede marks of their versions), kept as the run writes.

The lineage of a new file is written *with* its document: the writer of
:mod:`spine_docs.ingest` hands every batch to :meth:`Links.lineages` before it writes it.
In process, so are its ``superseded_by`` mark and the marks the batch changes on files
written before it (:meth:`Links.marks`, written in the same save as the batch): the marks
are not all left for the end of the run, where nothing else would run meanwhile.
Once everything is written, :meth:`Links.finish` writes only what the rest of the run
changed:

* the run's files whose parents could not be resolved when they were written (a parent
  indexed later in the run) or were resolved by file name (a second candidate may have come:
  then the name resolves nothing, as :mod:`spine_docs.lineage` documents);
* the files that were waiting for one of the run's files (``lineage.pending``);
* the ``superseded_by`` marks of every group a file of the run is in
  (:mod:`spine_docs.supersede`): on a server all of them; in process, those of the groups
  changed since the last :meth:`Links.marks` (none, when the writer asked after each batch),
  or all of them again when other processes wrote meanwhile.

So the catalog ends as :func:`spine_docs.lineage.link` and :func:`spine_docs.supersede.mark`
would leave it if they ran over the run's files afterwards (``tests/test_links.py`` checks
that), without reading each file back and writing it again.

In process (the embedded catalog, mongomock), one pass over the catalog, made when the first
batch comes, serves both the parents' lookups and the supersede groups; the run's files are
added to it as they are written. When other processes wrote files meanwhile (the count
differs from what this run expects), :meth:`Links.finish` reads the catalog again. On a
server, each batch's parents are looked up by two index-served reads (see
:class:`spine_docs.lineage.Resolver`), and the groups by :func:`spine_docs.supersede.mark`.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from pymongo import UpdateOne

from . import lineage, store, supersede

#: the catalog's fields the in-process pass reads
_PASS = {"_id": 1, "path": 1, "name": 1, "site": 1, "inputs": 1, "dataset": 1,
         "prod_version": 1, "config": 1, "spine_version_key": 1, "superseded_by": 1,
         "lineage.pending": 1}


def _uncertain(entry: Mapping[str, Any]) -> bool:
    """A lineage that later files can change: a parent unresolved or resolved by name."""
    return any(p.get("path") is None or p.get("how") == "name" for p in entry["parents"])


class Links:
    """The links of one run's files (see the module docstring)."""

    def __init__(self, db: Any):
        self.db = db
        self.server = store.is_server(db)
        self.resolver: lineage.Resolver | None = None     # in process: the catalog's snapshot
        self.groups: dict[tuple, dict[str, dict]] = {}     # in process: supersede groups
        self.group_of: dict[str, tuple] = {}              # in process: _id -> its group
        self.expected = 0                                 # in process: files in the catalog
        self.kept: dict[str, tuple[dict, dict]] = {}      # _id -> (facts, lineage written)
        self.names: set[str] = set()                      # the run's files' names
        self.ids: set[str] = set()
        self.inserted: set[str] = set()                   # the run's files new to the catalog
        self.paths: list[str] = []
        self.touched: set[tuple] = set()                  # in process: groups to plan again
        self.unwritten: set[str] = set()                  # in process: new ones since marks()
        self.waiting: dict[str, set[str]] = {}            # in process: pending name -> _ids

    # ----------------------------------------------------------------- while writing
    def lineages(self, docs: list[Mapping[str, Any]], *, new: Iterable[bool] | None = None,
                 written: Iterable[bool] | None = None) -> list[dict[str, Any] | None]:
        """The ``lineage`` to write with each of ``docs`` (their fields
        :data:`spine_docs.worker.FACTS`), in order.
        ``new``: per document, whether it is a file the catalog did not hold (an insert);
        ``written``: whether its lineage is written with it (False for an error document
        that only updates a file the catalog holds: its stored lineage stays)."""
        new = list(new) if new is not None else [True] * len(docs)
        written = list(written) if written is not None else [True] * len(docs)
        if self.server:
            resolver = lineage.Resolver(self.db, [(d, d.get("inputs") or []) for d, w in zip(docs, written) if w])
        else:
            if self.resolver is None:
                self._snapshot()
            for d, is_new in zip(docs, new):
                self._learn(d, is_new)
            resolver = self.resolver
        out: list[dict[str, Any] | None] = []
        for d, w, is_new in zip(docs, written, new):
            self.ids.add(d["_id"])
            if is_new:
                self.inserted.add(d["_id"])
            self.paths.append(d["path"])
            self.names.add(d.get("name") or lineage.name_of(d["path"]))
            if not w:
                out.append(None)
                continue
            entry = lineage.lineage_of(d, resolver)
            if _uncertain(entry):
                self.kept[d["_id"]] = (dict(d), entry)
            else:
                self.kept.pop(d["_id"], None)
            out.append(entry)
        return out

    def _snapshot(self) -> None:
        self.resolver = lineage.Resolver.empty()
        self.groups, self.group_of, self.waiting = {}, {}, {}
        n = 0
        for d in self.db.files.find({}, _PASS):
            n += 1
            self.resolver.learn(d)
            self._group(d)
            for name in (d.get("lineage") or {}).get("pending") or ():
                self.waiting.setdefault(name, set()).add(d["_id"])
        self.expected = n

    def _group(self, d: Mapping[str, Any]) -> tuple | None:
        """Put ``d`` in its supersede group (out of the one it was in: that one is planned
        again); returns its group, None when it is in none."""
        old = self.group_of.pop(d["_id"], None)
        prior = None
        if old is not None:
            prior = self.groups[old].pop(d["_id"], None)
            self.touched.add(old)
        g = supersede.group_of(d)
        if g is None:
            return None
        member = {k: d.get(k) for k in supersede.PROJECTION}
        if prior is not None and "superseded_by" not in d:  # the new document keeps the mark
            member["superseded_by"] = prior.get("superseded_by")
        self.groups.setdefault(g, {})[d["_id"]] = member
        self.group_of[d["_id"]] = g
        return g

    def _learn(self, d: Mapping[str, Any], is_new: bool) -> None:
        fresh = is_new and d["path"] not in self.resolver.paths  # no document has its path yet
        self.resolver.learn(d)
        g = self._group(d)
        if g is not None:
            self.touched.add(g)
            if fresh:
                self.unwritten.add(d["_id"])
        self.expected += bool(is_new)

    def marks(self) -> tuple[dict[str, str], list[UpdateOne]]:
        """In process, after :meth:`lineages`: the ``superseded_by`` marks of the groups the
        documents given since the last call changed (:func:`spine_docs.supersede.plan`), as
        ``({_id: mark}, updates)``: the marks of the documents new to the catalog among them,
        to write *with* them (added last, as a later ``$set`` would add them), and the
        updates of the documents already written whose mark changes. Write both, in that
        order, before the next call (the updates go through
        :func:`spine_docs.supersede.write_marks`, for the history). On a server: nothing,
        :meth:`finish` marks the whole run."""
        if self.server:
            return {}, []
        inline: dict[str, str] = {}
        ops: list[UpdateOne] = []
        for g in sorted(self.touched):  # in a set's order, the updates would differ run to run
            members = self.groups.get(g)
            if not members:
                continue
            for fid, by in supersede.plan(list(members.values())).items():
                m = members[fid]
                if fid in self.unwritten:
                    if by:
                        inline[fid] = by
                elif by != m.get("superseded_by"):
                    ops.append(supersede.mark_op(fid, by))
                m["superseded_by"] = by
        self.touched = set()
        self.unwritten = set()
        return inline, ops

    # ----------------------------------------------------------------- afterwards
    def finish(self, site: str | None = None, *, keep_versions: int = 0, run_id: str | None = None,
               now: Any = None) -> tuple[int, int]:
        """Write what the whole run changed (see the module docstring); returns the numbers
        of lineage links and supersede marks changed (the documents a mark changes are kept
        in the history: at most ``keep_versions`` per file, by run ``run_id`` at ``now``).
        Call it inside ``store.writing``."""
        if not self.ids:
            return 0, 0
        if not self.server and self.db.files.estimated_document_count() != self.expected:
            kept, touched = self.kept, {self.group_of.get(i) for i in self.ids}
            self._snapshot()  # other processes wrote meanwhile: their files count too
            self.kept = kept
            self.touched |= {g for g in touched | {self.group_of.get(i) for i in self.ids} if g is not None}
        resolver = self.resolver if not self.server else lineage.Resolver(
            self.db, [(f, f.get("inputs") or []) for f, _ in self.kept.values()])
        ops = lineage.lineage_ops(self.kept.values(), resolver)
        if self.server:
            ops += lineage.waiting_ops(self.db, self.names, skip=self.ids)
        else:  # the snapshot knows who waits: only they are read
            ids = sorted({i for n in self.names for i in self.waiting.get(n, ())} - self.ids)
            docs = (self.db.files.find_one({"_id": i}, lineage.FIELDS) for i in ids)
            ops += lineage.relink_ops([d for d in docs if d], resolver)
        linked = self.db.files.bulk_write(ops, ordered=False).modified_count if ops else 0
        if self.server:
            return linked, supersede.mark(self.db, self.paths, site, keep_versions=keep_versions,
                                          run_id=run_id, now=now, fresh=self.inserted)
        self.unwritten = set()  # every document is written by now: a mark is an update
        _inline, marks = self.marks()
        marked = supersede.write_marks(self.db, marks, keep=keep_versions, run_id=run_id, now=now,
                                       fresh=self.inserted)
        return linked, marked
