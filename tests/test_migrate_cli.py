"""`spine-docs migrate ...` through Typer's CliRunner, on an embedded catalog."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from spine_docs import schema, store
from spine_docs.cli import app

from test_migrate_helpers import HEAD, NEXT, legacy_documents, load_legacy, migrations_copy


@pytest.fixture()
def cat(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                      # backups go to ./.spine_docs/backups
    for k in ("SPINE_DOCS_DB", "SPINE_DOCS_HOME", "SPINE_DOCS_SCHEMA_FILE", "SPINE_DOCS_MIGRATIONS_DIR"):
        monkeypatch.delenv(k, raising=False)
    path = tmp_path / "catalog"
    db = store.connect(str(path))
    load_legacy(db, legacy_documents(tmp_path))
    return str(path)


def run(*args):
    res = CliRunner().invoke(app, ["migrate", *args])
    return res.exit_code, res.stdout, res.stderr


def test_status_check_plan_up_history(cat, tmp_path):
    code, out, _ = run("status", "--db", cat)
    assert code == 0
    assert f"database 0, code {HEAD}" in out and "0001_initial" in out and "lock:      nobody" in out

    code, _, err = run("check", "--db", cat)
    assert code == 1 and "spine-docs migrate up" in err

    before = sorted((p.name, p.read_bytes()) for p in (tmp_path / "catalog").rglob("*") if p.is_file())
    code, out, _ = run("plan", "--db", cat)
    assert code == 0
    assert f"plan: up 0 -> {HEAD}" in out and '"createIndexes": "files"' in out and '"bulkWrite": "files"' in out
    code, out2, _ = run("up", "--dry-run", "--db", cat)
    assert code == 0 and out2 == out
    after = sorted((p.name, p.read_bytes()) for p in (tmp_path / "catalog").rglob("*") if p.is_file())
    assert after == before and not (tmp_path / ".spine_docs").exists()

    code, out, err = run("up", "--db", cat)
    assert code == 0, err
    assert "0001_initial: applied" in out and f"up 0 -> {HEAD}" in out
    assert len(list((tmp_path / ".spine_docs" / "backups").iterdir())) == 1

    code, out, _ = run("check", "--db", cat)
    assert code == 0 and out.startswith("ok:")
    code, out, _ = run("history", "--db", cat)
    assert code == 0 and "0002_backfill_spine_version_key" in out and "applied" in out
    code, out, _ = run("up", "--db", cat)
    assert code == 0 and "nothing to do" in out


def test_failing_migration_exits_1_and_says_restored(cat, tmp_path):
    mdir, sfile = migrations_copy(tmp_path, {f"{NEXT}_fail.py": 'description = "x"\ndef up(db):\n    raise ValueError("no")\n'})
    code, out, err = run("up", "--db", cat, "--migrations-dir", str(mdir), "--schema-file", str(sfile))
    assert code == 1
    assert f"{NEXT}_fail failed: ValueError: no" in err and "restored from" in err
    db = store.connect(cat)
    assert schema.db_version(db) == 0


def test_lock_busy_exits_2_naming_holder(cat):
    db = store.connect(cat)
    with schema.writing(db):
        db.meta.insert_one({"_id": "migration_lock", "token": "t", "user": "eve", "host": "far", "pid": 7,
                            "command": "migrate up", "acquired": schema.now(),
                            "expires": schema.now().replace(year=2999)})
    code, _, err = run("up", "--db", cat, "--lock-wait", "0")
    assert code == 2 and "eve@far pid 7" in err
    code, _, err = run("unlock", "--db", cat)
    assert code == 2 and "--force" in err
    code, out, _ = run("unlock", "--db", cat, "--force")
    assert code == 0 and "eve@far" in out


def test_backup_restore_keep_commands(cat, tmp_path):
    out_dir = tmp_path / "bk"
    for _ in range(3):
        code, out, err = run("backup", "--db", cat, "--out", str(out_dir), "--keep", "2")
        assert code == 0, err
    assert len(list(out_dir.iterdir())) == 2
    newest = sorted(out_dir.iterdir())[-1]
    db = store.connect(cat)
    with schema.writing(db):
        db.files.delete_many({})
    code, out, _ = run("restore", "--db", cat, "--from", str(newest))
    assert code == 0 and "restored" in out
    assert store.connect(cat).files.count_documents({}) == 5
    code, _, err = run("restore", "--db", cat, "--from", str(tmp_path / "missing"))
    assert code == 2 and "nothing was changed" in err


def test_stamp_down_ack_new(cat, tmp_path):
    mdir, sfile = migrations_copy(tmp_path)
    common = ["--db", cat, "--migrations-dir", str(mdir), "--schema-file", str(sfile)]
    assert run("up", *common)[0] == 0
    code, out, _ = run("down", "--to", "1", *common)
    assert code == 0 and f"down {HEAD} -> 1" in out
    code, out, _ = run("stamp", str(HEAD), *common)
    assert code == 0 and f"stamped version {HEAD} (was 1)" in out
    f = mdir / "0002_backfill_spine_version_key.py"
    f.write_text(f.read_text() + "# edit\n")
    code, _, err = run("check", *common)
    assert code == 1 and "changed" in err
    code, out, _ = run("ack", *common)
    assert code == 0 and "acknowledged 0002" in out
    assert run("check", *common)[0] == 1            # stamped at HEAD but down dropped indexes
    assert run("up", *common)[0] == 0               # reconcile puts it back
    assert run("check", *common)[0] == 0
    code, out, _ = run("new", "add thing", "--migrations-dir", str(mdir), "--schema-file", str(sfile))
    assert code == 0 and f"{NEXT}_add_thing.py" in out and (mdir / f"{NEXT}_add_thing.py").is_file()


def test_inject_refuses_a_mismatched_database_with_the_fixing_command(cat, tmp_path):
    db = store.connect(cat)
    with schema.writing(db):
        schema.stamp_version(db, 1)
    res = CliRunner().invoke(app, ["inject", "--db", cat, "--source", str(tmp_path / "h5")])
    assert res.exit_code == 2
    assert f"database schema version 1, this spine-docs needs {HEAD}: run `spine-docs migrate up" in res.stderr


def _dead_holder_lock(cat):
    """A lock of a process of this host that is gone (its lease still running)."""
    import socket
    import subprocess
    import sys
    from datetime import timedelta

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    db = store.connect(cat)
    with schema.writing(db):
        db.meta.replace_one({"_id": "migration_lock"}, {
            "_id": "migration_lock", "token": "gone", "user": "carol", "host": socket.gethostname(),
            "pid": p.pid, "command": "migrate up", "acquired": schema.now(),
            "expires": schema.now() + timedelta(hours=1)}, upsert=True)


@pytest.mark.parametrize("command", ["up", "stamp", "ack", "backup", "restore"])
def test_every_locking_command_warns_when_it_takes_over_a_dead_holders_lock(cat, tmp_path, command):
    code, out, err = run("backup", "--db", cat, "--out", str(tmp_path / "bk"))
    assert code == 0, err
    (backup_dir,) = (tmp_path / "bk").iterdir()
    _dead_holder_lock(cat)
    args = {"up": ["up", "--no-backup"], "stamp": ["stamp", "1"], "ack": ["ack"],
            "backup": ["backup", "--out", str(tmp_path / "bk2")],
            "restore": ["restore", "--from", str(backup_dir)]}[command]
    code, out, err = run(*args, "--db", cat)
    assert code == 0, err
    assert "warning: took over a stale migration lock (dead pid) from carol@" in err
    assert store.connect(cat).meta.find_one({"_id": "migration_lock"}) is None  # released after
