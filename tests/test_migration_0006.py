"""Migration 0006: a catalog at schema version 5 gets the partial ``{superseded_by: 1}``
index on ``files`` (only the superseded files, no document changes); ``down`` removes it."""

from __future__ import annotations

from spine_docs import migrate, schema
from spine_docs.migrate import reconcile

from test_migrate_helpers import legacy_documents, load_legacy, reopen

SUPERSEDED = (("superseded_by", 1),)


def file_indexes(db):
    return {tuple(schema.index_key(i)): i for i in schema.list_indexes(db, "files")}


def test_0006_adds_the_superseded_index_and_down_removes_it(backend, db, tmp_path):
    load_legacy(db, legacy_documents(tmp_path, n_extra=5))
    assert migrate.up(db, to=5, backup_root=tmp_path / "b").ok
    docs_before = sorted(db.files.find({}), key=lambda d: d["_id"])
    files_v5 = set(file_indexes(db))
    assert SUPERSEDED not in files_v5

    res = migrate.up(db, to=6, backup_root=tmp_path / "b")
    assert res.ok, res.message
    assert [s.name for s in res.steps] == ["0006_superseded"]
    db = reopen(backend, db, tmp_path)
    assert schema.db_version(db) == 6
    indexes = file_indexes(db)
    assert set(indexes) == files_v5 | {SUPERSEDED}
    assert indexes[SUPERSEDED].get("partialFilterExpression") == {"superseded_by": {"$exists": True}}
    assert sorted(db.files.find({}), key=lambda d: d["_id"]) == docs_before

    down = migrate.down(db, to=5, backup_root=tmp_path / "b")
    assert down.ok, down.message
    db = reopen(backend, db, tmp_path)
    assert schema.db_version(db) == 5
    assert set(file_indexes(db)) == files_v5
    assert sorted(db.files.find({}), key=lambda d: d["_id"]) == docs_before


def test_0006_at_head_matches_schema_json(backend, db, tmp_path):
    assert migrate.up(db, backup_root=tmp_path / "b").ok
    db = reopen(backend, db, tmp_path)
    assert reconcile.diff(schema.load_schema(), reconcile.snapshot(db)) == []
    assert migrate.check(db).ok
