"""spine_docs.store: connect(), the embedded catalog (persistence, atomic saves, locking, refresh)."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import threading
from pathlib import Path

import bson
import pytest

from spine_docs import dumpfmt, store
from spine_docs.store import NoCatalog, StoreError

from unprivileged import read_only


def doc(i: int, **extra) -> dict:
    return {"_id": f"s:{i}", "site": "s", "path": f"/p/{i}", "n": i,
            "attrs": {"a": i, "list": list(range(i % 4))}, **extra}


def reopen(db):
    """The same embedded catalog read afresh from its files."""
    root = store.catalog_path(db)
    store.close(db)
    return store.connect(str(root))


def snapshot(db) -> dict:
    return {name: list(db[name].find()) for name in sorted(db.list_collection_names())}


# --------------------------------------------------------------------------- connect

def test_connect_kinds(tmp_path):
    fresh1, fresh2 = store.connect("mongomock://"), store.connect("mongomock://")
    fresh1.c.insert_one({"_id": 1})
    assert fresh2.c.count_documents({}) == 0
    named = store.connect("mongomock://shared-name")
    named.c.insert_one({"_id": 1})
    again = store.connect("mongomock://shared-name")
    assert again.c.count_documents({}) == 1 and again.name == "spine_docs"
    assert store.connect("mongomock://shared-name/other").name == "other"
    emb = store.connect(tmp_path / "cat")
    assert store.connect(str(tmp_path / "cat")) is emb
    assert (tmp_path / "cat" / "spine_docs").is_dir() and (tmp_path / "cat" / ".lock").exists()
    assert [store.is_server(x) for x in (named, emb)] == [False, False]
    assert [store.is_embedded(x) for x in (named, emb)] == [False, True]
    assert store.describe(emb) == f"embedded catalog at {(tmp_path / 'cat').resolve()}"
    assert store.describe(named) == "mongomock://shared-name/spine_docs"
    assert store.catalog_path(named) is None
    assert store.commit_interval(named) == 0.0 and 2.0 <= store.commit_interval(emb) <= 30.0
    with store.writing(named) as same:  # a no-op on mongomock
        assert same is named


@pytest.mark.parametrize("url,needle", [
    ("", "no catalog"),
    ("mongdb://localhost", "unsupported catalog URL scheme 'mongdb'"),
    ("mongomock://bad name", "bad mongomock URL"),
    ("mongodb://", "bad MongoDB URI"),
    ("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200", "cannot reach MongoDB at mongodb://127.0.0.1:1/"),
    ("mongodb://user:s3cret@127.0.0.1:1/db?serverSelectionTimeoutMS=200&connectTimeoutMS=200", "user:***@"),
])
def test_connect_errors_are_one_line(url, needle):
    with pytest.raises(StoreError) as err:
        store.connect(url, timeout_ms=200)
    message = str(err.value)
    assert needle in message and "\n" not in message and "s3cret" not in message


@pytest.fixture
def read_only_dir(tmp_path):
    """An empty directory nobody can write in (see :func:`unprivileged.read_only`)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only(ro):
        yield ro


def test_connect_refuses_an_unusable_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        store.connect(tmp_path / "file")
    with pytest.raises(StoreError, match="not writable"):
        store.connect(tmp_path / "file" / "catalog")


def test_connect_refuses_a_read_only_directory(read_only_dir):
    with pytest.raises(OSError):
        (read_only_dir / "probe").write_text("x")   # the directory is read-only indeed
    with pytest.raises(StoreError, match="not writable"):
        store.connect(read_only_dir / "catalog")
    assert list(read_only_dir.iterdir()) == []


def tree(root: Path) -> dict:
    """Every path under ``root`` with its bytes (files) and mtime: what a read must not change."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (p.read_bytes() if p.is_file() else None, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("place", ["missing", "empty", "other files", "empty spine_docs"])
def test_connect_without_create_finds_no_catalog_and_writes_nothing(tmp_path, place):
    where = tmp_path / "somewhere"
    if place != "missing":
        where.mkdir()
    if place == "other files":  # like /etc
        (where / "passwd").write_text("root:x:0:0\n")
        (where / "sub").mkdir()
    if place == "empty spine_docs":  # what a read left behind before read-only commands created nothing
        (where / "spine_docs").mkdir()
    before = tree(where) if where.exists() else None
    with pytest.raises(NoCatalog) as err:
        store.connect(where, create=False)
    message = str(err.value)
    assert isinstance(err.value, StoreError) and "\n" not in message
    assert message.startswith(f"no catalog at {where} ")
    assert f"spine-docs setup --db {where}" in message
    assert (tree(where) if where.exists() else None) == before
    assert not (where / ".lock").exists()
    db = store.connect(where)  # a writer creates it
    assert (where / "spine_docs").is_dir() and (where / ".lock").exists()
    with store.writing(db):
        db.files.insert_one({"_id": 1})
    store.close(db)
    assert store.connect(where, create=False).files.count_documents({}) == 1


def test_connect_without_create_opens_a_plain_mongodump_directory(tmp_path):
    out = tmp_path / "dump"
    dumpfmt.write_collection(out / "spine_docs", "files", [doc(i) for i in range(3)])
    before = tree(out)
    db = store.connect(out, create=False)
    assert sorted(d["n"] for d in db.files.find()) == [0, 1, 2]
    store.refresh(db)
    assert tree(out) == before  # not even a .lock


def test_a_read_only_catalog_is_read_and_a_write_is_one_line(tmp_path):
    root = tmp_path / "cat"
    db = store.connect(root)
    with store.writing(db):
        db.files.insert_many([doc(i) for i in range(5)])
        db.runs.insert_one({"_id": "r"})
    expected = snapshot(db)
    store.close(db)
    with read_only(root):
        before = tree(root)
        ro = store.connect(root, create=False)
        assert snapshot(ro) == expected
        assert store.refresh(ro) is False
        with pytest.raises(StoreError) as err:
            with store.writing(ro):
                ro.files.insert_one(doc(99))
        assert str(err.value).startswith(f"the embedded catalog at {root} is read-only here: ")
        assert "\n" not in str(err.value)
        store.close(ro)
        assert store.connect(root).files.count_documents({}) == 5  # a writer's connect opens it too
        assert tree(root) == before


def test_a_read_only_catalog_with_an_unfinished_save_says_so(tmp_path, monkeypatch):
    db, _old = _two_generations(tmp_path)
    monkeypatch.setattr(os, "replace", ReplaceFails(3))  # after the commit point
    with pytest.raises(StoreError, match="the save is committed"):
        with store.writing(db):
            _second_write(db)
    monkeypatch.undo()
    store.close(db)
    root = tmp_path / "cat"
    with read_only(root):
        with pytest.raises(StoreError) as err:
            store.connect(root, create=False)
        assert "has an unfinished save" in str(err.value) and "read-only here" in str(err.value)
        assert "\n" not in str(err.value)
    fresh = store.connect(root, create=False)  # writable again: the reader completes it
    assert fresh.files.count_documents({}) == 5 and not (root / "spine_docs" / ".commit.json").exists()


# --------------------------------------------------------------------------- persistence

def test_round_trip_through_the_files(tmp_path):
    db = store.connect(tmp_path / "cat")
    with store.writing(db):
        db.create_collection("files", validator={"path": {"$type": "string"}})
        db.files.create_index([("site", 1), ("path", 1)], unique=True)
        db.files.create_index("n", partialFilterExpression={"n": {"$gt": 2}}, name="big_n")
        db.files.insert_many([doc(i) for i in range(20)])
        db.runs.insert_one({"_id": "r", "when": bson.datetime.datetime(2024, 1, 1)})
    before = snapshot(db)
    indexes = db.files.index_information()
    again = reopen(db)
    assert again is not db
    assert snapshot(again) == before
    assert again.files.index_information() == indexes
    assert store.collection_options(again, "files") == {"validator": {"path": {"$type": "string"}}}
    with pytest.raises(Exception, match="duplicate key"):  # the unique index came back too
        with store.writing(again):
            again.files.insert_one(dict(doc(3), _id="other"))


def test_files_are_mongodump_layout(tmp_path):
    db = store.connect(tmp_path / "cat")
    with store.writing(db):
        db.files.insert_many([doc(i) for i in range(5)])
        db.files.create_index("path")
    d = tmp_path / "cat" / "spine_docs"
    assert sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) == \
        ["files.bson", "files.metadata.json"]
    with open(d / "files.bson", "rb") as fh:
        assert list(bson.decode_file_iter(fh)) == [doc(i) for i in range(5)]
    meta = json.loads((d / "files.metadata.json").read_text())
    assert meta["collectionName"] == "files" and [i["name"] for i in meta["indexes"]] == ["_id_", "path_1"]
    gen = json.loads((d / ".generation").read_text())
    assert gen["collections"]["files"]["count"] == 5
    assert gen["collections"]["files"]["sha256"] == dumpfmt.write_collection(
        tmp_path / "copy", "files", [doc(i) for i in range(5)])["sha256"]


def test_opens_a_plain_mongodump_directory(tmp_path):
    d = tmp_path / "cat" / "spine_docs"
    dumpfmt.write_collection(d, "files", [doc(i) for i in range(3)],
                             indexes=[{"key": {"path": 1}, "name": "path_1", "unique": True}])
    db = store.connect(tmp_path / "cat")
    assert db.files.count_documents({}) == 3 and "path_1" in db.files.index_information()
    with store.writing(db):
        db.runs.insert_one({"_id": 1})  # the first save adopts the files as they are
    assert (d / "files.bson").read_bytes() == b"".join(bson.encode(doc(i)) for i in range(3))
    assert snapshot(reopen(db))["files"] == [doc(i) for i in range(3)]


def test_writes_outside_writing_are_refused(tmp_path):
    db = store.connect(tmp_path / "cat")
    with store.writing(db):
        db.create_collection("files")
    for write in (lambda: db.files.insert_one({"_id": 1}),
                  lambda: db.files.create_index("x"),
                  lambda: db.create_collection("c"),
                  lambda: db.command("collMod", "files", validator={}),
                  lambda: db.files.drop()):
        with pytest.raises(StoreError, match="outside store.writing"):
            write()
    assert db.list_collection_names() == ["files"] and db.files.options() == {}
    with pytest.raises(StoreError):
        store.save(db)


def test_nested_writing_saves_once_and_errors_keep_earlier_writes(tmp_path):
    db = store.connect(tmp_path / "cat")
    gen = tmp_path / "cat" / "spine_docs" / ".generation"
    with store.writing(db):
        db.files.insert_one(doc(1))
        with store.writing(db):
            db.files.insert_one(doc(2))
        assert not gen.exists()
    assert json.loads(gen.read_text())["generation"] == 1
    with pytest.raises(ZeroDivisionError):
        with store.writing(db):
            db.files.insert_one(doc(3))
            1 / 0
    assert [d["n"] for d in reopen(db).files.find()] == [1, 2, 3]  # like a server: kept


def test_unchanged_collections_are_not_rewritten(tmp_path):
    db = store.connect(tmp_path / "cat")
    with store.writing(db):
        db.files.insert_many([doc(i) for i in range(3)])
        db.runs.insert_one({"_id": "r"})
    d = tmp_path / "cat" / "spine_docs"
    stat = (d / "runs.bson").stat()
    with store.writing(db):
        db.files.update_one({"_id": "s:1"}, {"$set": {"x": 1}})
    assert (d / "runs.bson").stat().st_ino == stat.st_ino
    with store.writing(db):
        db.files.find_one()  # no write: no save at all
    assert json.loads((d / ".generation").read_text())["generation"] == 2
    with store.writing(db):
        db.runs.drop()
    assert not (d / "runs.bson").exists() and "runs" not in reopen(db).list_collection_names()


# --------------------------------------------------------------------------- atomic saves

class ReplaceFails:
    """os.replace that raises on its n-th call (a crash at that point of a save)."""

    def __init__(self, n: int):
        self.n, self.calls, self.real = n, 0, os.replace

    def __call__(self, src, dst):
        self.calls += 1
        if self.calls == self.n:
            raise OSError("simulated crash")
        return self.real(src, dst)


def _two_generations(tmp_path):
    db = store.connect(tmp_path / "cat")
    with store.writing(db):
        db.files.insert_many([doc(i) for i in range(4)])
        db.runs.insert_one({"_id": "r1", "n": 1})
        db.gone.insert_one({"_id": 0})
    old = snapshot(db)
    return db, old


def _second_write(db):
    db.files.update_many({}, {"$inc": {"n": 100}})
    db.files.insert_one(doc(99))
    db.runs.update_one({"_id": "r1"}, {"$set": {"n": 2}})
    db.gone.drop()


@pytest.mark.parametrize("crash_at", [1, 2, 3, 4, 5, 6])
def test_a_crash_during_a_save_leaves_one_complete_state(tmp_path, monkeypatch, crash_at):
    """The save renames: the journal (commit point), then 2 files per changed collection,
    then .generation. Crash before the commit: old state; after: the new one, completed by
    the next process that opens the catalog."""
    db, old = _two_generations(tmp_path)
    with store.writing(db):
        _second_write(db)
    new = snapshot(db)
    store.close(db)

    db, _old = _two_generations(tmp_path / "again")
    failing = ReplaceFails(crash_at)
    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(StoreError, match="simulated crash") as err:
        with store.writing(db):
            _second_write(db)
    monkeypatch.setattr(os, "replace", failing.real)
    root = (tmp_path / "again" / "cat").resolve()
    # one line naming the catalog, true to what happened: the old state, or the committed one
    assert f"embedded catalog at {root}" in str(err.value) and "\n" not in str(err.value)
    assert ("as it was before this write" in str(err.value)) == (crash_at == 1)
    assert ("the save is committed" in str(err.value)) == (crash_at > 1)
    assert err.value.committed == (crash_at > 1)
    d = tmp_path / "again" / "cat" / "spine_docs"
    assert (d / ".commit.json").exists() == (crash_at > 1)
    fresh = reopen(db)
    assert snapshot(fresh) == (old if crash_at == 1 else new)
    assert not (d / ".commit.json").exists()
    assert not [p.name for p in d.iterdir() if p.name.endswith(".part")]
    with store.writing(fresh):  # and the catalog goes on working
        fresh.runs.insert_one({"_id": "after"})
    assert reopen(fresh).runs.count_documents({}) == 2


def test_a_failed_save_in_process_reloads_the_disk_state(tmp_path, monkeypatch):
    db, old = _two_generations(tmp_path)
    monkeypatch.setattr(dumpfmt, "write_collection_temp", _boom)
    with pytest.raises(StoreError, match="disk full; it is as it was before this write"):
        with store.writing(db):
            _second_write(db)
    monkeypatch.undo()
    with store.writing(db):  # memory held unsaved changes: they were dropped for the disk's
        assert snapshot(db) == old
    assert not [p for p in (tmp_path / "cat" / "spine_docs").iterdir() if p.name.endswith(".part")]


def _boom(*args, **kwargs):
    raise OSError("disk full")


def test_a_damaged_file_is_reported(tmp_path):
    db = store.connect(tmp_path / "cat")
    with store.writing(db):
        db.files.insert_many([doc(i) for i in range(3)])
    path = tmp_path / "cat" / "spine_docs" / "files.bson"
    path.write_bytes(path.read_bytes()[:-1] + b"\x01")
    store.close(db)
    with pytest.raises(StoreError, match="does not match its manifest|cannot load"):
        store.connect(tmp_path / "cat")


def test_a_read_only_reader_waits_for_a_writer_instead_of_locking(tmp_path, monkeypatch):
    db, _old = _two_generations(tmp_path)
    monkeypatch.setattr(os, "replace", ReplaceFails(3))  # a writer stopped after its commit point
    with pytest.raises(StoreError, match="the save is committed"):
        with store.writing(db):
            _second_write(db)
    monkeypatch.undo()
    store.close(db)
    root = tmp_path / "cat"
    monkeypatch.setattr(store.embedded, "LOCK_TIMEOUT_S", 0.2)
    with read_only(root):
        fd = os.open(root / ".lock", os.O_RDONLY)  # a writer holds the lock (flock needs no write access)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with pytest.raises(StoreError, match="is locked by another process"):
                store.connect(root, create=False)
        finally:
            os.close(fd)


def test_an_unfinished_save_that_cannot_be_completed_is_one_line(tmp_path, monkeypatch):
    db, _old = _two_generations(tmp_path)
    monkeypatch.setattr(os, "replace", ReplaceFails(3))
    with pytest.raises(StoreError, match="the save is committed"):
        with store.writing(db):
            _second_write(db)
    store.close(db)
    monkeypatch.setattr(os, "replace", ReplaceFails(1))  # and now the disk is full, say
    with pytest.raises(StoreError) as err:
        store.connect(tmp_path / "cat")
    assert str(err.value) == (f"cannot complete the interrupted save of the embedded catalog at "
                              f"{tmp_path / 'cat'}: simulated crash")


# --------------------------------------------------------------------------- replacing a catalog whole

def test_replacing_a_catalog_that_does_not_load(tmp_path):
    db, _old = _two_generations(tmp_path)
    root = tmp_path / "cat"
    d = root / "spine_docs"
    generation = json.loads((d / ".generation").read_text())["generation"]
    store.close(db)
    (d / "files.bson").write_bytes((d / "files.bson").read_bytes()[:50])   # damaged
    dumpfmt.write_collection(d, "stray", [{"_id": 1}])                     # not in the manifest
    with pytest.raises(StoreError, match="cannot load collection 'files'"):
        store.connect(root)
    before = tree(d)
    with pytest.raises(RuntimeError):  # a block that raises writes nothing (but takes the .lock)
        with store.replacing(root) as new:
            new.db.files.insert_one({"_id": "x"})
            raise RuntimeError("changed my mind")
    assert tree(d) == before
    with store.replacing(root) as new:
        assert sorted(new.collections) == ["files", "gone", "runs"]   # the manifest's
        assert new.load("runs") is True and new.load("nope") is False
        with pytest.raises(StoreError, match="files"):
            new.load("files")
        new.db.files.insert_many([doc(i) for i in range(3)])
    names = sorted(p.name for p in d.iterdir())
    assert names == [".generation", "files.bson", "files.metadata.json", "runs.bson", "runs.metadata.json"]
    assert json.loads((d / ".generation").read_text())["generation"] == generation + 1
    fresh = store.connect(root)
    assert snapshot(fresh) == {"files": [doc(i) for i in range(3)], "runs": [{"_id": "r1", "n": 1}]}


def test_replacing_into_a_new_directory_and_an_open_catalog_reloads(tmp_path):
    with store.replacing(tmp_path / "new") as new:
        assert new.collections == []
        new.db.files.insert_one(doc(1))
    assert snapshot(store.connect(tmp_path / "new", create=False)) == {"files": [doc(1)]}
    db = store.connect(tmp_path / "cat")
    with store.writing(db):
        db.files.insert_many([doc(i) for i in range(4)])
    with store.replacing(tmp_path / "cat") as new:
        new.db.runs.insert_one({"_id": "only"})
    with store.writing(db):  # reloads first: its old files are not written back
        db.runs.insert_one({"_id": "after"})
    db = reopen(db)
    assert snapshot(db) == {"runs": [{"_id": "only"}, {"_id": "after"}]}
    with store.writing(db):
        with pytest.raises(StoreError, match="inside store.writing"):
            with store.replacing(tmp_path / "cat"):
                pass


# --------------------------------------------------------------------------- locking and other processes

def test_lock_timeout_names_the_holder(tmp_path):
    db = store.connect(tmp_path / "cat")
    fd = os.open(tmp_path / "cat" / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, b"pid 4242 on somehost since then\n", 0)
        with pytest.raises(StoreError, match="locked by pid 4242 on somehost"):
            with store.writing(db, timeout=0.1):
                pass
    finally:
        os.close(fd)
    with store.writing(db, timeout=0.1):
        db.files.insert_one({"_id": 1})


def _write_in_child(root: str, worker: int, count: int, start=None) -> None:
    db = store.connect(root)
    if start is not None:
        start.wait(60)  # both processes write at the same time
    for i in range(count):
        with store.writing(db):
            db.files.insert_one({"_id": f"w{worker}-{i}", "worker": worker})
            db.counters.update_one({"_id": "c"}, {"$inc": {"n": 1}}, upsert=True)


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    root = str(tmp_path / "cat")
    store.connect(root)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_write_in_child, args=(root, w, 40, start)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    db = store.connect(root)
    store.refresh(db)
    assert db.files.count_documents({}) == 80
    assert db.counters.find_one() == {"_id": "c", "n": 80}
    assert sorted(db.files.distinct("worker")) == [0, 1]


def test_refresh_sees_another_process(tmp_path):
    root = str(tmp_path / "cat")
    db = store.connect(root)
    with store.writing(db):
        db.files.insert_one({"_id": "mine"})
        db.runs.insert_one({"_id": "r"})
    assert store.refresh(db) is False  # nothing changed: a cheap check
    runs_before = db._store["runs"].version
    child = multiprocessing.get_context("spawn").Process(target=_write_in_child, args=(root, 7, 2))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    assert db.files.count_documents({}) == 1
    assert store.refresh(db) is True
    assert db.files.count_documents({}) == 3 and db.counters.find_one()["n"] == 2
    assert db._store["runs"].version == runs_before  # unchanged collections are not reloaded
    assert store.refresh(db) is False


def test_a_reader_completes_an_interrupted_commit(tmp_path, monkeypatch):
    db, _old = _two_generations(tmp_path)
    failing = ReplaceFails(3)
    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(StoreError, match="the save is committed"):
        with store.writing(db):
            _second_write(db)
    monkeypatch.undo()
    expected = {"files": 5, "runs": 1}
    fresh = reopen(db)  # a lock-free reader: finds the journal, takes the lock, rolls forward
    assert {n: fresh[n].count_documents({}) for n in fresh.list_collection_names()} == expected


def test_server_helpers_on_the_shim(tmp_path):
    db = store.connect(tmp_path / "cat")
    with store.writing(db):
        store.create_collection(db, "meta", validator={"v": {"$type": "int"}})
        store.coll_mod(db, "meta", validationLevel="off")
        store.forget_collection(db, "meta")
    assert store.collection_options(reopen(db), "meta") == {"validator": {"v": {"$type": "int"}},
                                                            "validationLevel": "off"}
    assert Path(store.catalog_path(store.connect(tmp_path / "cat"))) == (tmp_path / "cat").resolve()


# --------------------------------------------------------------------------- the shared fixtures

@pytest.mark.backends("mongomock", "embedded")
def test_db_and_db_url_fixtures_share_one_catalog(db, db_url, backend):
    assert backend != "server"
    with store.writing(db):
        db.things.insert_one({"_id": 1})
    assert store.connect(db_url).things.count_documents({}) == 1


@pytest.mark.skip_backends("mongomock", "embedded")
def test_server_backend_only_runs_with_a_server(db):
    assert store.is_server(db) and db.name.startswith("spine_docs_test_")


def test_conftest_server_url():
    from conftest import server_url

    assert server_url("mongodb://h:1", "x") == "mongodb://h:1/x"
    assert server_url("mongodb://u:p@h:1,h2/old?replicaSet=r", "x") == "mongodb://u:p@h:1,h2/x?replicaSet=r"
    assert server_url("mongodb+srv://c.example.net/", "x") == "mongodb+srv://c.example.net/x"
    with pytest.raises(ValueError):
        server_url("http://h", "x")


def test_threads_of_one_process(tmp_path):
    db = store.connect(tmp_path / "cat")
    seen = []

    def other_thread():
        try:
            db.files.insert_one({"_id": "from the other thread"})
        except StoreError as exc:
            seen.append("guard: " + str(exc))
        try:
            with store.writing(db, timeout=0.05):
                pass
        except StoreError as exc:
            seen.append("wait: " + str(exc))
        seen.append(store.refresh(db))

    with store.writing(db):
        db.files.insert_one({"_id": "mine"})
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join(30)
    assert [s.split(":")[0] if isinstance(s, str) else s for s in seen] == ["guard", "wait", False]
    assert "busy in another thread" in seen[1]
    worker = threading.Thread(target=lambda: _write_one(db))
    worker.start()
    worker.join(30)
    assert sorted(d["_id"] for d in reopen(db).files.find()) == ["later", "mine"]


def _write_one(db):
    with store.writing(db):
        db.files.insert_one({"_id": "later"})
