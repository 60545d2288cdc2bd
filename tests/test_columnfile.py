"""The persisted column cache (spine_docs.store.columnfile, engine.columns.dump/restore): a
catalog opened again restores its columns instead of decoding every document, and a file
that does not belong to the state loaded - another generation's, a truncated or corrupt one,
one left next to a collection an older spine-docs changed - is never used. Expected values
are computed here from the documents written, in plain Python, or come from the engine with
the cache switched off."""

from __future__ import annotations

import random
from array import array

import bson
import pytest
from sentinels import NOTHING

from spine_docs import dumpfmt, store
from spine_docs.store import columnfile
from spine_docs.store.engine import columns

from test_columns import columns_off, make_doc, make_spec, outcome, reads_a_non_column


def _docs(n: int, seed: int = 0) -> list[dict]:
    rnd = random.Random(seed)
    return [make_doc(i, rnd, rare=True) for i in range(n)]


def _catalog(path, docs: list[dict]) -> None:
    db = store.connect(path)
    with store.writing(db):
        db.files.insert_many(docs)
    store.close(db)


def _reopen(path):
    """A fresh open of the catalog as a new explorer process opens it."""
    db = store.connect(path, create=False)
    store.close(db)  # forget it: the next connect() loads the files again
    db = store.connect(path, create=False)
    store.keep_columns(db)
    return db


@pytest.fixture
def builds(monkeypatch):
    """Counts the documents the column cache decodes while building (0: it was restored)."""
    seen = []
    real = columns._top_level

    def counting(raw):
        seen.append(1)
        return real(raw)

    monkeypatch.setattr(columns, "_top_level", counting)
    return seen


def _sidecar(path):
    return columnfile.path_for(path / "spine_docs", "files")


def _s_values(docs: list[dict]) -> list:
    """Plain Python: the ``s`` of every document, in order (missing: "-")."""
    return [repr(d.get("s", "-")) for d in docs]


def _read_s(db) -> list:
    return [repr(d.get("s", "-")) for d in db.files.find({}, {"s": 1}).sort("_id", 1)]


def test_a_reopened_catalog_restores_its_columns(tmp_path, builds):
    docs = _docs(60)
    _catalog(tmp_path, docs)
    db = _reopen(tmp_path)
    assert _read_s(db) == _s_values(docs)
    assert len(builds) == 60 and _sidecar(tmp_path).is_file()  # built once, then kept
    builds.clear()
    db = _reopen(tmp_path)
    assert _read_s(db) == _s_values(docs)
    assert builds == []  # restored, not decoded


@pytest.mark.parametrize("seed", range(12))
def test_restored_columns_are_the_built_ones(tmp_path, seed):
    """Every value, its type (1, 1.0, Int64(1), True; 0.0 and -0.0; NaN), every layout and
    what is no column: restore() gives back what the build made."""
    rnd = random.Random(seed)
    docs = [make_doc(i, rnd, rare=True) for i in range(rnd.randint(1, 80))]
    _catalog(tmp_path, docs)
    db = _reopen(tmp_path)
    st = db.files._store
    built = columns.columns_of(st, True)
    payload = columns.dump(built)
    back = columns.restore(built.version, built.documents, built.keys, built.raws, payload)
    assert back is not None
    assert back.layouts == built.layouts and back.shapes == built.shapes
    assert back.not_columns == built.not_columns and back.shared == built.shared
    assert set(back.values) == set(built.values)
    for name, col in built.values.items():
        assert [repr(v) for v in back.values[name]] == [repr(v) for v in col], name
        assert [type(v) for v in back.values[name]] == [type(v) for v in col], name
    # ``a`` is an embedded document or missing in every document: a raw column, restored
    # as the documents' own bytes (plain Python: what bson.encode makes of each ``a``)
    assert set(back.raw) == set(built.raw) == ({"a"} if any("a" in d for d in docs) else set())
    for name in back.raw:
        assert back.raw[name] == [bson.encode(d[name]) if name in d else NOTHING for d in docs]


def test_a_payload_with_a_bad_raw_column_is_refused(tmp_path):
    """A raw column whose values are not BSON documents, whose codes point nowhere or that
    names a column is no usable dump: restore() declines (the caller builds)."""
    docs = _docs(30)
    _catalog(tmp_path, docs)
    db = _reopen(tmp_path)
    built = columns.columns_of(db.files._store, True)
    good = bson.decode(columns.dump(built))
    assert list(good["raw"]) == ["a"]
    args = (built.version, built.documents, built.keys, built.raws)
    assert columns.restore(*args, bson.encode(good)) is not None
    for damage in ("not a document", "codes", "a column", "short"):
        doc = bson.decode(columns.dump(built))
        entry = doc["raw"]["a"]
        if damage == "not a document":
            entry["distinct"][0] = entry["distinct"][0][:-1] + b"x"
        elif damage == "codes":
            entry["codes"] = array("I", [len(entry["distinct"])] * len(docs)).tobytes()
        elif damage == "a column":
            doc["raw"] = {"s": entry}
        else:
            entry["codes"] = entry["codes"][:-4]
        assert columns.restore(*args, bson.encode(doc)) is None, damage


@pytest.mark.parametrize("seed", range(12))
def test_reads_on_restored_columns_are_the_plain_scans(tmp_path, seed):
    rnd = random.Random(100 + seed)
    docs = [make_doc(i, rnd, rare=True) for i in range(rnd.randint(5, 60))]
    _catalog(tmp_path, docs)
    _reopen(tmp_path).files.count_documents({"s": "x"})  # builds and writes the file
    db = _reopen(tmp_path)
    for _ in range(15):
        spec = make_spec(rnd)
        with columns_off():
            want = outcome(lambda: list(db.files.find(spec).sort("_id", 1)))
        got = outcome(lambda: list(db.files.find(spec).sort("_id", 1)))
        cached = db.files._store.columns
        # (as test_columns' check: where the plain scan raises on a document the column
        # conditions exclude, the cached read may go on)
        assert got == want or (want[0] == "raises" and reads_a_non_column(spec, cached)), spec
    assert db.files._store.columns is not None


def _damage(path, how: str) -> None:
    f = _sidecar(path)
    data = f.read_bytes()
    if how == "truncated":
        f.write_bytes(data[: len(data) - 7])
    elif how == "flipped":
        f.write_bytes(data[:-20] + bytes([data[-20] ^ 0x40]) + data[-19:])
    elif how == "header":
        f.write_bytes(b"garbage" + data[7:])
    else:
        f.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "flipped", "header", "empty"])
def test_a_damaged_file_is_ignored_and_rebuilt(tmp_path, builds, how):
    docs = _docs(40, seed=3)
    _catalog(tmp_path, docs)
    _reopen(tmp_path).files.count_documents({"s": "x"})
    _damage(tmp_path, how)
    builds.clear()
    db = _reopen(tmp_path)
    assert _read_s(db) == _s_values(docs)
    assert len(builds) == 40  # rebuilt ...
    builds.clear()
    assert _read_s(_reopen(tmp_path)) == _s_values(docs)
    assert builds == []  # ... and the file rewritten


def test_a_file_of_another_generation_is_ignored(tmp_path, builds):
    docs = _docs(30, seed=4)
    _catalog(tmp_path, docs)
    _reopen(tmp_path).files.count_documents({"s": "x"})
    old = _sidecar(tmp_path).read_bytes()
    db = _reopen(tmp_path)
    with store.writing(db):
        db.files.update_one({"_id": 5}, {"$set": {"s": "changed"}})
        db.files.delete_one({"_id": 6})
    store.close(db)
    _sidecar(tmp_path).write_bytes(old)  # the previous generation's columns, back in place
    want = [repr("changed") if d["_id"] == 5 else repr(d.get("s", "-")) for d in docs if d["_id"] != 6]
    builds.clear()
    assert _read_s(_reopen(tmp_path)) == want
    assert len(builds) == 29


def test_a_collection_changed_by_a_version_without_column_files(tmp_path, builds, monkeypatch):
    """An older spine-docs saves the collection and leaves the file as it was: it names the
    content before, so it is ignored."""
    docs = _docs(30, seed=5)
    _catalog(tmp_path, docs)
    _reopen(tmp_path).files.count_documents({"s": "x"})
    before = _sidecar(tmp_path).read_bytes()
    with monkeypatch.context() as old_version:  # saves that know nothing of the file
        old_version.setattr(columnfile, "carry_over", lambda old, new, st: False)
        old_version.setattr(columnfile.ColumnsFile, "write", lambda self, payload, nc=None, crc=None: False)
        db = _reopen(tmp_path)
        with store.writing(db):
            db.files.update_many({}, {"$set": {"s": "same"}})
        store.close(db)
    assert _sidecar(tmp_path).read_bytes() == before
    builds.clear()
    assert _read_s(_reopen(tmp_path)) == [repr("same")] * 30
    assert len(builds) == 30


def test_a_write_in_place_to_no_column_carries_the_file_over(tmp_path, builds):
    """A re-scan's "seen again" ($set of a path inside an embedded document, in place)
    changes no column: the save keeps the columns without decoding anything."""
    docs = [{"_id": i, "s": f"v{i % 3}", "n": i, "ingest": {"last_seen": i}} for i in range(50)]
    _catalog(tmp_path, docs)
    _reopen(tmp_path).files.count_documents({"s": "x"})
    db = _reopen(tmp_path)
    builds.clear()
    with store.writing(db):
        db.files.update_many({"_id": {"$in": list(range(50))}}, {"$set": {"ingest.last_seen": 99}})
    assert builds == []
    assert _sidecar(tmp_path).is_file()
    db = _reopen(tmp_path)
    assert [d["ingest"]["last_seen"] for d in db.files.find({"n": {"$gte": 10}})] == [99] * 40
    assert sorted((r["_id"], r["c"]) for r in db.files.aggregate(
        [{"$group": {"_id": "$s", "c": {"$sum": 1}}}])) == [("v0", 17), ("v1", 17), ("v2", 16)]
    assert builds == []


def test_a_write_in_place_to_a_raw_column_carries_the_rest_over(tmp_path, builds):
    """``ingest`` (a small embedded document in every document) is a raw column: a change
    in place carries the file over without it, never with its old values."""
    docs = [{"_id": i, "s": f"v{i % 3}", "ingest": {"last_seen": i}} for i in range(40)]
    _catalog(tmp_path, docs)
    _reopen(tmp_path).files.count_documents({"s": "x"})
    db = _reopen(tmp_path)
    builds.clear()
    assert db.files.count_documents({"s": "v0"}) == 14
    assert "ingest" in db.files._store.columns.raw and builds == []  # restored with it
    with store.writing(db):
        db.files.update_many({"_id": {"$in": list(range(0, 40, 2))}}, {"$set": {"ingest.last_seen": -1}})
    store.close(db)
    assert _sidecar(tmp_path).is_file()
    db = _reopen(tmp_path)
    assert [d["ingest"]["last_seen"] for d in db.files.find({}, {"ingest": 1}).sort("_id", 1)] \
        == [-1 if i % 2 == 0 else i for i in range(40)]
    assert db.files.count_documents({"ingest.last_seen": -1}) == 20
    assert sorted((r["_id"], r["c"]) for r in db.files.aggregate(
        [{"$group": {"_id": "$s", "c": {"$sum": 1}}}])) == [("v0", 14), ("v1", 13), ("v2", 13)]
    assert builds == []
    assert "ingest" not in db.files._store.columns.raw


def test_a_writer_that_built_the_columns_keeps_them_when_there_was_no_file(tmp_path, builds):
    """A re-scan (no column file yet, no keep_columns: a writer) builds the columns to find
    the unchanged files, then writes "seen again" in place: its save keeps the columns it
    built, less the raw column it changed, so that the next re-scan restores them."""
    docs = [{"_id": i, "s": f"v{i % 3}", "n": i, "ingest": {"last_seen": i}} for i in range(30)]
    _catalog(tmp_path, docs)
    assert not _sidecar(tmp_path).exists()
    store.close(store.connect(tmp_path, create=False))
    db = store.connect(tmp_path, create=False)            # an inject: keeps no read's columns
    assert db.files.count_documents({"s": "v1"}) == 10 and builds   # built, not saved
    assert not _sidecar(tmp_path).exists()
    with store.writing(db):
        db.files.update_many({"_id": {"$in": list(range(30))}}, {"$set": {"ingest.last_seen": 7}})
    assert _sidecar(tmp_path).is_file()
    builds.clear()
    db = _reopen(tmp_path)
    assert db.files.count_documents({"s": "v1"}) == 10
    assert sorted(d["n"] for d in db.files.find({"n": {"$lt": 5}}, {"n": 1})) == [0, 1, 2, 3, 4]
    assert [d["ingest"]["last_seen"] for d in db.files.find({}, {"ingest": 1})] == [7] * 30
    assert builds == []  # restored, not decoded
    assert "ingest" not in db.files._store.columns.raw  # its old values were never kept


@pytest.mark.parametrize("write", [
    lambda c: c.update_many({"_id": {"$in": [1, 2]}}, {"$set": {"n": -1}}),  # a column, in place
    lambda c: c.update_one({"_id": 1}, {"$set": {"extra": 1}}),  # a new field
    lambda c: c.update_one({"_id": 1}, {"$unset": {"ingest": 1}}),  # a field less
    # an insert with a write to a column in place, or a replacement (inserts alone: below)
    lambda c: (c.insert_one({"_id": 100, "s": "v0", "n": -1, "ingest": {"last_seen": 0}}),
               c.update_many({"_id": {"$in": [1, 2]}}, {"$set": {"n": -1}})),
    lambda c: (c.insert_one({"_id": 100, "s": "v0", "n": -1, "ingest": {"last_seen": 0}}),
               c.replace_one({"_id": 100}, {"s": "v1"})),
    lambda c: c.delete_one({"_id": 3}),
    lambda c: c.replace_one({"_id": 1}, {"s": "v0", "n": -1}),
])
def test_other_writes_drop_the_file(tmp_path, builds, write):
    docs = [{"_id": i, "s": f"v{i % 3}", "n": i, "ingest": {"last_seen": i}} for i in range(10)]
    _catalog(tmp_path, docs)
    _reopen(tmp_path).files.count_documents({"s": "x"})
    db = _reopen(tmp_path)
    with store.writing(db):
        write(db.files)
    assert not _sidecar(tmp_path).exists()
    with columns_off():
        want = outcome(lambda: list(db.files.find({"n": {"$gte": 0}}).sort("n", -1)))
    builds.clear()
    db = _reopen(tmp_path)
    assert outcome(lambda: list(db.files.find({"n": {"$gte": 0}}).sort("n", -1))) == want
    assert builds  # built again


def _same_columns(got, want) -> None:
    """Two Columns of the same documents hold the same: every value with its type, each
    document's layout, what is no column, the raw columns, the columns kept shared."""
    assert got.n == want.n
    assert [got.layouts[x] for x in got.shapes] == [want.layouts[x] for x in want.shapes]
    assert sorted(set(got.layouts)) == sorted(set(want.layouts)) and len(got.layouts) == len(want.layouts)
    assert got.layouts == want.layouts  # ids in order of first appearance, as a build
    assert got.not_columns == want.not_columns and set(got.values) == set(want.values)
    for name, col in want.values.items():
        assert [(type(v), repr(v)) for v in got.values[name]] == [(type(v), repr(v)) for v in col], name
    assert got.raw == want.raw
    assert got.shared == want.shared


@pytest.mark.parametrize("seed", range(10))
def test_inserts_keep_the_file_current(tmp_path, builds, monkeypatch, seed):
    """A save after inserts (and writes in place to fields that are no columns) decodes only
    the inserted documents and leaves the file a fresh build of all of them would leave:
    new fields, fields that stop being columns or raw columns, new layouts, batches of the
    build that straddle the old and the new documents (batches of 7 here)."""
    monkeypatch.setattr(columns, "_BATCH", 7)
    rnd = random.Random(300 + seed)
    first = [make_doc(i, rnd, rare=seed % 3 == 0) for i in range(rnd.randint(1, 40))]
    more = [make_doc(100 + i, rnd, rare=seed % 3 == 0) for i in range(rnd.randint(1, 30))]
    odd = {"_id": 999, "fresh": {"x": rnd.randint(0, 3)}, "late": rnd.choice(["p", "q"])}
    if seed % 2:
        odd.update(s=[1], a=5)  # s an array, a (raw) a scalar: neither stays what it was
    more.insert(rnd.randrange(len(more) + 1), odd)
    _catalog(tmp_path, first)
    _reopen(tmp_path).files.count_documents({"s": "x"})  # the file of the first documents
    in_place = [d["_id"] for d in first if "a" in d][:2] if seed % 4 == 2 else []
    db = _reopen(tmp_path)
    builds.clear()
    with store.writing(db):
        db.files.insert_many(more[: len(more) // 2])
        if in_place:  # a raw column, in place: its raw column goes
            db.files.update_many({"_id": {"$in": in_place}}, {"$set": {"a.x": 7}})
        db.files.insert_many(more[len(more) // 2:])
    store.close(db)
    assert len(builds) == len(more)  # only the inserted documents were decoded
    assert _sidecar(tmp_path).is_file()
    builds.clear()
    db = _reopen(tmp_path)
    st = db.files._store
    kept = columns.columns_of(st, True)
    assert builds == []  # restored from the file
    fresh = columns.Columns(0, None, kept.keys, kept.raws)
    if in_place:  # the one difference: the raw column changed in place is none any more
        assert "a" not in kept.raw
        fresh.raw.pop("a", None)
    _same_columns(kept, fresh)
    # and, independently, what the documents hold (plain Python)
    alldocs = first + more
    assert [kept.layouts[x] for x in kept.shapes] == [tuple(d) for d in alldocs]
    assert ("fresh" in kept.raw) and ("late" in kept.values)
    assert ("s" in kept.values) == (seed % 2 == 0)
    assert ("a" in kept.raw) == (seed % 2 == 0 and not in_place)
    for _ in range(8):
        spec = make_spec(rnd)
        with columns_off():
            want = outcome(lambda: list(db.files.find(spec).sort("_id", 1)))
        got = outcome(lambda: list(db.files.find(spec).sort("_id", 1)))
        assert got == want or (want[0] == "raises" and reads_a_non_column(spec, kept)), spec


def test_inserts_whose_merge_declines_drop_the_file(tmp_path, monkeypatch):
    """Inserts the merge cannot take (here: it declines) never leave the old payload under
    the new state's header: the file goes."""
    docs = [{"_id": i, "s": f"v{i % 3}", "ingest": {"last_seen": i}} for i in range(10)]
    _catalog(tmp_path, docs)
    _reopen(tmp_path).files.count_documents({"s": "x"})
    monkeypatch.setattr(columnfile.engine, "columns_extended", lambda *a: None)
    db = _reopen(tmp_path)
    with store.writing(db):
        db.files.insert_one({"_id": 10, "s": "v1"})
    assert not _sidecar(tmp_path).exists()


def test_inserts_keep_the_strings_kept_once_as_a_build_would(tmp_path, builds, monkeypatch):
    """Whether a column's strings are kept once is decided on the first batch of documents
    holding it: with batches of 4, ``late`` first appears in the inserted documents, at a
    batch start (documents 8-11, all "p": kept once), and ``mid`` in a batch that straddles the old and the
    new documents (2 old + 2 new "m": kept once once the new ones join; not before)."""
    monkeypatch.setattr(columns, "_BATCH", 4)
    first = [{"_id": i, "s": "v"} for i in range(4)] + [{"_id": 4, "s": "v", "mid": "m"},
                                                       {"_id": 5, "s": "v", "mid": "m"}]
    more = [{"_id": 6 + i, "s": "v", "mid": "m", **({"late": "p"} if i >= 2 else {})}
            for i in range(10)]
    _catalog(tmp_path, first)
    _reopen(tmp_path).files.count_documents({"s": "x"})
    db = _reopen(tmp_path)
    db.files.count_documents({"s": "x"})
    assert "mid" not in db.files._store.columns.shared  # 1 distinct value in 2 documents
    with store.writing(db):
        db.files.insert_many(more)
    store.close(db)
    builds.clear()
    db = _reopen(tmp_path)
    kept = columns.columns_of(db.files._store, True)
    assert builds == []
    assert kept.shared == {"s", "mid", "late"}
    _same_columns(kept, columns.Columns(0, None, kept.keys, kept.raws))


def test_a_plain_mongodump_directory_gets_no_file(tmp_path):
    out = tmp_path / "dump"
    dumpfmt.write_collection(out / "spine_docs", "files", [{"_id": i, "s": "x"} for i in range(3)])
    db = store.connect(out, create=False)
    assert db.files.count_documents({"s": "x"}) == 3
    assert not _sidecar(out).exists()


def test_other_readers_write_no_file(tmp_path, builds):
    _catalog(tmp_path, _docs(20, seed=6))
    store.close(store.connect(tmp_path, create=False))
    db = store.connect(tmp_path, create=False)
    assert db.files.count_documents({"s": "x"}) == sum(d.get("s") == "x" for d in _docs(20, seed=6))
    assert builds and not _sidecar(tmp_path).exists()


def test_backups_and_restores_ignore_the_file(tmp_path):
    docs = [{"_id": i, "s": "x"} for i in range(5)]
    _catalog(tmp_path / "cat", docs)
    _reopen(tmp_path / "cat").files.count_documents({"s": "x"})
    assert _sidecar(tmp_path / "cat").is_file()
    assert dumpfmt.list_collections(tmp_path / "cat" / "spine_docs") == ["files"]
    with store.replacing(tmp_path / "cat") as rep:
        rep.load("files")
    assert not _sidecar(tmp_path / "cat").exists()  # a replaced catalog keeps none
    assert _reopen(tmp_path / "cat").files.count_documents({"s": "x"}) == 5
