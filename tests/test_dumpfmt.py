"""dumpfmt: mongodump's layout, written and read back; dumps, verification, restore."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os

import bson
import mongomock
import pytest
from bson import Decimal128, ObjectId, json_util
from bson.raw_bson import RawBSONDocument

from spine_docs import dumpfmt, store
from spine_docs.dumpfmt import DumpError

DOCS = [
    {"_id": "a", "n": 1, "f": 1.5, "big": 2 ** 40, "when": dt.datetime(2024, 1, 2, 3, 4, 5, 6000),
     "none": None, "flag": True, "list": [1, "x", {"y": [None]}], "bin": b"\x00\xff",
     "dec": Decimal128("1.10"), "oid": ObjectId("0123456789abcdef01234567"), "nested": {"a.b": {"c": []}}},
    {"_id": 2, "s": "é ✓"},
    {"_id": ObjectId("0123456789abcdef01234568")},
]


def test_a_collection_of_many_blocks_is_written_and_hashed_in_order(tmp_path):
    # the save writes 1 MB blocks and hashes all but the first in a helper thread
    docs = [{"_id": i, "pad": bytes([i % 251]) * (100_000 + i)} for i in range(45)]
    info = dumpfmt.write_collection(tmp_path, "files", iter(docs))
    data = (tmp_path / "files.bson").read_bytes()
    assert len(data) > 4 * (1 << 20)
    assert info == {"count": 45, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert list(dumpfmt.read_collection(tmp_path, "files")) == docs


def test_write_and_read_round_trip(tmp_path):
    info = dumpfmt.write_collection(tmp_path, "files", (d for d in DOCS),
                                    indexes=[{"v": 2, "key": {"site": 1, "path": -1}, "name": "sp", "unique": True}],
                                    options={"validator": {"x": {"$type": "string"}}})
    data = (tmp_path / "files.bson").read_bytes()
    assert info == {"count": 3, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert list(dumpfmt.read_collection(tmp_path, "files")) == DOCS
    with open(tmp_path / "files.bson", "rb") as fh:  # plain concatenated BSON
        assert list(bson.decode_file_iter(fh)) == DOCS
    assert [bson.decode(r) for r in dumpfmt.iter_raw(tmp_path, "files")] == DOCS
    assert dumpfmt.list_collections(tmp_path) == ["files"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["files.bson", "files.metadata.json"]


def test_metadata_is_mongodumps_format(tmp_path):
    dumpfmt.write_collection(tmp_path, "files", DOCS[:1], uuid="00112233445566778899aabbccddeeff",
                             indexes=[{"v": 2, "key": [("site", 1), ("path", -1)], "name": "sp",
                                       "unique": True, "ns": "db.files"},
                                      {"key": {"attrs.$**": 1}, "name": "wild"}],
                             options={"validator": {"x": {"$type": "string"}}, "validationLevel": "strict"})
    text = (tmp_path / "files.metadata.json").read_text()
    raw = json.loads(text)  # plain JSON with canonical Extended JSON values, as mongodump writes
    assert list(raw) == ["options", "indexes", "uuid", "collectionName", "type"]
    assert raw["indexes"][0] == {"v": {"$numberInt": "2"}, "key": {"_id": {"$numberInt": "1"}}, "name": "_id_"}
    assert raw["indexes"][1] == {"v": {"$numberInt": "2"}, "key": {"site": {"$numberInt": "1"},
                                 "path": {"$numberInt": "-1"}}, "name": "sp", "unique": True}
    assert list(raw["indexes"][1]["key"]) == ["site", "path"]
    assert raw["uuid"] == "00112233445566778899aabbccddeeff"
    assert (raw["collectionName"], raw["type"]) == ("files", "collection")
    meta = dumpfmt.read_metadata(tmp_path, "files")
    assert meta["options"] == {"validator": {"x": {"$type": "string"}}, "validationLevel": "strict"}
    assert meta["indexes"][2] == {"v": 2, "key": {"attrs.$**": 1}, "name": "wild"}
    dumpfmt.write_collection(tmp_path, "bare", [])
    bare = json.loads((tmp_path / "bare.metadata.json").read_text())
    assert "options" not in bare and len(bare["uuid"]) == 32 and bare["indexes"][0]["name"] == "_id_"
    assert (tmp_path / "bare.bson").read_bytes() == b""


def test_reads_what_mongodump_writes(tmp_path):
    # a metadata file as mongodump 100.x writes it, and one written by an older mongodump
    (tmp_path / "runs.metadata.json").write_text(
        '{"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"},'
        '{"v":{"$numberInt":"2"},"key":{"started":{"$numberInt":"-1"}},"name":"started_-1",'
        '"expireAfterSeconds":{"$numberInt":"3600"}}],"uuid":"8e06b6e0a4fd4ae6bb8ff5dfe3d15a07",'
        '"collectionName":"runs","type":"collection"}')
    (tmp_path / "runs.bson").write_bytes(b"".join(bson.encode(d) for d in DOCS[1:]))
    (tmp_path / "old.metadata.json").write_text('{"options":{},"indexes":[{"v":1,"key":{"_id":1},'
                                                '"name":"_id_","ns":"x.old"}]}')
    (tmp_path / "old.bson").write_bytes(b"")
    (tmp_path / "nometa.bson").write_bytes(bson.encode({"_id": 1}))
    assert dumpfmt.list_collections(tmp_path) == ["nometa", "old", "runs"]
    meta = dumpfmt.read_metadata(tmp_path, "runs")
    assert meta["indexes"][1]["expireAfterSeconds"] == 3600 and meta["options"] == {}
    assert dumpfmt.read_metadata(tmp_path, "old")["collectionName"] == "old"
    assert dumpfmt.read_metadata(tmp_path, "nometa")["indexes"] == []
    assert list(dumpfmt.read_collection(tmp_path, "runs")) == DOCS[1:]


def test_names_that_are_not_file_names(tmp_path):
    for name in ["a/b", "with space", ".hidden", "ok.name-1"]:
        dumpfmt.write_collection(tmp_path, name, [{"_id": name}])
    assert dumpfmt.list_collections(tmp_path) == sorted(["a/b", "with space", ".hidden", "ok.name-1"])
    assert all(not p.name.startswith(".") for p in tmp_path.iterdir())
    assert list(dumpfmt.read_collection(tmp_path, "a/b")) == [{"_id": "a/b"}]


def test_accepts_raw_documents(tmp_path):
    raws = [bson.encode(d) for d in DOCS]
    info = dumpfmt.write_collection(tmp_path, "c", [raws[0], RawBSONDocument(raws[1]), DOCS[2]])
    assert (tmp_path / "c.bson").read_bytes() == b"".join(raws) and info["count"] == 3
    with pytest.raises(DumpError):
        dumpfmt.write_collection(tmp_path, "bad", [b"\x05\x00\x00\x00"])
    assert not (tmp_path / "bad.bson").exists()


def test_a_failed_write_leaves_nothing(tmp_path):
    dumpfmt.write_collection(tmp_path, "c", DOCS)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def docs():
        yield DOCS[0]
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        dumpfmt.write_collection(tmp_path, "c", docs())
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_truncated_and_corrupt_files_are_errors(tmp_path):
    dumpfmt.write_collection(tmp_path, "c", DOCS)
    path = tmp_path / "c.bson"
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(DumpError, match="truncated"):
        list(dumpfmt.iter_raw(tmp_path, "c"))
    path.write_bytes(data + b"\x01\x00")
    with pytest.raises(DumpError):
        list(dumpfmt.iter_raw(tmp_path, "c"))
    with pytest.raises(DumpError):
        list(dumpfmt.read_collection(tmp_path, "missing"))
    (tmp_path / "c.metadata.json").write_text("{not json")
    with pytest.raises(DumpError):
        dumpfmt.read_metadata(tmp_path, "c")


# --------------------------------------------------------------------------- whole databases

def _populate(db):
    with store.writing(db):
        db.create_collection("files", validator={"path": {"$type": "string"}}, validationLevel="moderate")
        db.files.create_index([("site", 1), ("path", 1)], unique=True, name="site_path")
        db.files.create_index("mtime", partialFilterExpression={"status": "ok"})
        db.files.insert_many([{"_id": f"s:{i}", "site": "s", "path": f"/p/{i}", "status": "ok",
                               "mtime": dt.datetime(2024, 1, 1) + dt.timedelta(hours=i)} for i in range(25)])
        db.runs.insert_one({"_id": "r1", "state": "done"})
        db.create_collection("empty")


def _state(db):
    out = {}
    for name in sorted(db.list_collection_names()):
        out[name] = (list(db[name].find()), store.collection_options(db, name),
                     sorted((n, tuple(ix["key"]), ix.get("unique", False))
                            for n, ix in db[name].index_information().items()))
    return out


@pytest.mark.parametrize("kind", ["mongomock", "embedded"])
def test_dump_verify_restore(tmp_path, kind):
    db = store.connect("mongomock://" if kind == "mongomock" else str(tmp_path / "cat"))
    _populate(db)
    before = _state(db)
    manifest = dumpfmt.dump_database(db, tmp_path / "dump")
    assert manifest["database"] == "spine_docs"
    assert {n: c["count"] for n, c in manifest["collections"].items()} == {"empty": 0, "files": 25, "runs": 1}
    assert dumpfmt.verify_dump(tmp_path / "dump") == manifest
    assert json.loads((tmp_path / "dump" / "manifest.json").read_text()) == manifest
    with open(tmp_path / "dump" / "spine_docs" / "files.bson", "rb") as fh:
        assert len(list(bson.decode_file_iter(fh))) == 25

    with store.writing(db):  # damage the database, add a collection the dump does not have
        db.files.delete_many({"path": {"$regex": "1"}})
        db.files.drop_index("site_path")
        db.command("collMod", "files", validator={})
        db.runs.insert_one({"_id": "r2"})
        db.extra.insert_one({"_id": 1})
        result = dumpfmt.restore_database(db, tmp_path / "dump")
    assert result == {"restored": {"empty": 0, "files": 25, "runs": 1}, "dropped": ["extra"]}
    assert _state(db) == before
    if kind == "embedded":
        store.close(db)
        assert _state(store.connect(str(tmp_path / "cat"))) == before


def test_restore_keeps_extra_collections_when_asked(tmp_path):
    db = store.connect("mongomock://")
    _populate(db)
    dumpfmt.dump_database(db, tmp_path / "dump")
    db.extra.insert_one({"_id": 1})
    assert dumpfmt.restore_database(db, tmp_path / "dump", drop_extra=False)["dropped"] == []
    assert "extra" in db.list_collection_names()


@pytest.mark.parametrize("damage", ["flip", "truncate", "manifest", "metadata", "missing"])
def test_a_bad_dump_is_refused_and_the_database_untouched(tmp_path, damage):
    db = store.connect("mongomock://")
    _populate(db)
    dumpfmt.dump_database(db, tmp_path / "dump")
    d = tmp_path / "dump" / "spine_docs"
    if damage == "flip":
        data = bytearray((d / "files.bson").read_bytes())
        data[200] ^= 0x01
        (d / "files.bson").write_bytes(bytes(data))
    elif damage == "truncate":
        (d / "files.bson").write_bytes((d / "files.bson").read_bytes()[:-10])
    elif damage == "manifest":
        (tmp_path / "dump" / "manifest.json").unlink()
    elif damage == "metadata":
        (d / "runs.metadata.json").write_text('{"indexes": []}')
    else:
        (d / "runs.bson").unlink()
    with store.writing(db):
        db.files.delete_many({})
        db.fresh.insert_one({"_id": "only"})
    before = _state(db)
    with pytest.raises(DumpError):
        dumpfmt.verify_dump(tmp_path / "dump")
    with pytest.raises(DumpError):
        dumpfmt.restore_database(db, tmp_path / "dump")
    assert _state(db) == before


def test_dump_refuses_to_overwrite(tmp_path):
    db = store.connect("mongomock://")
    _populate(db)
    dumpfmt.dump_database(db, tmp_path / "dump")
    with pytest.raises(DumpError):
        dumpfmt.dump_database(db, tmp_path / "dump")
    (tmp_path / "other" / "spine_docs").mkdir(parents=True)
    (tmp_path / "other" / "spine_docs" / "x.bson").write_bytes(b"")
    with pytest.raises(DumpError):
        dumpfmt.dump_database(db, tmp_path / "other")


def test_dump_of_plain_mongomock(tmp_path):
    db = mongomock.MongoClient().db
    db.things.insert_many([{"_id": i, "x": i * 2} for i in range(5)])
    manifest = dumpfmt.dump_database(db, tmp_path / "dump")
    assert manifest["collections"]["things"]["count"] == 5
    assert list(dumpfmt.read_collection(tmp_path / "dump" / "db", "things"))[4] == {"_id": 4, "x": 8}
    dumpfmt.verify_dump(tmp_path / "dump")


def test_atomic_write_bytes(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    dumpfmt.atomic_write_bytes(target, b"old")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        dumpfmt.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.json"]
    assert json_util.loads(dumpfmt.metadata_json(dumpfmt.metadata_document("x")))["collectionName"] == "x"
