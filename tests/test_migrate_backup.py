"""Backups: mongodump layout, verification, restore round trip, --keep rotation, mongodump path."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import bson
import pytest

from spine_docs import migrate, resources, schema, store
from spine_docs.migrate import backups as bk

from test_migrate_helpers import (BACKENDS, HEAD, NEXT, db, dump, kind, legacy_documents, load_legacy, open_backend,
                                  reopen)


@pytest.fixture()
def catalog(db, tmp_path):
    load_legacy(db, legacy_documents(tmp_path, n_extra=20))
    migrate.up(db, backup=False)
    return db


def test_backup_layout_manifest_and_verify(catalog, tmp_path):
    res = migrate.backup(catalog, out=tmp_path / "b")
    assert res.verified and res.method == "builtin"
    assert res.path.parent == tmp_path / "b" and res.path.name.startswith(catalog.name + "_")
    d = res.path / catalog.name
    # mongodump's layout: <db>/<coll>.bson + <coll>.metadata.json, readable by plain bson
    for name in ("files", "runs", "meta", "saved_queries", "changelog"):
        assert (d / f"{name}.bson").is_file() and (d / f"{name}.metadata.json").is_file()
    docs = list(bson.decode_file_iter(open(d / "files.bson", "rb")))
    assert len(docs) == catalog.files.count_documents({}) == res.collections["files"]["count"]
    meta = json.loads((d / "files.metadata.json").read_text())
    assert {i["name"] for i in meta["indexes"]} >= {"_id_", "path_1_site_1", "attrs.$**_1"}
    assert meta["options"]["validationAction"] == "warn"
    manifest = json.loads((res.path / "manifest.json").read_text())
    assert manifest["verified"] and manifest["schema_version"] == HEAD
    assert bk.verify(res.path).ok
    assert migrate.holder(catalog) is None
    # the backup was taken under the lock; restoring it never brings that lock back
    assert any(m.get("_id") == "migration_lock" for m in bson.decode_file_iter(open(d / "meta.bson", "rb")))
    migrate.restore(catalog, res.path)
    assert migrate.holder(catalog) is None


def test_verify_detects_corruption(catalog, tmp_path):
    res = migrate.backup(catalog, out=tmp_path / "b")
    f = res.path / catalog.name / "files.bson"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0xFF
    f.write_bytes(bytes(data))
    v = bk.verify(res.path)
    assert not v.ok and any("files" in p for p in v.problems)
    (res.path / "manifest.json").unlink()
    assert not bk.verify(res.path).ok


def test_backup_restore_round_trip(kind, catalog, tmp_path):
    before = dump(catalog, tmp_path / "d0")
    res = migrate.backup(catalog, out=tmp_path / "b")
    with schema.writing(catalog):
        catalog.files.delete_many({"spine_version": None})
        catalog.files.update_many({}, {"$set": {"model": "x"}})
        catalog.files.drop_index("model_1")
        catalog.files.create_index([("model", 1)], unique=False, sparse=True)
        catalog.runs.drop()
        catalog.newcoll.insert_one({"a": 1})
    assert dump(catalog, tmp_path / "d1") != before
    out = migrate.restore(catalog, res.path)
    assert "newcoll" in out.dropped and "files" in out.restored
    catalog = reopen(kind, catalog, tmp_path)
    assert dump(catalog, tmp_path / "d2") == before
    assert migrate.check(catalog).ok
    assert migrate.history(catalog)[-1].direction == "restore"   # the changelog is kept, plus an entry


def test_restore_of_a_bad_backup_changes_nothing(catalog, tmp_path):
    res = migrate.backup(catalog, out=tmp_path / "b")
    with schema.writing(catalog):
        catalog.extra.insert_one({"keep": "me"})
    before = dump(catalog, tmp_path / "d0")
    (res.path / catalog.name / "runs.bson").write_bytes(b"garbage")
    with pytest.raises(bk.RestoreError) as exc:
        migrate.restore(catalog, res.path)
    assert exc.value.changed is False and "nothing was changed" in str(exc.value)
    assert str(res.path) in exc.value.manual_command
    assert dump(catalog, tmp_path / "d1") == before
    assert migrate.holder(catalog) is None


def test_restore_failing_midway_drops_nothing_and_gives_manual_command(kind, catalog, tmp_path, monkeypatch):
    res = migrate.backup(catalog, out=tmp_path / "b")
    with schema.writing(catalog):
        catalog.created_later.insert_one({"a": 1})
    before = dump(catalog, tmp_path / "d0", skip=())

    def flaky(db, docs, metadata):  # meta, between files and runs: a failure midway
        raise OSError("disk full")

    monkeypatch.setattr(bk, "_restore_meta", flaky)
    with pytest.raises(bk.RestoreError) as exc:
        migrate.restore(catalog, res.path)
    assert "disk full" in str(exc.value)
    assert "migrate restore --from" in exc.value.manual_command
    assert "created_later" in catalog.list_collection_names()      # nothing dropped after the failure
    if kind == "embedded":  # restored at the file level: the commit never came, the files are as they were
        assert exc.value.changed is False and "nothing was changed" in str(exc.value)
        assert dump(reopen(kind, catalog, tmp_path), tmp_path / "d1", skip=()) == before
    else:
        assert exc.value.changed is True


def test_failed_restore_during_up_reports_manual_command(catalog, tmp_path, monkeypatch):
    from test_migrate_helpers import migrations_copy
    mdir, sfile = migrations_copy(tmp_path, {f"{NEXT}_fail.py": 'description = "x"\ndef up(db):\n    db.files.delete_many({})\n    raise ValueError("bad")\n'})
    monkeypatch.setattr(bk, "_replace_collection", lambda *a: (_ for _ in ()).throw(OSError("no space")))
    r = migrate.up(catalog, migrations_dir=mdir, schema_file=sfile, backup_root=tmp_path / "b")
    assert not r.ok and r.restore_error and "no space" in r.restore_error
    assert "RESTORE FAILED" in r.message and r.manual_restore in r.message
    assert r.backup.path.is_dir() and bk.verify(r.backup.path).ok       # the backup is intact


def test_keep_rotation_never_deletes_newest_good(catalog, tmp_path):
    root = tmp_path / "b"
    made = [migrate.backup(catalog, out=root).path for _ in range(4)]
    assert len({p.name for p in made}) == 4
    deleted = bk.rotate(root, 2)
    assert sorted(deleted) == sorted(made[:2])
    assert sorted(p.name for p in root.iterdir()) == sorted(p.name for p in made[2:])
    # the newest is broken (no manifest): keep=1 keeps it AND the newest good one
    (made[3] / "manifest.json").unlink()
    deleted = bk.rotate(root, 1)
    assert deleted == []
    newest = migrate.backup(catalog, out=root, keep=1)
    assert newest.path.is_dir() and sorted(newest.rotated) == sorted([made[2], made[3]])
    # a directory that is not a backup is never touched
    (root / "notes").mkdir()
    bk.rotate(root, 1)
    assert (root / "notes").is_dir()
    with pytest.raises(bk.BackupError):
        bk.rotate(root, 0)


def test_up_with_keep_rotates(catalog, tmp_path):
    root = tmp_path / "b"
    old = [migrate.backup(catalog, out=root).path for _ in range(3)]
    with schema.writing(catalog):
        schema.stamp_version(catalog, 1)
    r = migrate.up(catalog, backup_root=root, keep=2)
    assert r.ok and r.backup.path.is_dir()
    assert sorted(p.name for p in root.iterdir()) == sorted([old[-1].name, r.backup.path.name])


def test_list_backups(catalog, tmp_path):
    root = tmp_path / "b"
    a = migrate.backup(catalog, out=root)
    b = migrate.backup(catalog, out=root)
    infos = bk.list_backups(root)
    assert [i.path for i in infos] == [b.path, a.path] and all(i.good for i in infos)
    assert infos[0].documents == b.documents


def test_manual_restore_command_hides_password(tmp_path):
    cmd = bk.manual_restore_command(tmp_path / "x", "mongodb://u:pw@h/db", "db")
    assert cmd.startswith("mongorestore --config=") and "pw" not in cmd and "--drop" in cmd
    assert "--nsExclude=db.changelog" in cmd and cmd.endswith("then spine-docs migrate unlock --force --db 'mongodb://u:****@h/db'")
    assert bk.manual_restore_command(tmp_path / "x", "/srv/cat").startswith("spine-docs migrate restore --from")


# (what mongodump and mongorestore receive is tested in test_backup_tools.py, with fakes on PATH)


# --------------------------------------------------------------------------- restore: damaged catalogs, new places

def _embedded_catalog(tmp_path):
    db = open_backend("embedded", tmp_path)
    load_legacy(db, legacy_documents(tmp_path, n_extra=20))
    migrate.up(db, backup=False)
    return db, tmp_path / "catalog"


def _truncate(path: Path, size: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:size])


def _history_names(db) -> list[str]:
    return [e["name"] for e in db[schema.CHANGELOG].find().sort([("started", 1), ("_id", 1)])]


def _changelog_index_names() -> set[str]:
    """schema.json's changelog indexes, named as pymongo names them ({a: 1, b: -1} -> a_1_b_-1)."""
    spec = json.loads(resources.schema_file().read_text())
    return {"_".join(f"{k}_{v}" for k, v in ix["key"].items()) for ix in spec["collections"]["changelog"]["indexes"]}


def test_restore_of_a_catalog_that_does_not_load(tmp_path):
    db, root = _embedded_catalog(tmp_path)
    res = migrate.backup(db, out=tmp_path / "b")
    before = dump(db, tmp_path / "d0")
    with schema.writing(db):
        db.created_later.insert_one({"a": 1})
        db.files.update_many({}, {"$set": {"model": "changed since"}})
        db[schema.CHANGELOG].insert_one({"name": "after the backup", "started": schema.now(),
                                         "version": HEAD, "direction": "note", "state": "applied"})
    history = _history_names(db)
    store.close(db)
    _truncate(root / "spine_docs" / "files.bson")
    with pytest.raises(store.StoreError, match="cannot load collection 'files'"):
        store.connect(root)
    out = migrate.restore_url(str(root), res.path)
    assert "created_later" in out.dropped and "files" in out.restored
    assert any("did not load" in w and "files" in w for w in out.warnings)
    fresh = store.connect(root, create=False)
    assert dump(fresh, tmp_path / "d1") == before
    assert _history_names(fresh) == history + [f"restore {res.path.name}"]   # the catalog's history, kept
    assert migrate.check(fresh).ok and migrate.holder(fresh) is None
    d = root / "spine_docs"
    assert not [p.name for p in d.iterdir() if p.name.endswith(".part") or p.name == ".commit.json"]
    assert sorted(p.name for p in d.glob("*.bson")) == sorted(f"{n}.bson" for n in fresh.list_collection_names())


def test_restore_when_the_changelog_is_damaged_takes_the_backups_and_says_so(tmp_path):
    db, root = _embedded_catalog(tmp_path)
    res = migrate.backup(db, out=tmp_path / "b")
    backup_history = _history_names(db)
    with schema.writing(db):
        db[schema.CHANGELOG].insert_one({"name": "lost with the damage", "started": schema.now()})
    store.close(db)
    _truncate(root / "spine_docs" / "changelog.bson", 10)
    out = migrate.restore_url(str(root), res.path)
    assert any("migration history could not be read" in w and "backup's" in w for w in out.warnings)
    fresh = store.connect(root, create=False)
    assert _history_names(fresh) == backup_history + [f"restore {res.path.name}"]
    assert migrate.check(fresh).ok


def test_restore_keeps_the_catalogs_lock_document_not_the_backups(tmp_path):
    db, root = _embedded_catalog(tmp_path)
    lock = migrate.acquire(db, command="migrate up")          # the backup holds this lock document
    res = bk.backup(db, tmp_path / "b")
    lock.release()
    theirs = {"_id": "migration_lock", "token": "t", "user": "someone", "host": "elsewhere", "pid": 1,
              "command": "migrate up", "acquired": schema.now(), "expires": schema.now()}
    with schema.writing(db):
        db[schema.META].insert_one(theirs)
    store.close(db)
    _truncate(root / "spine_docs" / "files.bson")
    migrate.restore_url(str(root), res.path)
    fresh = store.connect(root, create=False)
    assert migrate.holder(fresh)["token"] == "t"


@pytest.mark.parametrize("target", ["missing", "empty directory", "empty mongomock"])
def test_restore_into_a_new_place_passes_check(catalog, tmp_path, target):
    res = migrate.backup(catalog, out=tmp_path / "b")
    backup_history = _history_names(catalog)
    before = dump(catalog, tmp_path / "d0")
    if target == "empty mongomock":
        new = store.connect("mongomock://")
        migrate.restore(new, res.path)
    else:
        where = tmp_path / "new"
        if target == "empty directory":
            where.mkdir()
        out = migrate.restore_url(str(where), res.path)
        assert out.warnings == []  # no catalog there: nothing to warn about
        new = store.connect(where, create=False)
    assert dump(new, tmp_path / "d1") == before
    assert migrate.check(new).ok, migrate.check(new).problems
    assert {ix["name"] for ix in new[schema.CHANGELOG].list_indexes()} >= _changelog_index_names()
    restored_entry = f"restore {res.path.name}"
    if target == "empty mongomock":  # restored in the database: the history is its own (none yet)
        assert _history_names(new) == [restored_entry]
    else:  # restored at the file level: the backup's history comes along
        assert _history_names(new) == backup_history + [restored_entry]


def test_a_failing_migrate_restore_names_another_way_that_works(tmp_path, monkeypatch, capsys):
    from spine_docs import cli

    db, root = _embedded_catalog(tmp_path)
    res = migrate.backup(db, out=tmp_path / "b")
    before = dump(db, tmp_path / "d0")
    store.close(db)

    def flaky(db, docs, metadata):  # meta, between files and runs: a failure midway
        raise OSError("disk full")

    monkeypatch.setattr(bk, "_restore_meta", flaky)
    with pytest.raises(SystemExit) as info:
        cli.main(["migrate", "restore", "--from", str(res.path), "--db", str(root)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert "disk full" in err and "nothing was changed" in err
    hint = err.split("restore by hand with: ")[1].strip()
    assert f"--db {root}" not in hint      # not the very command that just failed
    assert hint == (f"spine-docs migrate restore --from {res.path} --db NEWDIR (a new directory), "
                    "then use NEWDIR as the catalog")
    monkeypatch.undo()
    elsewhere = tmp_path / "NEWDIR"       # and the hint works
    with pytest.raises(SystemExit) as info:
        cli.main(["migrate", "restore", "--from", str(res.path), "--db", str(elsewhere)])
    assert info.value.code == 0, capsys.readouterr().err
    assert dump(store.connect(elsewhere, create=False), tmp_path / "d1") == before
