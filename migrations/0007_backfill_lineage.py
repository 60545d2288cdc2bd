"""Backfill ``lineage`` on documents indexed before version 4 (schema version 7).

Version 4 made ``inject`` link each file it indexes to its parents (``lineage``, see
``spine_docs/lineage.py``), but did not compute the links of the documents already in the
catalog: their parents and children only appeared after a re-index. This step computes
``lineage`` for every ``files`` document that has ``inputs`` and no ``lineage``, by the rules
lineage.py documents, against the whole catalog as it stands (so a parent indexed after its
child, before or after the upgrade, is found):

* ``how: "path"``: a document has the input's normalised path (an absolute path; any site);
* ``how: "name"``: else, the only documents with the input's file name in the child's dataset
  and production;
* else unresolved: ``{text, path: None, how: None}``, the text kept, its file name listed in
  ``lineage.pending`` (a parent indexed later resolves it, as for any file).

Each backfilled ``lineage`` carries ``backfilled: "0007"``; ``inject`` rewrites ``lineage``
without it whenever it links the file again (a re-index, a parent arriving), after which the
links are no longer this step's. The rules are spelled out here, not imported from
lineage.py's private resolver, so that this step does what it did when it shipped.

Batched: ``_id`` order (keyset over the ``_id`` index), :data:`BATCH_SIZE` documents a batch,
one unordered bulk write each (guarded by "still no ``lineage``": a concurrent ``inject`` is
never overwritten). Reads: on a server, per batch, one ``{path: {$in}}`` (the ``{path, site}``
index) and one ``{name: {$in}}`` (the ``{name, _id}`` index) for all its inputs, never one per
document; in process (the embedded catalog, mongomock: a long ``$in`` compares every document
with every value there) one pass over the catalog's path, name, dataset and production for
the whole step. Idempotent and resumable: the filter selects only what is left.

Also ``files_archive`` gets ``{lineage.parents.path: 1}``: ``restore-files --derived-from``
walks the lineage through archived documents too. (Archived documents are not backfilled: a
restore gives back the document exactly as it was pruned.)

down() removes the ``lineage`` this step set (``lineage.backfilled: "0007"``, the same ``_id``
walk) and the archive index; links ``inject`` made stay.
"""

import os

from pymongo import UpdateOne

from spine_docs import store
from spine_docs.extract import normalise_path
from spine_docs.migrate import ops

description = "backfill lineage on documents indexed before version 4; files_archive {lineage.parents.path}"

BATCH_SIZE = 1000
#: values per ``$in`` read (a server)
IN_BATCH = 1000
MARK = "0007"

#: documents still to do: inputs, and no lineage
FILTER = {"lineage": {"$exists": False}, "inputs.0": {"$exists": True}}
MARKED = {"lineage.backfilled": MARK}
FIELDS = {"path": 1, "inputs": 1, "dataset": 1, "prod_version": 1}

COMMANDS = [
    {"createIndexes": "files_archive", "indexes": [{"key": {"lineage.parents.path": 1}}]},
]


def _norm(text):
    """The normalised path an input names, or None when it is no absolute path (a bare or
    relative name, a URL: only its file name can be matched)."""
    if not isinstance(text, str) or not text or "://" in text or not os.path.isabs(text):
        return None
    return normalise_path(text)


def _name(text):
    return os.path.basename(text.rstrip("/"))


def _texts(doc):
    return [t for t in doc.get("inputs") or [] if isinstance(t, str)]


class _Known:
    """The catalog's paths, and its paths by (file name, dataset, production)."""

    def __init__(self, db):
        self.db = db
        self.server = store.is_server(db)
        self.paths, self.by_name = set(), {}
        if not self.server:
            for d in db.files.find({}, {"path": 1, "name": 1, "dataset": 1, "prod_version": 1, "_id": 0}):
                self._add(d)

    def _add(self, d):
        self.paths.add(d["path"])
        self.by_name.setdefault((d.get("name"), d.get("dataset"), d.get("prod_version")), set()).add(d["path"])

    def load(self, docs):
        """On a server: what resolving ``docs``' inputs needs, in ``$in`` reads."""
        if not self.server:
            return
        self.paths, self.by_name = set(), {}
        norms = sorted({n for d in docs for n in map(_norm, _texts(d)) if n is not None})
        for i in range(0, len(norms), IN_BATCH):
            self.paths.update(d["path"] for d in self.db.files.find(
                {"path": {"$in": norms[i:i + IN_BATCH]}}, {"path": 1, "_id": 0}))
        names = sorted({_name(t) for d in docs if d.get("dataset") is not None for t in _texts(d)
                        if _norm(t) not in self.paths and _name(t)})
        for i in range(0, len(names), IN_BATCH):
            for d in self.db.files.find({"name": {"$in": names[i:i + IN_BATCH]}},
                                        {"path": 1, "name": 1, "dataset": 1, "prod_version": 1, "_id": 0}):
                self._add(d)

    def parent(self, child, text):
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


def lineage_of(child, known):
    """The backfilled ``lineage`` of a document."""
    parents = [known.parent(child, t) for t in _texts(child)]
    return {"parents": parents, "pending": sorted({_name(p["text"]) for p in parents if p["path"] is None}),
            "backfilled": MARK}


def _batches(db, query, projection):
    """The documents ``query`` selects, :data:`BATCH_SIZE` at a time in ``_id`` order."""
    last = None
    while True:
        q = query if last is None else {"$and": [query, {"_id": {"$gt": last}}]}
        batch = list(db.files.find(q, projection).sort("_id", 1).limit(BATCH_SIZE))
        if not batch:
            return
        last = batch[-1]["_id"]
        yield batch
        if len(batch) < BATCH_SIZE:
            return


def backfill(db):
    """Set ``lineage`` on every document :data:`FILTER` selects; returns how many."""
    known = _Known(db)
    done = 0
    for batch in _batches(db, FILTER, FIELDS):
        known.load(batch)
        writes = [UpdateOne({"_id": d["_id"], "lineage": {"$exists": False}},
                            {"$set": {"lineage": lineage_of(d, known)}}) for d in batch]
        done += db.files.bulk_write(writes, ordered=False).modified_count
    return done


def unbackfill(db):
    """Remove the ``lineage`` this step set; returns how many."""
    done = 0
    for batch in _batches(db, MARKED, {"_id": 1}):
        done += db.files.bulk_write([UpdateOne({"_id": d["_id"], **MARKED}, {"$unset": {"lineage": ""}})
                                     for d in batch], ordered=False).modified_count
    return done


def plan(db):
    n = ops.count(db, "files", FILTER)
    data = []
    if n:
        data.append({"bulkWrite": "files", "filter": FILTER,
                     "update": {"$set": {"lineage": "<parents resolved by path, then name; pending>"}},
                     "documents": n, "batchSize": BATCH_SIZE})
    return ops.pending(db, COMMANDS) + data


def up(db):
    backfill(db)
    ops.ensure(db, COMMANDS)


def plan_down(db):
    n = ops.count(db, "files", MARKED)
    data = []
    if n:
        data.append({"bulkWrite": "files", "filter": MARKED, "update": {"$unset": {"lineage": ""}},
                     "documents": n, "batchSize": BATCH_SIZE})
    return ops.pending(db, ops.inverse(COMMANDS)) + data


def down(db):
    unbackfill(db)
    ops.ensure(db, ops.inverse(COMMANDS))
