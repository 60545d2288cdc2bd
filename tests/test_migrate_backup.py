"""Backups: mongodump layout, verification, restore round trip, --keep rotation, mongodump path."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import bson
import pytest

from spine_docs import migrate, schema
from spine_docs.migrate import backups as bk

from test_migrate_helpers import BACKENDS, HEAD, NEXT, db, dump, kind, legacy_documents, load_legacy, open_backend, reopen


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


def test_restore_failing_midway_drops_nothing_and_gives_manual_command(catalog, tmp_path, monkeypatch):
    res = migrate.backup(catalog, out=tmp_path / "b")
    with schema.writing(catalog):
        catalog.created_later.insert_one({"a": 1})
    real = bk._replace_collection

    def flaky(db, name, docs, metadata):
        if name == "meta":
            raise OSError("disk full")
        return real(db, name, docs, metadata)

    monkeypatch.setattr(bk, "_replace_collection", flaky)
    with pytest.raises(bk.RestoreError) as exc:
        migrate.restore(catalog, res.path)
    assert exc.value.changed is True and "disk full" in str(exc.value)
    assert "migrate restore --from" in exc.value.manual_command
    assert "created_later" in catalog.list_collection_names()      # nothing dropped after the failure


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


def test_mongodump_is_used_with_a_private_config_file(tmp_path, monkeypatch):
    """The URI goes to mongodump in a 0600 config file, never on the command line."""
    seen = {}
    fake = tmp_path / "bin" / "mongodump"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)

    def run(argv, **kw):
        cfg = next(a.split("=", 1)[1] for a in argv if a.startswith("--config="))
        seen["argv"] = argv
        seen["mode"] = stat.S_IMODE(os.stat(cfg).st_mode)
        seen["cfg"] = Path(cfg).read_text()
        out = Path(next(a.split("=", 1)[1] for a in argv if a.startswith("--out=")))
        (out / "spine_docs").mkdir(parents=True)
        (out / "spine_docs" / "files.bson").write_bytes(bson.encode({"_id": 1}))
        (out / "spine_docs" / "files.metadata.json").write_text("{}")

        class P:
            returncode = 0
            stdout = stderr = ""
        return P()

    monkeypatch.setattr(bk.shutil, "which", lambda name: str(fake) if name == "mongodump" else None)
    monkeypatch.setattr(bk.subprocess, "run", run)
    url = "mongodb://alice:s3cret@db.example.org/spine_docs"
    bk._mongodump(url, tmp_path / "out")
    assert not any("s3cret" in a for a in seen["argv"])
    assert seen["mode"] == 0o600 and "s3cret" in seen["cfg"] and url in seen["cfg"]
    assert not Path(next(a.split("=", 1)[1] for a in seen["argv"] if a.startswith("--config="))).exists()


def test_manual_restore_command_hides_password(tmp_path):
    cmd = bk.manual_restore_command(tmp_path / "x", "mongodb://u:pw@h/db", "db")
    assert cmd.startswith("mongorestore --uri") and "pw" not in cmd and "--drop" in cmd
    assert bk.manual_restore_command(tmp_path / "x", "/srv/cat").startswith("spine-docs migrate restore --from")
