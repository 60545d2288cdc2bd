"""The migration runner end to end, on mongomock and on the embedded catalog."""

from __future__ import annotations

import os

import bson
import pytest

from spine_docs import migrate, schema
from spine_docs.migrate import reconcile
from spine_docs.spine import semver_key

from test_migrate_helpers import (BACKENDS, HEAD, NEXT, SHIPPED, db, kind, dump, legacy_documents, load_legacy, migrations_copy,
                                  open_backend, reopen, writing)


def _strip_key(doc):
    return {k: v for k, v in doc.items() if k not in ("spine_version_key", "lineage")}


def _backfilled_lineage(old):
    """What 0007 gives a legacy document: its inputs (raw files, none in the catalog) kept as
    text and pending by file name; nothing for a document without inputs."""
    texts = [t for t in old.get("inputs") or [] if isinstance(t, str)]
    if not texts:
        return None
    return {"parents": [{"text": t, "path": None, "how": None} for t in texts],
            "pending": sorted({t.rsplit("/", 1)[-1] for t in texts}), "backfilled": "0007"}


def test_full_upgrade_from_version_0_with_data(kind, db, tmp_path):
    docs = legacy_documents(tmp_path, n_extra=1100)   # > 2 batches of 500
    load_legacy(db, docs)
    before = {d["_id"]: d for d in db.files.find({})}
    runs_before = list(db.runs.find({}))
    assert schema.db_version(db) == 0

    res = migrate.up(db, backup_root=tmp_path / "backups")
    assert res.ok, res.message
    assert [s.name for s in res.steps] == SHIPPED
    assert res.backup is not None and res.backup.verified
    assert res.backup.collections["files"]["count"] == len(docs)

    db = reopen(kind, db, tmp_path)
    assert schema.db_version(db) == HEAD
    after = {d["_id"]: d for d in db.files.find({})}
    assert after.keys() == before.keys()
    for _id, old in before.items():
        new = after[_id]
        # identical except for what 0002 changes: the key, computed by spine.semver_key, and
        # what 0007 adds: the lineage of the documents with inputs
        assert _strip_key(new) == _strip_key(old)
        assert list(_strip_key(new)) == list(_strip_key(old))           # field order kept
        assert new["spine_version_key"] == semver_key(old.get("spine_version"))
        assert "lineage" not in old and new.get("lineage") == _backfilled_lineage(old)
    assert sum(_backfilled_lineage(old) is not None for old in before.values()) == len(before)  # all have inputs
    assert list(db.runs.find({})) == runs_before
    assert after["testsite:/extra/f00000.h5"]["spine_version_key"] is None   # no version: null key
    # sortable: 0.5 < 0.10.2 < 0.14.0 < 0.17.1 < 0.18.0rc1
    order = [d["spine_version"] for d in db.files.find({"path": {"$regex": "^/(?!extra)"}}).sort("spine_version_key", 1)]
    assert order == ["0.5", "0.10.2", "0.14.0", "0.17.1", "0.18.0rc1"]
    chk = migrate.check(db)
    assert chk.ok, chk.problems
    hist = migrate.history(db)
    assert [(h.version, h.direction, h.state) for h in hist] == [(v, "up", "applied") for v in range(1, HEAD + 1)]
    assert all(h.host and h.user and h.checksum and h.duration_s is not None for h in hist)
    # a second run has nothing to do, and takes no backup
    again = migrate.up(db, backup_root=tmp_path / "backups")
    assert again.ok and again.nothing_to_do and again.backup is None
    assert len(list((tmp_path / "backups").iterdir())) == 1


def test_fresh_empty_database_is_initialised_by_up(db, tmp_path):
    res = migrate.up(db, backup_root=tmp_path / "b")
    assert res.ok and res.final_version == HEAD and res.backup is None
    assert "empty" in res.backup_note
    assert not (tmp_path / "b").exists()
    assert migrate.check(db).ok
    # the result equals what setup() creates: same indexes by spec, same validator
    other = open_backend("mongomock", tmp_path, "other")
    schema.setup(other)
    a, b = reconcile.snapshot(db), reconcile.snapshot(other)
    assert set(a) == set(b)
    for name in a:
        assert schema.validator_matches(b[name].options, a[name].options), name
        assert sorted(map(schema.index_identity, a[name].indexes)) == sorted(map(schema.index_identity, b[name].indexes))


FAILING = '''"""Change half the documents, then fail."""
description = "a step that raises half-way"

def up(db):
    ids = [d["_id"] for d in db.files.find({}, {"_id": 1}).sort("_id", 1)]
    for i in ids[: len(ids) // 2]:
        db.files.update_one({"_id": i}, {"$set": {"model": "CHANGED"}, "$unset": {"attrs": ""}})
    db.files.create_index([("name", 1)])
    db.create_collection("scratch")
    db.scratch.insert_one({"x": 1})
    raise RuntimeError("boom half-way")
'''


def test_failing_step_restores_byte_for_byte(kind, db, tmp_path):
    mdir, sfile = migrations_copy(tmp_path, {f"{NEXT}_fail.py": FAILING})
    load_legacy(db, legacy_documents(tmp_path, n_extra=30))
    ok = migrate.up(db, to=HEAD, migrations_dir=mdir, schema_file=sfile, backup_root=tmp_path / "b")
    assert ok.ok and ok.final_version == HEAD
    before = dump(db, tmp_path / "dump_before")

    res = migrate.up(db, migrations_dir=mdir, schema_file=sfile, backup_root=tmp_path / "b")
    assert not res.ok and res.exit_code == 1
    assert res.failed.name == f"{NEXT}_fail" and "boom half-way" in res.failed.error
    assert res.restored is not None and "scratch" in res.restored.dropped
    assert "restored from" in res.message and f"{NEXT}_fail failed" in res.message

    db = reopen(kind, db, tmp_path)
    after = dump(db, tmp_path / "dump_after")
    assert after.keys() == before.keys()
    for name in before:
        assert after[name] == before[name], name
    assert schema.db_version(db) == HEAD
    assert "scratch" not in db.list_collection_names()
    last = migrate.history(db)[-1]
    assert (last.version, last.state) == (HEAD + 1, "failed") and "RuntimeError: boom half-way" in last.error
    st = migrate.status(db, migrations_dir=mdir, schema_file=sfile)
    assert st.last_failure["version"] == HEAD + 1 and [p.version for p in st.pending] == [HEAD + 1]
    assert st.lock is None


def test_failure_in_a_later_step_rolls_back_the_whole_run(db, tmp_path):
    mdir, sfile = migrations_copy(tmp_path, {f"{NEXT}_fail.py": FAILING})
    load_legacy(db, legacy_documents(tmp_path))
    before = dump(db, tmp_path / "d0")
    res = migrate.up(db, migrations_dir=mdir, schema_file=sfile, backup_root=tmp_path / "b")
    assert not res.ok
    expected = [(v, "rolled_back") for v in range(1, HEAD + 1)] + [(HEAD + 1, "failed")]
    assert [(s.version, s.state) for s in res.steps] == expected
    assert res.final_version == 0
    assert dump(db, tmp_path / "d1") == before
    states = [(h.version, h.state) for h in migrate.history(db)]
    assert states == expected


def test_failure_on_empty_database_drops_what_was_created(db, tmp_path):
    mdir, sfile = migrations_copy(tmp_path, {f"{NEXT}_fail.py": FAILING})
    res = migrate.up(db, migrations_dir=mdir, schema_file=sfile, backup_root=tmp_path / "b")
    assert not res.ok and res.final_version == 0
    assert set(schema.collection_names(db)) <= {"meta", "changelog"}
    assert db.meta.count_documents({}) == 0


FIRST_FAILS = '''"""The first migration itself fails, half-way."""
description = "creates a collection, then raises"

def up(db):
    db.create_collection("files")
    db.files.insert_one({"_id": "x"})
    raise RuntimeError("the very first step fails")
'''


def test_a_failing_first_migration_on_an_empty_database_keeps_its_record(kind, db, tmp_path):
    import json

    from spine_docs import resources

    mdir = tmp_path / "only_one"
    mdir.mkdir()
    (mdir / "0001_first.py").write_text(FIRST_FAILS)
    data = json.loads(resources.schema_file().read_text())
    data["schema_version"] = 1
    sfile = tmp_path / "schema1.json"
    sfile.write_text(json.dumps(data))
    assert db.list_collection_names() == []

    res = migrate.up(db, migrations_dir=mdir, schema_file=sfile, backup_root=tmp_path / "b")
    assert not res.ok and res.final_version == 0 and res.backup is None
    assert [(s.version, s.state) for s in res.steps] == [(1, "failed")]

    db = reopen(kind, db, tmp_path)   # what was saved, on the embedded catalog
    assert "files" not in db.list_collection_names()
    assert schema.db_version(db) == 0
    entries = list(db.changelog.find({}))
    assert [(e["version"], e["name"], e["direction"], e["state"]) for e in entries] == \
        [(1, "0001_first", "up", "failed")]
    assert "RuntimeError: the very first step fails" in entries[0]["error"]
    st = migrate.status(db, migrations_dir=mdir, schema_file=sfile)
    assert st.last_failure["version"] == 1 and "very first step" in st.last_failure["error"]


def test_no_backup_failure_says_so(db, tmp_path):
    mdir, sfile = migrations_copy(tmp_path, {f"{NEXT}_fail.py": FAILING})
    load_legacy(db, legacy_documents(tmp_path))
    res = migrate.up(db, backup=False, migrations_dir=mdir, schema_file=sfile)
    assert not res.ok and res.restored is None
    assert "no backup was taken" in res.message


def test_plan_writes_nothing(kind, db, tmp_path):
    load_legacy(db, legacy_documents(tmp_path, n_extra=10))
    before = dump(db, tmp_path / "d0", skip=())
    files_before = None
    if kind == "embedded":
        root = tmp_path / "catalog"
        files_before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}
    p = migrate.plan(db, backup_root=tmp_path / "b")
    assert (p.from_version, p.to_version) == (0, HEAD)
    assert [s.name for s in p.steps] == SHIPPED
    cmds = p.commands()
    verbs = [next(iter(c)) for c in cmds]
    assert "collMod" in verbs and "createIndexes" in verbs and "bulkWrite" in verbs
    bulk = next(c for c in cmds if "bulkWrite" in c)
    assert bulk["documents"] == 15
    assert p.reconcile == []              # the migrations already cover schema.json
    assert p.stamp == HEAD and "built-in dump" in p.backup
    for c in cmds:
        bson.encode({k: v for k, v in c.items()})
    # nothing changed: data, bookkeeping, lock, files on disk, no backup taken
    assert dump(db, tmp_path / "d1", skip=()) == before
    assert schema.db_version(db) == 0 and "changelog" not in db.list_collection_names()
    assert not (tmp_path / "b").exists()
    if files_before is not None:
        root = tmp_path / "catalog"
        assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()} == files_before
    # and applying afterwards does what the plan said
    res = migrate.up(db, backup_root=tmp_path / "b")
    assert res.ok and res.reconciled == []


def test_check_catches_index_option_drift_and_up_repairs_it(db, tmp_path):
    migrate.up(db, backup_root=tmp_path / "b")
    assert migrate.check(db).exit_code == 0
    with writing(db):
        db.files.drop_index("status_1")
        db.files.create_index([("status", 1)], sparse=True)          # same key, other options
    chk = migrate.check(db)
    assert chk.exit_code == 1
    assert any("status_1" in p and "sparse" in p for p in chk.problems)
    st = migrate.status(db)
    assert st.drift_summary == {"index_options": 1} and st.db_version == st.code_version
    p = migrate.plan(db)
    assert p.steps == [] and p.reconcile == [{"dropIndexes": "files", "index": "status_1"},
                                             {"createIndexes": "files", "indexes": [{"key": {"status": 1}, "name": "status_1"}]}]
    res = migrate.up(db, backup_root=tmp_path / "b")
    assert res.ok and res.reconciled and res.backup is not None
    assert migrate.check(db).ok
    assert migrate.history(db)[-1].direction == "reconcile"


def test_check_compares_by_spec_not_name(db, tmp_path):
    migrate.up(db, backup_root=tmp_path / "b")
    with writing(db):
        db.files.drop_index("model_1")
        db.files.create_index([("model", 1)], name="by_model")       # same spec, other name
        db.files.create_index([("my_field", 1)])                      # an admin's own index
    chk = migrate.check(db)
    assert chk.ok, chk.problems
    assert any("my_field" in w for w in chk.warnings)                 # reported, not failing


def test_check_catches_missing_validator_and_version(db, tmp_path):
    migrate.up(db, backup_root=tmp_path / "b")
    with writing(db):
        schema.execute(db, {"collMod": "files", "validator": {}})
    chk = migrate.check(db)
    assert not chk.ok and any("validator" in p for p in chk.problems)
    with writing(db):
        schema.stamp_version(db, 1)
    chk = migrate.check(db)
    assert any("spine-docs migrate up" in p for p in chk.problems)


def test_down_and_up_again(db, tmp_path):
    docs = legacy_documents(tmp_path)
    load_legacy(db, docs)
    migrate.up(db, backup_root=tmp_path / "b")
    res = migrate.down(db, to=1, backup_root=tmp_path / "b")
    assert res.ok and res.final_version == 1
    names = {i["name"] for i in schema.list_indexes(db, "files")}
    assert "spine_version_key_1" not in names and "site_1_path_1" in names
    with pytest.raises(schema.SchemaMismatch, match="migrate up"):
        schema.check_version(db)
    res = migrate.down(db, to=0, backup_root=tmp_path / "b")
    assert res.ok and schema.db_version(db) == 0
    assert not schema.collection_options(db, "files").get("validator")
    assert db.files.count_documents({}) == len(docs)                  # data kept
    res = migrate.up(db, backup_root=tmp_path / "b")
    assert res.ok and migrate.check(db).ok
    with pytest.raises(migrate.MigrationError, match="down --to"):
        migrate.up(db, to=1)
    with pytest.raises(migrate.MigrationError, match=f"choose 0..{HEAD}"):
        migrate.down(db, to=HEAD + 1)


def test_down_refuses_irreversible_before_changing_anything(db, tmp_path):
    mdir, sfile = migrations_copy(tmp_path, {f"{NEXT}_oneway.py": 'description = "one way"\ndef up(db):\n    pass\n'})
    migrate.up(db, migrations_dir=mdir, schema_file=sfile)
    with pytest.raises(migrate.MigrationError, match=f"{NEXT}_oneway cannot be undone"):
        migrate.down(db, to=1, migrations_dir=mdir, schema_file=sfile)
    assert schema.db_version(db) == HEAD + 1 and migrate.holder(db) is None


def test_stamp_adopts_an_existing_database(db, tmp_path):
    schema.setup(db)
    with writing(db):
        db.meta.delete_one({"_id": "schema"})
    assert schema.db_version(db) == 0
    res = migrate.stamp(db, HEAD)
    assert res.ok and schema.db_version(db) == HEAD
    assert migrate.check(db).ok
    assert migrate.history(db)[-1].direction == "stamp"
    with pytest.raises(migrate.MigrationError):
        migrate.stamp(db, 9)


def test_changed_migration_blocks_up_until_acknowledged(db, tmp_path):
    mdir, sfile = migrations_copy(tmp_path)
    migrate.up(db, to=1, migrations_dir=mdir, schema_file=sfile)
    f = mdir / "0001_initial.py"
    f.write_text(f.read_text() + "\n# edited after it ran\n")
    st = migrate.status(db, migrations_dir=mdir, schema_file=sfile)
    assert [c.version for c in st.changed] == [1]
    assert migrate.plan(db, migrations_dir=mdir, schema_file=sfile).blocked
    assert not migrate.check(db, migrations_dir=mdir, schema_file=sfile).ok
    with pytest.raises(migrate.ChecksumMismatch, match="migrate ack 1"):
        migrate.up(db, migrations_dir=mdir, schema_file=sfile)
    assert schema.db_version(db) == 1 and migrate.holder(db) is None
    acked = migrate.acknowledge(db, migrations_dir=mdir, schema_file=sfile)
    assert [c.version for c in acked] == [1]
    res = migrate.up(db, migrations_dir=mdir, schema_file=sfile)
    assert res.ok and res.final_version == HEAD
    # CRLF line endings are not a change
    f.write_bytes(f.read_bytes().replace(b"\n", b"\r\n"))
    assert migrate.status(db, migrations_dir=mdir, schema_file=sfile).changed == []


def test_status_reports_everything(db, tmp_path):
    load_legacy(db, legacy_documents(tmp_path))
    st = migrate.status(db)
    assert (st.db_version, st.code_version, st.empty) == (0, HEAD, False)
    assert [p.version for p in st.pending] == list(range(1, HEAD + 1))
    assert st.lock is None and st.lock_text == "nobody"
    assert st.drift_summary.get("missing_collection") and st.drift_summary.get("missing_index")
    assert not st.current


def test_schema_and_migrations_must_agree(db, tmp_path):
    mdir, sfile = migrations_copy(tmp_path)
    (mdir / f"{NEXT}_more.py").write_text('description = "x"\ndef up(db):\n    pass\n')
    with pytest.raises(migrate.MigrationError, match=f"schema_version {HEAD} but the highest migration is {NEXT}"):
        migrate.up(db, migrations_dir=mdir, schema_file=sfile)


def test_backfill_resumes_after_an_interruption(db, tmp_path):
    from spine_docs.migrate import ops

    docs = legacy_documents(tmp_path, n_extra=40)
    load_legacy(db, docs)
    flt = {"spine_version_key": {"$exists": False}}
    seen = []

    def interrupted(doc):
        if len(seen) == 12:
            raise KeyboardInterrupt
        seen.append(doc["_id"])
        return {"$set": {"spine_version_key": semver_key(doc.get("spine_version"))}}

    with pytest.raises(KeyboardInterrupt), writing(db):
        ops.backfill(db, "files", flt, interrupted, batch_size=5)
    left = db.files.count_documents(flt)
    assert 0 < left < len(docs) - 1
    assert left == len(docs) - 1 - 10        # two whole batches of 5 went in before the interruption
    with writing(db):
        n = ops.backfill(db, "files", flt,
                         lambda d: {"$set": {"spine_version_key": semver_key(d.get("spine_version"))}}, batch_size=5)
    assert n == left and db.files.count_documents(flt) == 0
    with writing(db):
        assert ops.backfill(db, "files", flt, lambda d: {"$set": {"x": 1}}, batch_size=5) == 0


def test_pid_in_history_is_ours(db, tmp_path):
    migrate.up(db)
    assert {h.pid for h in migrate.history(db)} == {os.getpid()}


INTERRUPTIBLE = '''"""Tag every file, in batches; the first run is interrupted half-way."""
from pathlib import Path
from spine_docs.migrate import ops

description = "tag files (interrupted once)"
FLAG = Path(__file__).with_name("interrupt.flag")


def up(db):
    seen = []

    def tag(doc):
        if FLAG.exists() and len(seen) == 7:
            FLAG.unlink()
            raise KeyboardInterrupt
        seen.append(doc["_id"])
        return {"$set": {"tagged": True}}

    ops.backfill(db, "files", {"tagged": {"$exists": False}}, tag, batch_size=3)
'''


def test_interrupted_step_is_recorded_and_resumed(kind, db, tmp_path):
    mdir, sfile = migrations_copy(tmp_path, {f"{NEXT}_tag.py": INTERRUPTIBLE})
    (mdir / "interrupt.flag").write_text("")
    docs = legacy_documents(tmp_path, n_extra=15)
    load_legacy(db, docs)
    with pytest.raises(KeyboardInterrupt):
        migrate.up(db, migrations_dir=mdir, schema_file=sfile, backup_root=tmp_path / "b")
    db = reopen(kind, db, tmp_path)
    assert schema.db_version(db) == HEAD and migrate.holder(db) is None
    last = migrate.history(db)[-1]
    assert (last.version, last.state) == (HEAD + 1, "interrupted") and "again to resume" in last.error
    assert db.files.count_documents({"tagged": True}) == 6             # two whole batches went in
    res = migrate.up(db, migrations_dir=mdir, schema_file=sfile, backup_root=tmp_path / "b")
    assert res.ok and res.final_version == HEAD + 1
    assert db.files.count_documents({"tagged": True}) == len(docs)
