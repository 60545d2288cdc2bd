"""Migration 0003: a catalog made at schema version 2 gets the index design for a million
files (backup first, one createIndexes, the replaced indexes dropped), and ``down`` gives the
version-2 indexes back exactly."""

from __future__ import annotations

import pytest

from spine_docs import migrate, schema
from spine_docs.migrate import reconcile

from test_migrate_helpers import HEAD, db, kind, legacy_documents, load_legacy, reopen  # noqa: F401


V2_FILES_INDEXES = {  # schema.json of version 2, written out
    (("site", 1), ("path", 1)), (("spine_version_key", 1),), (("model", 1),),
    (("dataset", 1), ("run", 1), ("subrun", 1)), (("status", 1),), (("mtime", -1), ("_id", -1)),
    (("fingerprint", 1),), (("checksum.sha256", 1),), (("ingest.last_seen", -1),), (("detector", 1),),
    (("config", 1),), (("prod_version", 1),), (("site", 1), ("dir", 1)), (("attrs.$**", 1),), (("_id", 1),),
}
ADDED = {
    (("path", 1), ("site", 1)), (("size", 1), ("_id", 1)), (("spine_version_key", 1), ("_id", 1)),
    (("run", 1), ("_id", 1)), (("run_max", 1),), (("num_events", 1), ("_id", 1)), (("ingest.first_seen", 1), ("_id", 1)),
    (("ingest.last_seen", -1), ("_id", -1)), (("spine_version", 1),),
}
DROPPED = {(("site", 1), ("path", 1)), (("spine_version_key", 1),), (("ingest.last_seen", -1),)}
#: what the later migrations (run by the same `up` to head) add to files: 0004 (lineage,
#: retired), 0005 (set diff), 0006 (superseded); 0007 indexes files_archive only
ADDED_LATER = {(("lineage.parents.path", 1),), (("lineage.pending", 1),), (("retired", 1),),
               (("inputs", 1), ("_id", 1)), (("name", 1), ("_id", 1)), (("superseded_by", 1),)}


def file_indexes(db):
    return {tuple(schema.index_key(i)): i for i in schema.list_indexes(db, "files")}


def test_0003_upgrades_a_version_2_catalog_and_down_reverses_it(kind, db, tmp_path):
    load_legacy(db, legacy_documents(tmp_path, n_extra=20))
    assert migrate.up(db, to=2, backup_root=tmp_path / "b").ok
    assert set(file_indexes(db)) == V2_FILES_INDEXES
    docs_before = sorted(db.files.find({}), key=lambda d: d["_id"])

    res = migrate.up(db, backup_root=tmp_path / "b")
    assert res.ok, res.message
    assert [s.name for s in res.steps][:1] == ["0003_indexes_for_a_million_files"]   # then later ones
    assert res.backup is not None and res.backup.verified
    db = reopen(kind, db, tmp_path)
    assert schema.db_version(db) == HEAD
    assert set(file_indexes(db)) == (V2_FILES_INDEXES - DROPPED) | ADDED | ADDED_LATER
    assert file_indexes(db)[(("path", 1), ("site", 1))].get("unique") is True
    assert migrate.check(db).ok
    assert reconcile.diff(schema.load_schema(), reconcile.snapshot(db)) == []
    # no document changed but for the lineage 0007 computes (legacy documents have inputs;
    # test_migrate.py checks its value); down to 2 below removes it again
    after = sorted(db.files.find({}), key=lambda d: d["_id"])
    assert [{k: v for k, v in d.items() if k != "lineage"} for d in after] == docs_before
    assert all("lineage" not in d for d in docs_before) and all(d["lineage"]["backfilled"] == "0007" for d in after)
    last = migrate.history(db)[-1]
    assert [(h.version, h.direction, h.state) for h in migrate.history(db) if h.version == 3] == [(3, "up", "applied")]
    assert (last.version, last.direction, last.state) == (HEAD, "up", "applied")

    down = migrate.down(db, to=2, backup_root=tmp_path / "b")
    assert down.ok, down.message
    db = reopen(kind, db, tmp_path)
    assert schema.db_version(db) == 2
    assert set(file_indexes(db)) == V2_FILES_INDEXES
    assert file_indexes(db)[(("site", 1), ("path", 1))].get("unique") is True
    assert sorted(db.files.find({}), key=lambda d: d["_id"]) == docs_before


def test_0003_keeps_paths_unique_per_site(kind, db, tmp_path):
    assert migrate.up(db, backup_root=tmp_path / "b").ok
    with schema.writing(db):
        db.files.insert_one({"_id": "a:/x.h5", "site": "a", "path": "/x.h5"})
        db.files.insert_one({"_id": "b:/x.h5", "site": "b", "path": "/x.h5"})   # another site: fine
        with pytest.raises(Exception, match="(?i)duplicate"):
            db.files.insert_one({"_id": "other-id", "site": "a", "path": "/x.h5"})


def test_plan_lines_say_what_each_command_does():
    from spine_docs.migrate.ops import describe_command

    assert describe_command({"createIndexes": "files", "indexes": [
        {"key": {"path": 1, "site": 1}, "unique": True, "name": "path_1_site_1"},
        {"key": {"checksum.sha256": 1}, "partialFilterExpression": {"checksum.sha256": {"$exists": True}}}]}) == (
        "create 2 indexes on files in one pass: path_1_site_1 {path: 1, site: 1} unique, "
        "checksum.sha256_1 {checksum.sha256: 1} partial")
    assert describe_command({"dropIndexes": "files", "index": "site_1_path_1"}) == "drop index files.site_1_path_1"
    assert describe_command({"dropIndexes": "files", "index": {"a": 1}}) == "drop index files.{a: 1}"
    assert describe_command({"create": "runs"}) == "create collection runs"
    assert describe_command({"create": "files", "validator": {"$jsonSchema": {}}}) == \
        "create collection files with its validator"
    assert describe_command({"bulkWrite": "files", "documents": 15, "batchSize": 500}) == \
        "update 15 documents of files in batches of 500"
