"""Migration 0007: documents indexed before version 4 (``inputs``, no ``lineage``) get their
``lineage`` (parents by path, then by file name within dataset and production, else kept as
text and pending), marked ``backfilled``; ``down`` removes only those. On every ``db``
backend (mongomock, embedded, a server when SPINE_DOCS_TEST_URI is set). Every expected link
is written by hand below."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from spine_docs import migrate, schema, store
from spine_docs.migrate import reconcile

OLD = datetime(2024, 1, 2, tzinfo=timezone.utc)
LATER = datetime(2024, 3, 4, tzinfo=timezone.utc)
N_WIDE = 2100   # children of one parent: three batches of the step's 1000
LINEAGE_INDEX = (("lineage.parents.path", 1),)


def doc(path, inputs=None, site="s1", dataset="ds", prod="p1", seen=OLD, **extra):
    d = {"_id": f"{site}:{path}", "site": site, "path": path, "name": path.rsplit("/", 1)[1],
         "dir": path.rsplit("/", 1)[0], "status": "ok", "dataset": dataset, "prod_version": prod,
         "ingest": {"first_seen": seen, "last_seen": seen, "times_seen": 1, "run_id": "r0"}, **extra}
    if inputs is not None:
        d["inputs"] = inputs
        d["inputs_count"] = len(inputs)
    return d


P = "/data/ds/parent.h5"
#: an inject of version >= 4 linked this one already (its lineage is not the step's)
LINKED = {"parents": [{"text": "/raw/y.root", "path": None, "how": None}], "pending": ["y.root"]}


def catalog_docs():
    """(documents, {_id: the lineage 0007 must give it, or None: left as it is})."""
    docs = [
        # the child first (an earlier _id, an earlier batch), its parent indexed later
        doc("/data/ds/a_child.h5", [P]),
        doc(P, ["/raw/x.root"], seen=LATER),
        doc("/data/ds/byname.h5", ["staged/parent.h5"]),                       # P by file name
        doc("/data/ds/otherprod.h5", ["staged/parent.h5"], prod="p2"),          # not in p1: unresolved
        doc("/data/ds/twosites.h5", ["/remote/ds/far.h5", "relative/missing.h5"]),
        doc("/remote/ds/far.h5", site="s2"),                                     # a parent at another site
        doc("/data/ds/noinputs.h5"),                                             # nothing to link
        doc("/data/ds/emptyinputs.h5", []),
        doc("/data/ds/linked.h5", ["/raw/y.root"], lineage=copy.deepcopy(LINKED)),
        doc("/data/ds/self.h5", ["/data/ds/self.h5"]),                          # never its own parent
    ]
    expected = {
        "s1:/data/ds/a_child.h5": [{"text": P, "path": P, "how": "path"}],
        f"s1:{P}": [{"text": "/raw/x.root", "path": None, "how": None}],
        "s1:/data/ds/byname.h5": [{"text": "staged/parent.h5", "path": P, "how": "name"}],
        "s1:/data/ds/otherprod.h5": [{"text": "staged/parent.h5", "path": None, "how": None}],
        "s1:/data/ds/twosites.h5": [{"text": "/remote/ds/far.h5", "path": "/remote/ds/far.h5", "how": "path"},
                                    {"text": "relative/missing.h5", "path": None, "how": None}],
        "s1:/data/ds/self.h5": [{"text": "/data/ds/self.h5", "path": None, "how": None}],
        "s2:/remote/ds/far.h5": None, "s1:/data/ds/noinputs.h5": None, "s1:/data/ds/emptyinputs.h5": None,
        "s1:/data/ds/linked.h5": None,
    }
    pending = {"s1:/data/ds/a_child.h5": [], f"s1:{P}": ["x.root"], "s1:/data/ds/byname.h5": [],
               "s1:/data/ds/otherprod.h5": ["parent.h5"], "s1:/data/ds/twosites.h5": ["missing.h5"],
               "s1:/data/ds/self.h5": ["self.h5"]}
    for i in range(N_WIDE):
        d = doc(f"/data/ds/wide/w{i:05d}.h5", [P, f"/raw/w{i}.root"])
        docs.append(d)
        expected[d["_id"]] = [{"text": P, "path": P, "how": "path"},
                              {"text": f"/raw/w{i}.root", "path": None, "how": None}]
        pending[d["_id"]] = [f"w{i}.root"]
    return docs, expected, pending


def reopen(backend, db, db_url):
    if backend != "embedded":
        return db
    store.close(db)
    return store.connect(db_url)


def at_version_6(db, db_url, tmp_path):
    assert migrate.up(db, to=6, db_url=db_url, backup_root=tmp_path / "b").ok
    docs, expected, pending = catalog_docs()
    with schema.writing(db):
        db.files.insert_many(copy.deepcopy(docs))
    return docs, expected, pending


def by_id(db):
    return {d["_id"]: d for d in db.files.find({})}


def test_0007_backfills_lineage_and_down_removes_only_its_own(backend, db, db_url, tmp_path):
    docs, expected, pending = at_version_6(db, db_url, tmp_path)
    before = by_id(db)
    step = next(s for s in migrate.plan(db, to=7).steps if s.version == 7)
    assert [c["documents"] for c in step.commands if "documents" in c] == [len(pending)]

    res = migrate.up(db, to=7, db_url=db_url, backup_root=tmp_path / "b")
    assert res.ok, res.message
    assert [s.name for s in res.steps] == ["0007_backfill_lineage"]
    db = reopen(backend, db, db_url)
    assert schema.db_version(db) == 7
    after = by_id(db)
    for _id, parents in expected.items():
        d = after[_id]
        if parents is None:        # left exactly as it was
            assert d == before[_id], _id
            continue
        assert d["lineage"] == {"parents": parents, "pending": pending[_id], "backfilled": "0007"}, _id
        assert {k: v for k, v in d.items() if k != "lineage"} == before[_id]
    # the links are what lineage.py's readers use: children are a query on the index
    children = {d["path"] for d in db.files.find({"lineage.parents.path": P}, {"path": 1})}
    assert children == {"/data/ds/a_child.h5", "/data/ds/byname.h5"} | \
        {f"/data/ds/wide/w{i:05d}.h5" for i in range(N_WIDE)}
    archive = {tuple(schema.index_key(i)) for i in schema.list_indexes(db, "files_archive")}
    assert LINEAGE_INDEX in archive
    assert migrate.up(db, to=7, db_url=db_url, backup_root=tmp_path / "b").ok      # nothing left to do

    # an inject links one file again after the upgrade: its lineage is no longer the step's
    relinked = {"parents": [{"text": P, "path": P, "how": "path"}], "pending": []}
    with schema.writing(db):
        db.files.update_one({"_id": "s1:/data/ds/a_child.h5"}, {"$set": {"lineage": relinked}})
    down = migrate.down(db, to=6, db_url=db_url, backup_root=tmp_path / "b")
    assert down.ok, down.message
    db = reopen(backend, db, db_url)
    assert schema.db_version(db) == 6
    back = by_id(db)
    assert back["s1:/data/ds/a_child.h5"]["lineage"] == relinked
    assert {k: v for k, v in back.items() if k != "s1:/data/ds/a_child.h5"} == \
        {k: v for k, v in before.items() if k != "s1:/data/ds/a_child.h5"}
    assert LINEAGE_INDEX not in {tuple(schema.index_key(i)) for i in schema.list_indexes(db, "files_archive")}


def test_0007_at_head_matches_schema_json(backend, db, db_url, tmp_path):
    assert migrate.up(db, db_url=db_url, backup_root=tmp_path / "b").ok
    db = reopen(backend, db, db_url)
    assert reconcile.diff(schema.load_schema(), reconcile.snapshot(db)) == []
    assert migrate.check(db).ok



@pytest.mark.backends("mongomock")
def test_0007_reads_per_batch_on_a_server_not_per_document(db, db_url, tmp_path, monkeypatch):
    """The server branch (``$in`` reads per batch), run on mongomock taken for a server: the
    same links, and a bounded number of reads per batch of 1000 (none per document)."""
    from types import SimpleNamespace

    from spine_docs import resources
    from spine_docs.migrate import scripts

    docs, expected, pending = at_version_6(db, db_url, tmp_path)
    before = by_id(db)
    step = scripts.load_module(next(resources.migrations_dir().glob("0007_*.py")))
    monkeypatch.setattr(step, "store", SimpleNamespace(is_server=lambda _db: True))
    files = type(db.files)
    reads = []
    real_find = files.find
    monkeypatch.setattr(files, "find", lambda self, *a, **k: reads.append(a[:1]) or real_find(self, *a, **k))
    with schema.writing(db):
        assert step.backfill(db) == len(pending)
    batches = -(-len(pending) // step.BATCH_SIZE)
    assert len(reads) <= 3 * batches + 1   # per batch: itself, its paths, its names (one batch has 1001 paths: 2 reads)
    after = by_id(db)
    for _id, parents in expected.items():
        if parents is None:
            assert after[_id] == before[_id], _id
        else:
            assert after[_id]["lineage"] == {"parents": parents, "pending": pending[_id], "backfilled": "0007"}
