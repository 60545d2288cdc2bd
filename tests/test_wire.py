"""What reaches a MongoDB server, through pymongo's real network path, against MongoDB's
scripted wire-protocol server ``mockupdb`` (it speaks the protocol; it is not a database)."""

from __future__ import annotations

import pytest

mockupdb = pytest.importorskip("mockupdb")
import pymongo  # noqa: E402

from spine_docs import schema  # noqa: E402

WIRE_6_0 = {"maxWireVersion": 17, "minWireVersion": 0}  # a MongoDB 6.0 server


@pytest.fixture
def server():
    s = mockupdb.MockupDB(auto_ismaster=WIRE_6_0)
    s.run()
    yield s
    s.stop()


@pytest.fixture
def db(server):
    client = pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=5000)
    yield client["spine_docs"]
    client.close()


def test_indexes_of_a_collection_are_built_by_one_createIndexes_command(server, db):
    want = [{"key": {"path": 1, "site": 1}, "unique": True}, {"key": {"size": 1, "_id": 1}},
            {"key": {"attrs.$**": 1}}]
    done = mockupdb.go(schema.execute, db, {"createIndexes": "files", "indexes": want})
    request = server.receives(timeout=10)
    assert request.command_name == "createIndexes" and request["createIndexes"] == "files"
    assert [dict(i["key"]) for i in request["indexes"]] == [w["key"] for w in want]
    assert [i["name"] for i in request["indexes"]] == ["path_1_site_1", "size_1__id_1", "attrs.$**_1"]
    assert request["indexes"][0]["unique"] is True
    request.ok()
    done()
