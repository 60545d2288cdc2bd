"""schema.json and spine_docs.schema: load, setup, version gate, index comparison by spec."""

from __future__ import annotations

import json
import re

import bson
import pytest

from spine_docs import resources, schema, store

from test_migrate_helpers import HEAD


@pytest.fixture()
def db():
    return store.connect("mongomock://")


def _migration_versions():
    return sorted(int(p.name[:4]) for p in resources.migrations_dir().glob("[0-9][0-9][0-9][0-9]_*.py"))


def test_statuses_are_the_schemas_enum():
    from spine_docs import extract
    data = schema.load_schema()
    status = data["collections"]["files"]["validator"]["$jsonSchema"]["properties"]["status"]
    assert status["enum"] == list(extract.STATUSES) == ["ok", "incomplete", "error", "missing", "changed", "corrupt"]


def test_shipped_schema_is_consistent():
    data = schema.load_schema()
    assert schema.CODE_SCHEMA_VERSION == data["schema_version"] == 7 == HEAD
    assert {"files", "runs", "meta", "saved_queries", "changelog", "file_versions"} <= set(data["collections"])
    # the highest migration equals schema_version
    assert _migration_versions()[-1] == data["schema_version"]
    files = data["collections"]["files"]
    js = files["validator"]["$jsonSchema"]
    assert set(js["required"]) == {"_id", "site", "path", "name", "dir", "status", "ingest"}
    assert files["validationLevel"] == "moderate" and files["validationAction"] == "warn"
    keys = [tuple(schema.index_key(i)) for i in files["indexes"]]
    assert (("path", 1), ("site", 1)) in keys
    assert (("attrs.$**", 1),) in keys
    assert (("mtime", -1), ("_id", -1)) in keys
    unique = [i for i in files["indexes"] if i.get("unique")]
    assert [schema.index_key(i) for i in unique] == [[("path", 1), ("site", 1)]]
    # the validator is a valid BSON document (what collMod sends)
    bson.encode(files["validator"])


def test_load_schema_errors(tmp_path):
    with pytest.raises(schema.SchemaError, match="not found"):
        schema.load_schema(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": "2", "collections": {}}))
    with pytest.raises(schema.SchemaError, match="schema_version"):
        schema.load_schema(bad)
    bad.write_text(json.dumps({"schema_version": 1, "collections": {"x": {"indexes": [{"unique": True}]}}}))
    with pytest.raises(schema.SchemaError, match="key"):
        schema.load_schema(bad)


def test_setup_fresh_then_idempotent(db):
    rep = schema.setup(db)
    assert rep.action == "initialised" and rep.version == HEAD
    assert set(rep.created_collections) == set(schema.load_schema()["collections"])
    assert "files.path_1_site_1" in rep.created_indexes
    assert "files" in rep.validators_set
    assert schema.db_version(db) == HEAD
    opts = schema.collection_options(db, "files")
    assert opts["validationAction"] == "warn" and "$jsonSchema" in opts["validator"]
    info = {i["name"]: i for i in schema.list_indexes(db, "files")}
    assert info["path_1_site_1"]["unique"] is True
    assert info["checksum.sha256_1"]["partialFilterExpression"] == {"checksum.sha256": {"$exists": True}}
    assert rep.summary().startswith(f"initialised at schema version {HEAD}: created 7 collections, ")
    again = schema.setup(db)
    assert again.action == "current" and again.commands == [] and again.drift == []
    assert again.summary() == f"schema version {HEAD}: nothing to create"


def test_setup_completes_missing_index_and_reports_drift(db):
    schema.setup(db)
    db.files.drop_index("model_1")
    db.files.drop_index("status_1")
    db.files.create_index([("status", 1)], sparse=True)
    rep = schema.setup(db)
    assert rep.created_indexes == ["files.model_1"]
    assert any("status_1" in d and "sparse" in d for d in rep.drift)


def test_setup_refuses_old_or_unversioned_data(db):
    db.files.insert_one({"_id": "a:/x.h5"})
    with pytest.raises(schema.SchemaMismatch) as exc:
        schema.setup(db, db_url="/srv/catalog")
    assert "spine-docs migrate up --db /srv/catalog" in str(exc.value)
    assert db.list_collection_names() == ["files"]  # nothing created


def test_check_version_messages(db):
    with pytest.raises(schema.SchemaMismatch) as exc:
        schema.check_version(db, db_url="mongodb://alice:s3cret@host/spine")
    assert "spine-docs setup --db" in str(exc.value) and "s3cret" not in str(exc.value)
    assert schema.check_version(db, allow_empty=True) == 0

    db.meta.insert_one({"_id": "schema", "version": 1})
    with pytest.raises(schema.SchemaMismatch) as exc:
        schema.check_version(db, db_url="mongodb://h/db")
    msg = str(exc.value)
    assert msg == f"database schema version 1, this spine-docs needs {HEAD}: run `spine-docs migrate up --db mongodb://h/db`"
    assert "\n" not in msg and exc.value.db_version == 1 and exc.value.code_version == HEAD

    with pytest.raises(schema.SchemaMismatch, match="migrate up"):   # the explorer's call
        schema.check_version(db, db_url="mongodb://h/db", allow_empty=True)

    db.meta.update_one({"_id": "schema"}, {"$set": {"version": HEAD + 1}})
    with pytest.raises(schema.SchemaMismatch, match=re.escape(f"spine-docs migrate down --to {HEAD}")):
        schema.check_version(db)

    db.meta.update_one({"_id": "schema"}, {"$set": {"version": HEAD}})
    assert schema.check_version(db) == HEAD


def test_index_comparison_by_spec_not_name():
    want = {"key": {"a": 1, "b": -1}, "unique": True, "comment": "doc"}
    assert schema.same_index(want, {"key": {"a": 1.0, "b": -1}, "unique": True, "name": "custom", "v": 2})
    assert not schema.same_index(want, {"key": {"b": -1, "a": 1}, "unique": True})          # key order matters
    assert schema.index_option_diff(want, {"key": {"a": 1, "b": -1}}) == ["unique"]
    assert schema.index_option_diff({"key": {"a": 1}}, {"key": {"a": 1}, "unique": False, "sparse": False}) == []
    assert schema.index_option_diff({"key": {"a": 1}, "expireAfterSeconds": 60},
                                    {"key": {"a": 1}, "expireAfterSeconds": 3600}) == ["expireAfterSeconds"]
    # partial filters compare by content, not key order
    assert schema.same_index({"key": {"a": 1}, "partialFilterExpression": {"x": 1, "y": {"$exists": True}}},
                             {"key": {"a": 1}, "partialFilterExpression": {"y": {"$exists": True}, "x": 1}})
    # the server expands a collation with defaults: compare on what the spec names
    assert schema.same_index({"key": {"n": 1}, "collation": {"locale": "en", "strength": 2}},
                             {"key": {"n": 1}, "collation": {"locale": "en", "strength": 2, "caseLevel": False}})
    assert not schema.same_index({"key": {"n": 1}, "collation": {"locale": "en", "strength": 2}},
                                 {"key": {"n": 1}, "collation": {"locale": "en", "strength": 3}})
    # text index as written vs as listIndexes reports it
    assert schema.same_index({"key": {"name": "text", "path": "text"}},
                             {"key": {"_fts": "text", "_ftsx": 1}, "weights": {"name": 1, "path": 1},
                              "default_language": "english", "language_override": "language", "textIndexVersion": 3})
    assert not schema.same_index({"key": {"name": "text"}},
                                 {"key": {"_fts": "text", "_ftsx": 1}, "weights": {"name": 1, "path": 1}})
    # True is not 1
    assert schema.index_option_diff({"key": {"a": 1}, "unique": True}, {"key": {"a": 1}, "unique": 1}) == ["unique"]


def test_index_document_and_names():
    assert schema.index_name({"key": {"mtime": -1, "_id": -1}}) == "mtime_-1__id_-1"
    assert schema.index_name({"key": {"a": 1}, "name": "mine"}) == "mine"
    doc = schema.index_document({"key": {"a": 1}, "sparse": True, "comment": "why"})
    assert doc == {"key": {"a": 1}, "name": "a_1", "sparse": True}


def test_validator_matches():
    want = schema.collection_spec_options(schema.load_schema()["collections"]["files"])
    assert schema.validator_matches(want, json.loads(json.dumps(want)))
    assert not schema.validator_matches(want, {**want, "validationAction": "error"})
    assert not schema.validator_matches(want, {})
    assert schema.validator_matches({}, {})
    assert not schema.validator_matches({}, {"validator": {"a": 1}})


def test_display_url_hides_password():
    assert schema.display_url("mongodb://u:pw@h:27017/db") == "mongodb://u:****@h:27017/db"
    assert schema.display_url("/data/catalog") == "/data/catalog"
