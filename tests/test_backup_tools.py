"""Backups on a server and from cron: what mongodump and mongorestore receive (a fake of each
on PATH records its arguments, environment and config file), the server restore as sent
over the wire (MockupDB), the printed manual restore run as printed, retention, and backups
taken while other processes write."""

from __future__ import annotations

import json
import logging
import os
import shlex
import stat
import subprocess
import sys
import textwrap
import urllib.parse
import uuid
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import wire_fake  # noqa: E402

from spine_docs import access, migrate, samples, schema, store  # noqa: E402
from spine_docs.cli import app  # noqa: E402
from spine_docs.migrate import backups as bk  # noqa: E402
from spine_docs.settings import Settings  # noqa: E402
from test_access import READ_WRITE  # noqa: E402

PASSWORD = "s3cr&t pass/word:@%-never-shown"
CLI = [sys.executable, "-m", "spine_docs.cli"]

FAKE_TOOL = '''#!{python}
import json, os, shutil, stat, sys
args = sys.argv[1:]
opt = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
rec = {{"tool": os.path.basename(sys.argv[0]), "argv": sys.argv, "env": dict(os.environ),
       "flags": [a for a in args if a.startswith("--") and "=" not in a], "opt": opt}}
password = ""
if "config" in opt:
    rec["config_mode"] = stat.S_IMODE(os.stat(opt["config"]).st_mode)
    rec["config"] = open(opt["config"]).read()
    for line in rec["config"].splitlines():
        if line.startswith("password: "):
            password = json.loads(line[len("password: "):])
with open(os.environ["FAKE_TOOL_LOG"], "a") as fh:
    fh.write(json.dumps(rec) + "\\n")
code = int(os.environ.get("FAKE_TOOL_EXIT", "0"))
if code:
    sys.stderr.write("Failed: connection() : auth error with password " + password + "\\n")
    sys.exit(code)
if rec["tool"] == "mongodump":
    shutil.copytree(os.path.join(os.environ["FAKE_DUMP_FROM"], opt["db"]), os.path.join(opt["out"], opt["db"]))
'''


class Tools:
    def __init__(self, tmp_path: Path, monkeypatch):
        self.bin = tmp_path / "fakebin"
        self.bin.mkdir()
        for name in ("mongodump", "mongorestore"):
            p = self.bin / name
            p.write_text(FAKE_TOOL.format(python=sys.executable))
            p.chmod(0o755)
        self.log = tmp_path / "tools.jsonl"
        self.src = tmp_path / "dump-source"
        (self.src / "spine_docs").mkdir(parents=True)  # an empty database, as the fake server has
        monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_TOOL_LOG", str(self.log))
        monkeypatch.setenv("FAKE_DUMP_FROM", str(self.src))

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


@pytest.fixture(autouse=True)
def _clean(clean_env):
    """Every test here runs in a clean environment (conftest's ``clean_env``)."""


@pytest.fixture
def tools(tmp_path, monkeypatch):
    return Tools(tmp_path, monkeypatch)


@pytest.fixture
def fake():
    f = wire_fake.FakeServer(saslSupportedMechs=["SCRAM-SHA-256"]).start()
    yield f
    f.stop()


def secret_file(tmp_path: Path) -> Path:
    p = tmp_path / "pw"
    p.write_text(PASSWORD + "\n")
    p.chmod(0o600)
    return p


def cli(*args: str):
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def secret_forms() -> list[str]:
    return [PASSWORD, urllib.parse.quote(PASSWORD, safe=""), urllib.parse.quote_plus(PASSWORD)]


def assert_no_secret(*texts: str) -> None:
    for t in texts:
        for s in secret_forms():
            assert s not in t, t


def server_url(how: str, fake, tmp_path, monkeypatch, *, path: str = "") -> tuple[str, str]:
    """A URL for the fake server with alice's password in a file or in the URL; and the URI
    that mongodump/mongorestore must get (user, no password, no database, authSource)."""
    if how == "file":
        monkeypatch.setenv("SPINE_DOCS_USER", "alice")
        monkeypatch.setenv("SPINE_DOCS_PASSWORD_FILE", str(secret_file(tmp_path)))
        url = f"mongodb://{fake.address}{path}"
    else:
        url = f"mongodb://alice:{urllib.parse.quote(PASSWORD, safe='')}@{fake.address}{path}"
    auth_db = path.strip("/") or "admin"
    return url, f"mongodb://alice@{fake.address}/?authSource={auth_db}"


# --------------------------------------------------------------------------- the URI and config file

@pytest.mark.parametrize("url,apart,uri,password", [
    ("mongodb://h:27017", {}, "mongodb://h:27017/", None),
    ("mongodb://h1,h2/cat?replicaSet=rs", {}, "mongodb://h1,h2/?replicaSet=rs", None),
    ("mongodb://alice:s%40cret@h/spine_docs", {}, "mongodb://alice@h/?authSource=spine_docs", "s@cret"),
    ("mongodb://alice@h/?replicaSet=rs", {"password": "pw"}, "mongodb://alice@h/?replicaSet=rs&authSource=admin", "pw"),
    ("mongodb://h1,h2/cat?replicaSet=rs&authSource=admin", {"username": "bob x", "password": "pa55"},
     "mongodb://bob%20x@h1,h2/?replicaSet=rs&authSource=admin", "pa55"),
    ("mongodb+srv://alice:pw@cluster.example.org/spine_docs", {}, "mongodb+srv://alice@cluster.example.org/", "pw"),
])
def test_the_tools_get_the_uri_without_database_or_password(url, apart, uri, password):
    cfg = bk.tool_config(url, **apart)
    assert (cfg.uri, cfg.password) == (uri, password)
    want = {"uri": uri} if password is None else {"uri": uri, "password": password}
    assert yaml.safe_load(cfg.yaml()) == want
    assert password is None or password not in repr(cfg)


def test_a_password_with_quotes_and_backslashes_survives_the_yaml():
    pw = 'a"b\\c\'d: #e\n'
    assert yaml.safe_load(bk.tool_config("mongodb://u@h/", password=pw).yaml())["password"] == pw


# --------------------------------------------------------------------------- spine-docs backup with mongodump

@pytest.mark.parametrize("how", ["file", "url"])
def test_backup_gives_mongodump_one_database_and_the_password_only_in_its_config(
        how, fake, tools, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    scram = wire_fake.scram_sha256("alice", PASSWORD)
    fake.overrides.append(scram)
    # no database in the URL when the password is in a file: the default spine_docs is the catalog
    url, tool_uri = server_url(how, fake, tmp_path, monkeypatch, path="" if how == "file" else "/spine_docs")
    monkeypatch.setenv("SOME_OTHER_VARIABLE", f"x{PASSWORD}x")
    out = tmp_path / "backups"
    code, stdout, stderr = cli("backup", "--db", url, "--out", str(out))
    assert code == 0, stderr
    assert "(mongodump, 0 documents in 0 collections, verified)" in stdout
    assert scram.verified and set(scram.verified) == {"alice"}
    [rec] = tools.records()
    [made] = [p for p in out.iterdir()]
    cfg = rec["opt"]["config"]
    assert rec["tool"] == "mongodump"
    assert rec["argv"][1:] == [f"--config={cfg}", "--db=spine_docs", f"--out={made}"]  # one database, no --oplog
    assert rec["config_mode"] == 0o600
    assert yaml.safe_load(rec["config"]) == {"uri": tool_uri, "password": PASSWORD}
    assert not Path(cfg).exists()                                    # removed afterwards
    assert_no_secret(*rec["argv"], *rec["env"].values(), stdout, stderr,
                     *(r.getMessage() for r in caplog.records))
    assert not [k for k in rec["env"] if k.startswith("SPINE_DOCS_")]
    assert json.loads((made / bk.MANIFEST).read_text())["method"] == "mongodump"


def test_a_failing_mongodump_is_one_line_without_the_password(fake, tools, tmp_path, monkeypatch):
    fake.overrides.append(wire_fake.scram_sha256("alice", PASSWORD))
    url, _ = server_url("file", fake, tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_TOOL_EXIT", "1")
    out = tmp_path / "backups"
    code, stdout, stderr = cli("backup", "--db", url, "--out", str(out))
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert "mongodump failed (exit 1): Failed: connection() : auth error with password ****" in stderr
    assert_no_secret(stdout, stderr)
    assert list(out.iterdir()) == []                                  # the partial backup is gone


# --------------------------------------------------------------------------- the server restore, on the wire

def _backup_of_a_small_catalog(tmp_path: Path) -> Path:
    db = store.connect(f"mongomock://src-{uuid.uuid4().hex}/spine_docs")
    schema.setup(db, schema.load_schema())
    db.files.insert_many([{"_id": f"f{i}", "path": f"/x/{i}.h5"} for i in range(3)])
    db.saved_queries.insert_one({"_id": "q", "filter": {}})
    db[schema.META].insert_one({"_id": schema.LOCK_DOC_ID, "token": "held when the backup was taken"})
    return bk.backup(db, tmp_path / "b").path


#: the action each command needs (MongoDB's privilege actions)
ACTIONS = {"insert": {"insert"}, "delete": {"remove"}, "update": {"update"}, "find": {"find"},
           "aggregate": {"find"}, "count": {"find"}, "create": {"createCollection"},
           "drop": {"dropCollection"}, "createIndexes": {"createIndex"}, "dropIndexes": {"dropIndex"},
           "collMod": {"collMod"}, "listCollections": {"listCollections"}, "listIndexes": {"listIndexes"},
           "renameCollection": {"renameCollectionSameDB"}, "findAndModify": {"find", "update", "insert"}}
IGNORED = {"ping", "endSessions", "saslStart", "saslContinue", "buildInfo", "buildinfo", "killCursors"}


def _admin_actions() -> set[str]:
    return {a for cmd in access.role_commands("spine_docs") for p in cmd["privileges"] for a in p["actions"]}


def test_the_server_restore_needs_read_write_and_collmod_and_never_moves_the_lock(fake, tmp_path):
    path = _backup_of_a_small_catalog(tmp_path)
    db = store.connect(f"mongodb://{fake.address}/spine_docs")
    res = bk.restore(db, path)
    assert set(res.restored) == {"file_versions", "files", "files_archive", "meta", "runs", "saved_queries"}
    sent = [(name, doc) for name, doc in fake.requests if name not in IGNORED]
    needed = set()
    for name, doc in sent:
        needed |= ACTIONS[name] | ({"dropCollection"} if name == "renameCollection" and doc.get("dropTarget") else set())
        assert not doc.get("bypassDocumentValidation"), (name, doc)
    assert needed <= _admin_actions() | READ_WRITE and needed <= READ_WRITE | {"collMod"}
    # meta: never dropped, renamed or recreated; deletes spare the lock; inserts never carry one
    meta_ns = "spine_docs.meta"
    assert not [d for n, d in sent if n == "drop" and d["drop"] == "meta"]
    assert not [d for n, d in sent if n == "renameCollection" and meta_ns in (d["renameCollection"], d["to"])]
    deletes = [d for n, d in sent if n == "delete" and d["delete"] == "meta"]
    assert deletes and all(q["q"] == {"_id": {"$ne": schema.LOCK_DOC_ID}} for d in deletes for q in d["deletes"])
    meta_inserts = [x for n, d in sent if n == "insert" and d["insert"] == "meta" for x in d["documents"]]
    assert [x["_id"] for x in meta_inserts] == ["schema"]
    assert not [d for n, d in sent if n in ("update", "findAndModify") and d.get(n) == "meta"]
    # files: loaded without its validator, validated by collMod, then renamed over the live one
    order = [(n, d.get(n)) for n, d in sent]
    create = next(d for n, d in sent if n == "create" and d["create"] == "files__spine_docs_restore")
    assert "validator" not in create
    coll_mod = next(d for n, d in sent if n == "collMod" and d["collMod"] == "files__spine_docs_restore")
    assert coll_mod["validationAction"] == "warn" and coll_mod["validator"]
    assert order.index(("collMod", "files__spine_docs_restore")) < order.index(
        ("renameCollection", "spine_docs.files__spine_docs_restore"))


def _check_lock_around(monkeypatch, db, seen: list[str]) -> None:
    """Wrap every step of a restore so that the lock document is looked for before and after."""
    def present(where: str) -> None:
        seen.append(where)
        assert db[schema.META].find_one({"_id": schema.LOCK_DOC_ID}), f"lock document missing {where}"

    def around(name, fn):
        def wrapped(*a, **kw):
            present(f"before {name}")
            out = fn(*a, **kw)
            present(f"after {name}")
            return out
        return wrapped

    monkeypatch.setattr(bk.sch, "execute", around("execute", bk.sch.execute))
    monkeypatch.setattr(bk, "_replace_collection", around("_replace_collection", bk._replace_collection))
    monkeypatch.setattr(bk, "_read_docs", around("_read_docs", bk._read_docs))
    coll = type(db[schema.META])
    for method in ("insert_many", "delete_many"):
        monkeypatch.setattr(coll, method, around(method, getattr(coll, method)))


@pytest.mark.parametrize("kind", ["mongomock", "embedded"])
def test_the_lock_document_is_there_at_every_step_of_an_automatic_restore(kind, tmp_path, monkeypatch):
    from test_migrate_helpers import migrations_copy, NEXT, open_backend

    db = open_backend(kind, tmp_path)
    migrate.up(db, backup=False)
    with schema.writing(db):
        db.files.insert_many([{"_id": f"f{i}", "path": f"/x/{i}.h5", "site": "s"} for i in range(5)])
    mdir, sfile = migrations_copy(tmp_path, {f"{NEXT}_fail.py":
                                             'description = "x"\ndef up(db):\n    db.files.delete_many({})\n'
                                             '    raise ValueError("bad")\n'})
    seen: list[str] = []
    real_restore = bk.restore

    def observed(db_, *a, **kw):
        _check_lock_around(monkeypatch, db_, seen)
        return real_restore(db_, *a, **kw)

    monkeypatch.setattr(bk, "restore", observed)
    r = migrate.up(db, migrations_dir=mdir, schema_file=sfile, backup_root=tmp_path / "b")
    assert not r.ok and r.restored is not None and r.restore_error is None
    assert "before insert_many" in seen and "after delete_many" in seen and len(seen) > 10
    assert db.files.count_documents({}) == 5 and migrate.holder(db) is None


# --------------------------------------------------------------------------- the manual restore, as printed

@pytest.mark.parametrize("how", ["file", "url"])
def test_the_printed_manual_restore_runs_as_printed_and_spares_the_changelog(how, fake, tools, tmp_path,
                                                                              monkeypatch):
    fake.overrides.append(wire_fake.scram_sha256("alice", PASSWORD))
    path = _backup_of_a_small_catalog(tmp_path)
    url, tool_uri = server_url(how, fake, tmp_path, monkeypatch, path="" if how == "file" else "/spine_docs")
    db = access.connect(Settings.load(db=url))

    def refuse_rename(request):
        if request.command_name == "renameCollection":
            return request.replies({"ok": 0, "code": 11600, "errmsg": "interrupted at shutdown"})
    fake.overrides.append(refuse_rename)
    with pytest.raises(bk.RestoreError) as info:
        migrate.restore(db, path, db_url=url)
    cmd = info.value.manual_command
    assert_no_secret(cmd, str(info.value))
    restore_part, then = cmd.split(", then ")
    assert then == f"spine-docs migrate unlock --force --db {shlex.quote(schema.display_url(url))}"
    r = subprocess.run(shlex.split(restore_part), capture_output=True, text=True)   # as printed
    assert r.returncode == 0, r.stderr
    [rec] = tools.records()
    assert rec["tool"] == "mongorestore"
    assert rec["opt"] == {"config": str(path / "mongorestore.yaml"), "nsInclude": "spine_docs.*",
                          "nsExclude": "spine_docs.changelog", "dir": str(path)}
    assert rec["flags"] == ["--drop"]
    assert rec["config_mode"] == 0o600
    assert yaml.safe_load(rec["config"]) == {"uri": tool_uri, "password": PASSWORD}
    assert bk.verify(path).ok                              # the config file does not spoil the backup


def test_a_restore_into_another_database_renames_the_namespaces(tmp_path):
    cmd = bk.manual_restore_command(tmp_path / "b", "mongodb://h/drill", "drill", source_db="spine_docs")
    assert "--nsInclude='spine_docs.*' --nsExclude=spine_docs.changelog --nsFrom='spine_docs.*' " \
           "--nsTo='drill.*' --drop" in cmd


# --------------------------------------------------------------------------- retention

def test_keep_keeps_the_newest_n_and_never_deletes_what_it_did_not_make(tmp_path):
    db = store.connect(f"mongomock://keep-{uuid.uuid4().hex}/spine_docs")
    schema.setup(db, schema.load_schema())
    root = tmp_path / "b"
    foreign = [root / "spine_docs_20000101_000000",     # a backup's name, someone else's content
               root / "spine_docs_20000101_000001",     # a backup's name, an empty directory made by hand
               root / "photos", root / "spine_docs_19990101_000000"]
    foreign[0].mkdir(parents=True)
    (foreign[0] / "notes.txt").write_text("mine")
    foreign[1].mkdir()
    (foreign[1] / "spine_docs").mkdir()
    (foreign[1] / "spine_docs" / "README").write_text("mine too")
    foreign[2].mkdir()
    foreign[3].write_text("a file")
    killed = root / "spine_docs_20000102_000000"        # one of ours, killed before its manifest
    (killed / "spine_docs").mkdir(parents=True)
    (killed / "spine_docs" / "files.bson").write_bytes(b"")
    made = [bk.backup(db, root).path for _ in range(4)]
    last = bk.backup(db, root, keep=2)
    assert sorted(last.rotated) == sorted([killed, *made[:3]])
    assert sorted(p for p in root.iterdir()) == sorted([*foreign, made[3], last.path])


# --------------------------------------------------------------------------- cron: backups while others write

def _setup_catalog(tmp_path: Path) -> Path:
    catalog = tmp_path / "catalog"
    r = subprocess.run(CLI + ["setup", "--db", str(catalog)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return catalog


def _runs_of_files_exist(db) -> None:
    """In one committed state, every file's run is in ``runs`` (inject saves the run first)."""
    run_ids = {r["_id"] for r in db.runs.find({}, {"_id": 1})}
    missing = {f["ingest"]["run_id"] for f in db.files.find({}, {"ingest.run_id": 1})} - run_ids
    assert not missing, missing


def test_backups_while_inject_runs_in_another_process_are_each_one_committed_state(tmp_path):
    catalog = _setup_catalog(tmp_path)
    source = tmp_path / "prod"
    samples.write_prod_tree(source, 120, seed=5)
    env = dict(os.environ, SPINE_DOCS_SITE="cronsite", SPINE_DOCS_WORKERS="1", SPINE_DOCS_BATCH_SIZE="10")
    loop = "; ".join(f"{shlex.join(CLI)} inject --db {shlex.quote(str(catalog))} --source "
                     f"{shlex.quote(str(sub))} --no-progress || exit 1"
                     for sub in sorted(p for p in source.rglob("*") if p.is_dir() and any(p.glob("*.h5"))))
    writer = subprocess.Popen(["sh", "-c", loop], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    backups = []
    try:
        while writer.poll() is None or len(backups) < 2:
            r = subprocess.run(CLI + ["backup", "--db", str(catalog), "--out", str(tmp_path / "b")],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            backups.append(Path(r.stdout.split()[1]))
    finally:
        _, err = writer.communicate(timeout=600)
    assert writer.returncode == 0, err
    counts = set()
    for i, b in enumerate(backups):
        where = tmp_path / f"restored{i}"
        migrate.restore_url(str(where), b)
        db = store.connect(where, create=False)
        assert migrate.check(db).ok, migrate.check(db).problems
        _runs_of_files_exist(db)
        counts.add(db.files.count_documents({}))
    assert len(backups) >= 2


def test_a_backup_waits_for_another_process_holding_the_write_lock(tmp_path):
    catalog = _setup_catalog(tmp_path)
    ready = tmp_path / "holding"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from spine_docs import store
        db = store.connect({str(catalog)!r}, create=False)
        with store.writing(db):
            db.saved_queries.insert_one({{"_id": "written under the lock"}})
            Path({str(ready)!r}).write_text("1")
            time.sleep(1.5)
        """)])
    try:
        for _ in range(600):
            if ready.exists() or holder.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"])
        assert ready.exists()
        r = subprocess.run(CLI + ["backup", "--db", str(catalog), "--out", str(tmp_path / "b")],
                           capture_output=True, text=True)
    finally:
        holder.wait(timeout=120)
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.split()[1])
    restored = tmp_path / "restored"
    migrate.restore_url(str(restored), path)
    assert store.connect(restored, create=False).saved_queries.find_one({"_id": "written under the lock"})
