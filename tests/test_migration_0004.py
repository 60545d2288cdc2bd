"""Migration 0004: a version-3 catalog learns the lifecycle statuses, gets files_archive and
the two lineage indexes; no document changes; ``down`` gives version 3 back (an archive that
holds documents is kept)."""

from __future__ import annotations

from spine_docs import migrate, schema
from spine_docs.migrate import reconcile

from test_migrate_helpers import legacy_documents, load_legacy, reopen


LINEAGE = {(("lineage.parents.path", 1),), (("lineage.pending", 1),), (("retired", 1),)}
ARCHIVE = {(("_id", 1),), (("archived.at", -1),), (("path", 1), ("site", 1))}


def file_indexes(db, name="files"):
    return {tuple(schema.index_key(i)) for i in schema.list_indexes(db, name)}


def status_enum(db):
    return schema.collection_options(db, "files")["validator"]["$jsonSchema"]["properties"]["status"]["enum"]


def test_0004_upgrades_a_version_3_catalog_and_down_reverses_it(backend, db, tmp_path):
    load_legacy(db, legacy_documents(tmp_path, n_extra=5))
    assert migrate.up(db, to=3, backup_root=tmp_path / "b").ok
    v3_indexes = file_indexes(db)
    assert "files_archive" not in db.list_collection_names()
    assert status_enum(db) == ["ok", "incomplete", "error"]
    docs_before = sorted(db.files.find({}), key=lambda d: d["_id"])

    res = migrate.up(db, to=4, backup_root=tmp_path / "b")
    assert res.ok, res.message
    assert [s.name for s in res.steps] == ["0004_lifecycle_and_lineage"]
    assert not res.reconciled                      # the migration did all that schema.json says
    db = reopen(backend, db, tmp_path)
    assert schema.db_version(db) == 4
    assert status_enum(db) == ["ok", "incomplete", "error", "missing", "changed", "corrupt"]
    props = schema.collection_options(db, "files")["validator"]["$jsonSchema"]["properties"]
    assert {"verify", "retired", "lineage"} <= set(props)
    assert file_indexes(db) == v3_indexes | LINEAGE
    assert file_indexes(db, "files_archive") == ARCHIVE
    # (at head, migrate check and schema.json agree: tests/test_migration_0005.py)
    assert sorted(db.files.find({}), key=lambda d: d["_id"]) == docs_before

    down = migrate.down(db, to=3, backup_root=tmp_path / "b")
    assert down.ok, down.message
    db = reopen(backend, db, tmp_path)
    assert schema.db_version(db) == 3
    assert status_enum(db) == ["ok", "incomplete", "error"]
    assert file_indexes(db) == v3_indexes
    assert "files_archive" not in db.list_collection_names()     # it was empty
    assert sorted(db.files.find({}), key=lambda d: d["_id"]) == docs_before


def test_0004_down_keeps_an_archive_that_holds_documents(backend, db, tmp_path):
    assert migrate.up(db, backup_root=tmp_path / "b").ok
    with schema.writing(db):
        db.files_archive.insert_one({"_id": "s:/a.h5", "site": "s", "path": "/a.h5", "archived": {"why": "t"}})
    assert migrate.down(db, to=3, backup_root=tmp_path / "b").ok
    db = reopen(backend, db, tmp_path)
    assert list(db.files_archive.find({})) == [
        {"_id": "s:/a.h5", "site": "s", "path": "/a.h5", "archived": {"why": "t"}}]
