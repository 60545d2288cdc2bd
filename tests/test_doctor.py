"""``spine-docs doctor`` on every kind of catalog (mongomock, embedded, and a real server when
``SPINE_DOCS_TEST_URI`` is set: there the server facts, ``--explain`` and the self-test's
server capabilities run too), and ``--selftest``'s scratch database.

The catalog is built by hand here: six files of known statuses and sizes, three runs of
known states and problems; every expected value comes from that fixture."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path

import bson
import pytest

from spine_docs import cli, doctor, schema, store
from spine_docs.queries import shapes

T0 = datetime(2024, 3, 1, 12, 0, 0)


def _file(i, status, *, blob=0):
    path = f"/data/prod/file_{i:02d}.h5"
    doc = {"_id": f"s3df:{path}", "site": "s3df", "path": path, "name": f"file_{i:02d}.h5",
           "dir": "/data/prod", "size": 1000 * i, "mtime": T0 + timedelta(days=i), "status": status,
           "error": "truncated HDF5 file" if status == "error" else None,
           "spine_version": "0.5.1", "model": "full_chain", "dataset": "bnb", "run": 100 + i,
           "attrs": {"blob": "x" * blob} if blob else {}, "attr_types": {},
           "ingest": {"first_seen": T0, "last_seen": T0, "times_seen": 1}}
    return doc


FILES = [_file(1, "ok"), _file(2, "ok"), _file(3, "ok", blob=50_000), _file(4, "incomplete"),
         _file(5, "incomplete"), _file(6, "error")]
BIGGEST = FILES[2]

DEAD_PID = 2 ** 22 + 12345  # above Linux's pid_max default: no such process


def _run(day, state, *, problems=0, host="node7", pid=4242):
    return {"_id": f"2024030{day}T000000Z-0000000{day}", "kind": "inject", "site": "s3df", "state": state,
            "started": T0 + timedelta(days=day), "finished": None if state == "running" else T0 + timedelta(days=day, minutes=5),
            "heartbeat": T0 + timedelta(days=day), "host": host, "pid": pid, "user": "alice",
            "counts": {"candidates": 6, "indexed": 6 - problems, "incomplete": 2, "unchanged": 0, "failed": problems},
            "problems": [{"path": f"/data/bad_{k}.h5", "reason": f"reason {k}"} for k in range(problems)],
            "problems_count": problems}


RUNS = [_run(1, "done"), _run(2, "failed", problems=5),
        _run(3, "running", host=socket.gethostname(), pid=DEAD_PID)]


def build(db):
    schema.setup(db)
    with store.writing(db):
        db.files.insert_many([dict(d) for d in FILES])
        db.runs.insert_many([dict(r) for r in RUNS])


def state_of(db):
    """Everything a self-test must leave alone in the user's catalog."""
    return {n: (sorted(map(str, (d["_id"] for d in db[n].find({}, {"_id": 1})))),
                sorted(i["name"] for i in db[n].list_indexes()))
            for n in sorted(db.list_collection_names())}


# --------------------------------------------------------------------------- the report

def test_a_healthy_catalog(db, backend):
    build(db)
    r = doctor.diagnose(db)
    assert r.problems == [] and r.exit_code == 0, r.problems
    assert r.kind == backend
    assert (r.schema.db_version, r.schema.code_version, r.schema.current) == (7, 7, True)
    assert r.schema.drift == [] and r.schema.pending == []
    assert r.schema.validators["files"]["present"] and r.schema.validators["files"]["matches"]
    assert (r.schema.validators["files"]["level"], r.schema.validators["files"]["action"]) == ("moderate", "warn")
    assert r.counts["files"] == 6
    assert {v["value"]: v["count"] for v in r.counts["by_status"]} == {"ok": 3, "incomplete": 2, "error": 1}
    assert r.counts["collections"]["runs"] == 3
    assert r.largest["_id"] == BIGGEST["_id"]
    assert r.largest["bytes"] == len(bson.encode(BIGGEST))
    assert r.lock is None and r.explain is None
    assert len(r.static_plans) == len(shapes.doctor_shapes()) and all(p.ok for p in r.static_plans)
    assert len(shapes.doctor_shapes()) > len(shapes.query_shapes())  # the lifecycle shapes too
    assert "lineage: children of files (walk down, --derived-from)" in {p.name for p in r.static_plans}
    if backend == "server":
        assert r.server is not None and r.server.version
        assert r.server.fcv
        assert r.largest["method"].startswith("a random sample of 1,000")
    else:
        assert r.server is None
        assert r.largest["method"] == "exact: the size of every stored document"


def test_runs_newest_first_with_their_first_problems_and_a_dead_run(db):
    build(db)
    r = doctor.diagnose(db, runs_limit=5)
    assert [x["_id"] for x in r.runs] == [RUNS[2]["_id"], RUNS[1]["_id"], RUNS[0]["_id"]]
    assert [x["state"] for x in r.runs] == ["interrupted", "failed", "done"]
    assert r.runs[1]["first_problems"] == RUNS[1]["problems"][:3]
    assert r.runs[0]["first_problems"] == [] and r.runs[2]["first_problems"] == []
    text = "\n".join(doctor.render(r))
    assert "    /data/bad_2.h5: reason 2\n    ... 2 more (`spine-docs runs --json`)" in text
    # the doctor writes nothing: the dead run is shown interrupted, not recorded so
    assert db.runs.find_one({"_id": RUNS[2]["_id"]})["state"] == "running"
    assert len(doctor.diagnose(db, runs_limit=1).runs) == 1
    assert doctor.diagnose(db, runs_limit=0).runs == []


def test_a_missing_index_is_a_problem(db):
    build(db)
    with store.writing(db):
        db.files.drop_index("status_1")
    r = doctor.diagnose(db)
    assert r.exit_code == 1
    assert "files.status_1: index missing" in r.problems
    # the plan checker, under the indexes the catalog has, finds the status filter unserved
    assert "query shape 'filter: status': COLLSCAN under this catalog's indexes (static check)" in r.problems
    assert [d["index"] for d in r.schema.missing] == ["status_1"]


def test_an_extra_index_is_a_warning(db):
    build(db)
    with store.writing(db):
        db.files.create_index([("name", 1)], name="name_1")
    r = doctor.diagnose(db)
    assert r.exit_code == 0
    assert r.warnings == ["files.name_1: index not declared in schema.json: key {'name': 1}"]
    assert [d["index"] for d in r.schema.extra] == ["name_1"]


def test_a_missing_validator_is_a_problem(db):
    build(db)
    with store.writing(db):
        store.coll_mod(db, "files", validator={})
    r = doctor.diagnose(db)
    assert r.exit_code == 1
    assert "files: validator missing" in r.problems
    assert (r.schema.validators["files"]["present"], r.schema.validators["files"]["matches"]) == (False, False)
    assert "  validators: files: missing; none declared for files_archive, runs, meta, saved_queries, changelog, file_versions" in \
        doctor.render(r)


def test_a_schema_version_mismatch_is_a_problem(db):
    build(db)
    with store.writing(db):
        schema.stamp_version(db, 2)
    r = doctor.diagnose(db)
    assert r.exit_code == 1
    assert r.problems[0] == "database schema version 2, this spine-docs needs 7: run `spine-docs migrate up`"
    assert (r.schema.db_version, r.schema.current) == (2, False)


def test_the_migration_lock_holder(db):
    build(db)
    now = datetime.now(timezone.utc)
    with store.writing(db):
        db.meta.insert_one({"_id": "migration_lock", "user": "bob", "host": "elsewhere", "pid": 4242,
                            "command": "migrate up", "token": "t", "acquired": now,
                            "expires": now + timedelta(hours=1)})
    r = doctor.diagnose(db)
    assert r.exit_code == 0
    assert (r.lock["user"], r.lock["host"], r.lock["pid"], r.lock_stale) == ("bob", "elsewhere", 4242, None)
    assert r.warnings[0].startswith("migration lock held by bob@elsewhere pid 4242 (migrate up, since ")
    text = "\n".join(doctor.render(r))
    assert "Migration lock\n  bob@elsewhere pid 4242 (migrate up" in text


def test_explain(db, backend):
    build(db)
    r = doctor.diagnose(db, explain=True)
    if backend != "server":
        assert r.explain is None and r.exit_code == 0
        assert r.explain_note.startswith("explain needs a MongoDB server")
        return
    names = [s.name for s in shapes.doctor_shapes()]
    assert [p.name for p in r.explain] == names
    assert all(p.measured and p.error is None for p in r.explain)
    bad = [(p.name, p.plan) for p in r.explain if not p.ok]
    assert bad == [] and r.exit_code == 0, r.problems
    by_name = {p.name: p for p in r.explain}
    assert by_name["file by _id"].plan == "IXSCAN" and by_name["file by _id"].indexes == ["_id_"]


def test_the_text_report(db):
    build(db)
    lines = doctor.render(doctor.diagnose(db))
    text = "\n".join(lines)
    for section in ("Server", "Schema", "Migration lock", "Ingest runs (newest 3)", "Documents",
                    "Query plans (static: the plan checker, under this catalog's indexes)"):
        assert f"\n{section}\n" in text
    assert "  version: database 7, code 7 (current)" in lines
    assert "  files: 6 (ok 3, incomplete 2, error 1)" in lines
    n = len(bson.encode(BIGGEST))
    assert f"  largest document: {n / 1024:.1f} KiB ({n:,} bytes)  {BIGGEST['_id']}" in text
    assert lines[-1] == "Problems: none"


# --------------------------------------------------------------------------- the lifecycle

def _life(site, i, status, *, retired=False):
    doc = dict(_file(i, status), _id=f"{site}:/data/life/f{i}.h5", site=site,
               path=f"/data/life/f{i}.h5", name=f"f{i}.h5", dir="/data/life")
    if retired:
        doc["retired"] = {"reason": "bad calibration", "by": "alice", "at": T0}
    return doc


#: (site, status, retired) -> per site by hand: s3df missing 2 (one retired), changed 1,
#: retired 2; nersc corrupt 1; slac has none, only a verify run
LIFE = [_life("s3df", 11, "missing"), _life("s3df", 12, "missing", retired=True),
        _life("s3df", 13, "changed"), _life("s3df", 14, "ok", retired=True),
        _life("nersc", 15, "corrupt"), _life("nersc", 16, "ok")]


def _verify_run(site, day, checked, missing):
    return {"_id": f"v{site}{day}", "kind": "verify", "site": site, "state": "done",
            "started": T0 + timedelta(days=day), "finished": T0 + timedelta(days=day, minutes=1),
            "heartbeat": T0 + timedelta(days=day), "host": "node7", "pid": 1, "user": "alice",
            "counts": {"checked": checked, "ok": checked - missing, "missing": missing, "changed": 0,
                       "corrupt": 0}, "problems": [], "problems_count": 0}


VERIFY_RUNS = [_verify_run("s3df", 4, 3, 1), _verify_run("s3df", 6, 4, 2), _verify_run("slac", 5, 7, 0)]


def build_lifecycle(db):
    build(db)
    with store.writing(db):
        db.files.insert_many([dict(d) for d in LIFE])
        db.runs.insert_many([dict(r) for r in VERIFY_RUNS])


def test_lifecycle_counts_and_last_verify_per_site(db):
    build_lifecycle(db)
    r = doctor.diagnose(db)
    assert r.problems == [], r.problems
    got = {row["site"]: {k: row[k] for k in ("missing", "changed", "corrupt", "retired")} for row in r.lifecycle}
    assert got == {"nersc": {"missing": 0, "changed": 0, "corrupt": 1, "retired": 0},
                   "s3df": {"missing": 2, "changed": 1, "corrupt": 0, "retired": 2},
                   "slac": {"missing": 0, "changed": 0, "corrupt": 0, "retired": 0}}
    assert [row["site"] for row in r.lifecycle] == ["nersc", "s3df", "slac"]
    last = {row["site"]: (row["last_verify"] or {}).get("_id") for row in r.lifecycle}
    assert last == {"nersc": None, "s3df": "vs3df6", "slac": "vslac5"}
    lines = doctor.render(r)
    i = lines.index("Lifecycle (verify and retire, per site)")
    assert lines[i + 1:i + 7] == [
        "  nersc: missing 0, changed 0, corrupt 1, retired 0",
        "    last verify: never",
        "  s3df: missing 2, changed 1, corrupt 0, retired 2",
        "    last verify: 2024-03-07 12:00:00 done, checked 4: ok 2, missing 2, changed 0, corrupt 0  (vs3df6)",
        "  slac: missing 0, changed 0, corrupt 0, retired 0",
        "    last verify: 2024-03-06 12:00:00 done, checked 7: ok 7, missing 0, changed 0, corrupt 0  (vslac5)"]


def test_lifecycle_of_a_catalog_without_any(db):
    build(db)
    r = doctor.diagnose(db)
    assert r.lifecycle == []
    lines = doctor.render(r)
    i = lines.index("Lifecycle (verify and retire, per site)")
    assert lines[i + 1] == "  no missing, changed, corrupt or retired files; no verify run yet"


def test_cli_json_has_the_lifecycle(db, db_url, monkeypatch, capsys):
    build_lifecycle(db)
    code, out, err = run_main(monkeypatch, capsys, "doctor", "--db", db_url, "--json")
    assert code == 0, err
    doc = json.loads(out)
    s3df, = [row for row in doc["lifecycle"] if row["site"] == "s3df"]
    assert (s3df["missing"], s3df["changed"], s3df["corrupt"], s3df["retired"]) == (2, 1, 0, 2)
    assert s3df["last_verify"]["_id"] == "vs3df6"
    assert s3df["last_verify"]["started"] == {"$date": "2024-03-07T12:00:00Z"}
    code, out, err = run_main(monkeypatch, capsys, "doctor", "--db", db_url)
    assert "  nersc: missing 0, changed 0, corrupt 1, retired 0\n" in out


# --------------------------------------------------------------------------- the command

def run_main(monkeypatch, capsys, *args):
    with pytest.raises(SystemExit) as info:
        cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_cli_text_and_json(db, db_url, monkeypatch, capsys):
    build(db)
    code, out, err = run_main(monkeypatch, capsys, "doctor", "--db", db_url)
    assert code == 0, err
    assert out.startswith(f"spine-docs doctor: {store.describe(db)}\n")
    assert "  files: 6 (ok 3, incomplete 2, error 1)\n" in out
    code, out, err = run_main(monkeypatch, capsys, "doctor", "--db", db_url, "--json", "--runs", "2")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["counts"]["files"] == 6 and doc["exit_code"] == 0 and doc["selftest"] is None
    assert [r["state"] for r in doc["runs"]] == ["interrupted", "failed"]
    assert doc["runs"][0]["started"] == {"$date": "2024-03-04T12:00:00Z"}  # relaxed Extended JSON
    assert doc["largest"]["_id"] == BIGGEST["_id"]


@pytest.mark.backends("mongomock", "embedded")
def test_cli_explain_without_a_server_gives_the_static_verdicts(db, db_url, monkeypatch, capsys):
    build(db)
    code, out, err = run_main(monkeypatch, capsys, "doctor", "--db", db_url, "--explain")
    assert code == 0, err
    assert "  explain needs a MongoDB server: the plans above are the plan checker's static verdicts" in out
    plan_lines = [ln for ln in out.splitlines() if ln.startswith(("  ok  ", "  BAD "))]
    assert len(plan_lines) == len(shapes.doctor_shapes())
    # exit 1 only when a static verdict is not ok
    with store.writing(db):
        db.files.drop_index("model_1")
    code, out, err = run_main(monkeypatch, capsys, "doctor", "--db", db_url, "--explain")
    assert code == 1
    assert "  BAD COLLSCAN  filter: model" in out


@pytest.mark.backends("mongomock", "embedded")
def test_cli_exit_1_on_a_problem(db, db_url, monkeypatch, capsys):
    build(db)
    with store.writing(db):
        schema.stamp_version(db, 1)
    code, out, err = run_main(monkeypatch, capsys, "doctor", "--db", db_url)
    assert code == 1
    assert "\nProblems\n  database schema version 1, this spine-docs needs 7: run `spine-docs migrate up`\n" in out


def test_cli_usage_and_connection_errors_are_one_line(tmp_path, monkeypatch, capsys):
    for args, needle in ((["--db", tmp_path / "nothing"], f"no embedded catalog at {tmp_path / 'nothing'}"),
                         (["--db", "ftp://x"], "unsupported catalog URL scheme 'ftp'"),
                         (["--runs", "-1", "--db", tmp_path], "--runs"),
                         (["--db", "mongodb://127.0.0.1:9/x?serverSelectionTimeoutMS=200"], "cannot reach MongoDB")):
        code, out, err = run_main(monkeypatch, capsys, "doctor", *args)
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert not (tmp_path / "nothing").exists()  # the doctor creates no catalog


# --------------------------------------------------------------------------- --selftest

def _gone(db, report):
    if store.is_embedded(db):
        return not Path(report if isinstance(report, str) else report.scratch).exists()
    name = report if isinstance(report, str) else report.scratch
    return name not in db.client.list_database_names()


def test_selftest_proves_every_capability_and_leaves_the_catalog_alone(db, db_url, backend):
    build(db)
    before = state_of(db)
    report = doctor.selftest(db, db_url=db_url, workers=1)
    states = {r.name: (r.state, r.detail) for r in report.results}
    assert list(states) == ["schema", "ingest", "strange", "queries", "exports", "plans", "lock",
                            "migrations", "backup", "mongodump"]
    expected_skips = {}
    if backend != "server":
        expected_skips = {"plans": "explain needs a MongoDB server (the static plan check runs without one)",
                          "mongodump": "mongodump needs a MongoDB server"}
    elif not shutil.which("mongodump"):
        expected_skips = {"mongodump": "mongodump is not installed (MongoDB Database Tools)"}
    for name, (state, detail) in states.items():
        if name in expected_skips:
            assert (state, detail) == ("skipped", expected_skips[name])
        else:
            assert state == "passed", (name, detail)
    assert states["ingest"][1].startswith("40 generated files indexed")
    assert states["strange"][1].startswith("10 files that must not break the catalog: 6 recorded as errors, 4 indexed")
    assert states["exports"][1] == "jsonl 50 rows, csv 50 rows, paths 50 rows"
    assert report.ok and report.exit_code == 0 and report.dropped
    assert _gone(db, report)
    assert state_of(db) == before
    if backend == "embedded":
        assert Path(report.scratch).parent == Path(db_url).parent
        assert Path(report.scratch).name.startswith("catalog_selftest_")
    else:
        assert report.scratch.startswith(f"{db.name}_selftest_")


def _boom(s):
    raise RuntimeError("disk on fire")


def test_a_failing_capability_fails_the_run_and_the_scratch_is_dropped(db, db_url):
    build(db)
    before = state_of(db)
    caps = [doctor.CAPABILITIES[0], doctor.Capability("boom", "a capability that fails", _boom),
            doctor.Capability("after", "needs boom", lambda s: doctor.passed("ran"), ("boom",))]
    report = doctor.selftest(db, db_url=db_url, capabilities=caps, workers=1)
    assert [(r.name, r.state) for r in report.results] == [("schema", "passed"), ("boom", "failed"),
                                                           ("after", "skipped")]
    assert report.results[1].detail == "RuntimeError: disk on fire"
    assert report.results[2].detail == "needs boom, which did not pass"
    assert report.exit_code == 1 and report.dropped and _gone(db, report)
    assert state_of(db) == before
    lines = doctor.render_selftest(report)
    assert "  failed  boom        RuntimeError: disk on fire" in lines
    assert lines[-1] == f"  removed {report.scratch}"


def test_ctrl_c_inside_a_capability_still_drops_the_scratch(db, db_url):
    build(db)
    before = state_of(db)
    seen = {}

    def interrupted(s):
        seen["name"] = s.name
        seen["existed"] = bool(s.db.list_collection_names())  # the schema capability made it
        raise KeyboardInterrupt

    caps = [doctor.CAPABILITIES[0], doctor.Capability("ctrl-c", "interrupted", interrupted)]
    with pytest.raises(KeyboardInterrupt):
        doctor.selftest(db, db_url=db_url, capabilities=caps, workers=1)
    assert seen["existed"] and _gone(db, seen["name"])
    assert state_of(db) == before


def test_the_scratch_name_must_be_free(db, db_url, backend, tmp_path):
    build(db)
    if backend == "embedded":
        taken = tmp_path / "catalog_selftest_taken"
        taken.mkdir()
        (taken / "keep.txt").write_text("mine")
        name = taken.name
    else:
        name = f"{db.name}_selftest_taken"
        db.client[name].things.insert_one({"_id": "mine"})
    ran = []
    caps = [doctor.Capability("probe", "must not run", lambda s: ran.append(1) or doctor.passed())]
    try:
        with pytest.raises(doctor.DoctorError, match="exists: refusing to touch it"):
            doctor.selftest(db, db_url=db_url, capabilities=caps, name=name)
        assert ran == []
        if backend == "embedded":
            assert (taken / "keep.txt").read_text() == "mine"
        else:
            assert db.client[name].things.find_one() == {"_id": "mine"}
    finally:
        if backend != "embedded":
            db.client.drop_database(name)


@pytest.mark.backends("mongomock")
def test_cli_selftest(db, db_url, monkeypatch, capsys):
    build(db)
    by_name = {c.name: c for c in doctor.CAPABILITIES}
    caps = (by_name["schema"], dataclasses.replace(by_name["mongodump"], needs=()))  # quick ones
    monkeypatch.setattr(doctor, "CAPABILITIES", caps)
    code, out, err = run_main(monkeypatch, capsys, "doctor", "--db", db_url, "--selftest")
    assert code == 0, out + err
    tail = out.split("\nSelf-test (in a scratch database, removed afterwards)\n", 1)[1].splitlines()
    assert tail[0].startswith("  passed  schema      initialised: 7 collections")
    assert tail[1] == "  skipped mongodump   mongodump needs a MongoDB server"
    assert tail[2].startswith(f"  removed {db.name}_selftest_") and len(tail) == 3
    code, out, err = run_main(monkeypatch, capsys, "doctor", "--db", db_url, "--selftest", "--json")
    doc = json.loads(out)
    assert [r["state"] for r in doc["selftest"]["results"]] == ["passed", "skipped"]
    assert doc["selftest"]["dropped"] is True and code == 0


def test_scratch_urls():
    u = doctor.scratch_url
    assert u("mongodb://h:27017/spine_docs", "x_selftest_1") == "mongodb://h:27017/x_selftest_1"
    assert u("mongodb://h1,h2/?replicaSet=rs", "s") == "mongodb://h1,h2/s?replicaSet=rs"
    # credentials authenticate where they did before (the path was the default authSource)
    assert u("mongodb://u:p@h/cat?tls=true", "s") == "mongodb://u:p@h/s?tls=true&authSource=cat"
    assert u("mongodb://u:p@h", "s") == "mongodb://u:p@h/s?authSource=admin"
    assert u("mongodb+srv://u:p@c.example.net/cat?authSource=admin", "s") == \
        "mongodb+srv://u:p@c.example.net/s?authSource=admin"
    with pytest.raises(doctor.DoctorError):
        u("/a/directory", "s")


def test_every_pipeline_shape_is_explained_as_the_pipeline_it_is():
    pipelines = doctor.shape_pipelines()
    by_name = {s.name: s for s in shapes.query_shapes()}
    for name, pipeline in pipelines.items():
        mine = shapes.pipeline_shape(name, pipeline, "")
        assert (dict(mine.query), mine.sort) == (dict(by_name[name].query), by_name[name].sort), name
    # every other shape is sent as a find (or a count): a new pipeline shape must be added
    others = {s.source for s in shapes.query_shapes() if s.name not in pipelines}
    assert others <= doctor.FIND_SOURCES | doctor.COUNT_SOURCES, others
