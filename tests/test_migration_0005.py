"""Migration 0005: a catalog at schema version 4 gets the ``file_versions`` collection and its
unique ``{file_id, version}`` index, and ``files`` gets ``{inputs, _id}`` and ``{name, _id}``
(no document changes); ``down`` removes them."""

from __future__ import annotations

import pytest

from spine_docs import migrate, schema
from spine_docs.migrate import reconcile

from test_migrate_helpers import legacy_documents, load_legacy, reopen


def file_indexes(db):
    return {tuple(schema.index_key(i)) for i in schema.list_indexes(db, "files")}


def version_indexes(db):
    return {tuple(schema.index_key(i)): i for i in schema.list_indexes(db, "file_versions")}


def test_0005_adds_file_versions_and_down_removes_it(backend, db, tmp_path):
    load_legacy(db, legacy_documents(tmp_path, n_extra=5))
    assert migrate.up(db, to=4, backup_root=tmp_path / "b").ok
    assert "file_versions" not in schema.collection_names(db)
    docs_before = sorted(db.files.find({}), key=lambda d: d["_id"])
    files_v4 = set(file_indexes(db))

    res = migrate.up(db, to=5, backup_root=tmp_path / "b")
    assert res.ok, res.message
    assert [s.name for s in res.steps] == ["0005_file_versions"]
    db = reopen(backend, db, tmp_path)
    assert schema.db_version(db) == 5
    assert "file_versions" in schema.collection_names(db)
    assert set(version_indexes(db)) == {(("_id", 1),), (("file_id", 1), ("version", 1))}
    assert version_indexes(db)[(("file_id", 1), ("version", 1))].get("unique") is True
    assert sorted(db.files.find({}), key=lambda d: d["_id"]) == docs_before
    assert set(file_indexes(db)) == files_v4 | {(("inputs", 1), ("_id", 1)), (("name", 1), ("_id", 1))}
    with schema.writing(db):
        db.file_versions.insert_one({"_id": "a#0", "file_id": "a", "version": 1})
        with pytest.raises(Exception, match="(?i)duplicate"):
            db.file_versions.insert_one({"_id": "a#1", "file_id": "a", "version": 1})

    down = migrate.down(db, to=4, backup_root=tmp_path / "b")
    assert down.ok, down.message
    db = reopen(backend, db, tmp_path)
    assert schema.db_version(db) == 4
    assert "file_versions" not in schema.collection_names(db)
    assert set(file_indexes(db)) == files_v4
    assert sorted(db.files.find({}), key=lambda d: d["_id"]) == docs_before


def test_0005_at_head_matches_schema_json(backend, db, tmp_path):
    assert migrate.up(db, backup_root=tmp_path / "b").ok
    db = reopen(backend, db, tmp_path)
    assert reconcile.diff(schema.load_schema(), reconcile.snapshot(db)) == []
    assert migrate.check(db).ok
