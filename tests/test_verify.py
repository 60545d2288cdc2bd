"""verify.py and `spine-docs verify`: missing / changed / corrupt / back again, only this
site's documents, filters, the run log, threads, an interrupted run, the CLI."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from spine_docs import ingest, queries, samples, store, verify
from spine_docs.cli import app
from spine_docs.settings import Settings

SITE = "s1"


def settings(**kw):
    kw.setdefault("site", SITE)
    kw.setdefault("workers", 1)
    return Settings.load(env={}, **kw)


def make_files(tmp_path, n=6):
    """n small SPINE files; the third one incomplete (status incomplete when indexed)."""
    d = tmp_path / "data"
    d.mkdir()
    return [str(samples.write_spine_file(d / f"f{i}.h5", run=i + 1, n_events=3, seed=i,
                                         complete=(i != 2))) for i in range(n)]


def indexed(db, tmp_path, n=6, checksum=True, site=SITE):
    paths = make_files(tmp_path, n)
    rep = ingest.inject(db, settings=settings(checksum=checksum, site=site), sources=[str(tmp_path / "data")])
    assert rep.indexed == n
    return paths


def statuses(db, site=SITE):
    return {d["path"]: d["status"] for d in db.files.find({"site": site}, {"path": 1, "status": 1})}


def touch(path, seconds=5):
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def flip_a_byte(path):
    """Change one byte near the end, keeping size and mtime (silent corruption)."""
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.seek(st.st_size - 1)
        b = fh.read(1)
        fh.seek(st.st_size - 1)
        fh.write(bytes([b[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_catalog_that_matches_the_disk_is_left_alone(db, tmp_path):
    paths = indexed(db, tmp_path)
    before = sorted(db.files.find({}), key=lambda d: d["_id"])
    rep = verify.verify(db, site=SITE)
    assert (rep.checked, rep.ok, rep.missing, rep.changed, rep.corrupt, rep.updated) == (len(paths), len(paths), 0, 0, 0, 0)
    assert rep.exit_code == 0
    assert sorted(db.files.find({}), key=lambda d: d["_id"]) == before
    run = db.runs.find_one({"_id": rep.run_id})
    assert (run["kind"], run["site"], run["state"]) == ("verify", SITE, "done")
    assert run["counts"]["checked"] == len(paths) and run["counts"]["missing"] == 0
    assert verify.last_runs(db)[SITE]["_id"] == rep.run_id


def test_missing_then_back_gets_its_previous_status(db, tmp_path):
    paths = indexed(db, tmp_path)
    keep = tmp_path / "keep"
    keep.mkdir()
    gone = [paths[0], paths[2]]                    # an ok file and the incomplete one
    for p in gone:
        shutil.copy2(p, keep / os.path.basename(p))
        os.remove(p)
    rep = verify.verify(db, site=SITE)
    assert (rep.missing, rep.ok, rep.updated, rep.exit_code) == (2, len(paths) - 2, 2, 1)
    expected = {p: "ok" for p in paths} | {paths[2]: "incomplete"}
    assert statuses(db) == expected | {p: "missing" for p in gone}
    first = db.files.find_one({"path": paths[2]})
    assert first["verify"]["previous_status"] == "incomplete"
    assert first["verify"]["verdict"] == "missing" and first["verify"]["run_id"] == rep.run_id
    since = first["verify"]["missing_since"]
    assert since is not None
    assert first["ingest"]["history"][-1]["status"] == "missing"

    again = verify.verify(db, site=SITE)              # still gone: nothing rewritten
    assert (again.missing, again.updated) == (2, 0)
    assert db.files.find_one({"path": paths[2]})["verify"]["missing_since"] == since

    for p in gone:
        shutil.copy2(keep / os.path.basename(p), p)   # put back as it was (same mtime)
    back = verify.verify(db, site=SITE)
    assert (back.missing, back.restored, back.updated, back.exit_code) == (0, 2, 2, 0)
    assert statuses(db) == expected
    assert "verify" not in db.files.find_one({"path": paths[2]})


def test_changed_files_are_marked_and_inject_reindexes_them(db, tmp_path):
    paths = indexed(db, tmp_path)
    touch(paths[1])
    data = open(paths[0], "rb").read()
    st = os.stat(paths[0])
    os.remove(paths[0])
    rep = verify.verify(db, site=SITE)
    assert (rep.changed, rep.missing, rep.updated) == (1, 1, 2)
    assert statuses(db)[paths[1]] == "changed"
    with open(paths[0], "wb") as fh:                  # back as it was: same size and mtime
        fh.write(data)
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    again = ingest.inject(db, settings=settings(), sources=[str(tmp_path / "data")])
    assert (again.indexed, again.unchanged) == (2, len(paths) - 2)   # a verdict is never skipped
    for p in paths[:2]:
        doc = db.files.find_one({"path": p})
        assert doc["status"] == "ok" and "verify" not in doc


def test_a_missing_file_that_reappears_changed_is_changed(db, tmp_path):
    paths = indexed(db, tmp_path)
    data = open(paths[3], "rb").read()
    os.remove(paths[3])
    verify.verify(db, site=SITE)
    with open(paths[3], "wb") as fh:
        fh.write(data)                                # back, but with a new mtime
    rep = verify.verify(db, site=SITE)
    assert (rep.changed, rep.missing, rep.restored) == (1, 0, 0)
    doc = db.files.find_one({"path": paths[3]})
    assert doc["status"] == "changed" and doc["verify"]["previous_status"] == "ok"
    assert doc["verify"]["missing_since"] is None


def test_checksum_finds_silent_corruption(db, tmp_path):
    paths = indexed(db, tmp_path)
    original = open(paths[4], "rb").read()
    st = os.stat(paths[4])
    flip_a_byte(paths[4])
    assert verify.verify(db, site=SITE).corrupt == 0            # a stat cannot see it
    rep = verify.verify(db, site=SITE, checksum=True, workers=3)
    assert (rep.corrupt, rep.hashed, rep.updated, rep.no_checksum) == (1, len(paths), 1, 0)
    assert statuses(db)[paths[4]] == "corrupt"
    assert verify.verify(db, site=SITE).corrupt == 1             # still corrupt without re-hashing
    with open(paths[4], "wb") as fh:
        fh.write(original)
    os.utime(paths[4], ns=(st.st_atime_ns, st.st_mtime_ns))
    rep = verify.verify(db, site=SITE, checksum=True)
    assert (rep.corrupt, rep.restored) == (0, 1)
    assert statuses(db)[paths[4]] == "ok"


def test_checksum_without_a_stored_one_concludes_nothing(db, tmp_path):
    paths = indexed(db, tmp_path, checksum=False)
    flip_a_byte(paths[0])
    rep = verify.verify(db, site=SITE, checksum=True)
    assert (rep.no_checksum, rep.corrupt, rep.ok) == (len(paths), 0, len(paths))


def test_only_this_sites_documents_and_the_filter_are_touched(db, tmp_path):
    paths = indexed(db, tmp_path)
    ingest.inject(db, settings=settings(site="s2"), sources=[str(tmp_path / "data")])
    other_before = sorted(db.files.find({"site": "s2"}), key=lambda d: d["_id"])
    for p in paths[:3]:
        os.remove(p)
    flt = queries.Filter(run_min=2, run_max=5)         # files f1..f4 (runs 2..5)
    rep = verify.verify(db, site=SITE, flt=flt)
    assert rep.checked == 4 and rep.missing == 2       # f1, f2
    assert statuses(db) == {paths[0]: "ok", paths[1]: "missing", paths[2]: "missing",
                            paths[3]: "ok", paths[4]: "ok", paths[5]: "ok"}
    assert sorted(db.files.find({"site": "s2"}), key=lambda d: d["_id"]) == other_before


def test_threads_on_a_slow_filesystem_give_the_same_verdicts(db, tmp_path, monkeypatch):
    paths = indexed(db, tmp_path, n=8)
    monkeypatch.setattr(ingest, "STAT_PROBE", 2)
    monkeypatch.setattr(ingest, "STAT_SLOW_S", -1.0)   # every filesystem is "slow": threads
    os.remove(paths[5])
    touch(paths[6])
    rep = verify.verify(db, site=SITE, workers=4)
    assert (rep.missing, rep.changed, rep.ok) == (1, 1, 6)
    assert [p for p, s in sorted(statuses(db).items()) if s not in ("ok", "incomplete")] == [paths[5], paths[6]]


def test_an_interrupted_run_leaves_each_document_before_or_after(db, tmp_path, monkeypatch):
    paths = indexed(db, tmp_path)
    for p in paths:
        os.remove(p)
    coll = type(db.files)
    real = coll.bulk_write
    calls = []

    def failing(self, ops, *a, **k):
        if self.name != "files":  # the history's writes (file_versions) go through too
            return real(self, ops, *a, **k)
        calls.append(len(ops))
        if len(calls) == 3:
            raise KeyboardInterrupt("stop")
        return real(self, ops, *a, **k)

    monkeypatch.setattr(coll, "bulk_write", failing)
    with pytest.raises(KeyboardInterrupt):
        verify.verify(db, site=SITE, batch_size=2)
    monkeypatch.setattr(coll, "bulk_write", real)
    st = statuses(db)
    assert sorted(st.values()).count("missing") == 4   # two batches of two written, then stopped
    for p in paths:
        doc = db.files.find_one({"path": p})
        if doc["status"] == "missing":
            assert doc["verify"]["previous_status"] in ("ok", "incomplete")
        else:
            assert "verify" not in doc
    assert db.runs.find_one({"kind": "verify"})["state"] == "interrupted"
    rep = verify.verify(db, site=SITE)                 # the next run finishes the rest
    assert (rep.missing, rep.updated) == (len(paths), 2)


runner = CliRunner()


def test_cli_verify(db_url, db, tmp_path):
    paths = indexed(db, tmp_path)
    os.remove(paths[0])
    env = {"SPINE_DOCS_SITE": SITE}
    r = runner.invoke(app, ["verify", "--db", db_url, "--json"], env=env)
    assert r.exit_code == 1, r.output
    out = json.loads(r.stdout)
    assert (out["site"], out["checked"], out["missing"], out["ok"]) == (SITE, 6, 1, 5)
    r = runner.invoke(app, ["verify", "--db", db_url, "--site", "s2", "--no-progress"], env=env)
    assert r.exit_code == 0 and "site s2: checked 0" in r.stdout
    r = runner.invoke(app, ["verify", "--db", db_url, "--path-contains", "f3", "--checksum", "--no-progress"], env=env)
    assert r.exit_code == 0, r.output
    assert "checked 1: ok 1, missing 0" in r.stdout and "hashed 1" in r.stdout
    r = runner.invoke(app, ["query", "--db", db_url, "--status", "missing", "--format", "paths"], env=env)
    assert [line for line in r.stdout.splitlines() if line and not line.startswith("#")] == [paths[0]]


_VERIFY_AS_A_USER = """
import sys
from spine_docs import cli
cli.main(sys.argv[1:])
"""


# the verify runs in a child process: a mongomock:// catalog lives in this process only
@pytest.mark.backends("embedded", "server")
def test_unreadable_files_are_reported_and_left_as_they_were_for_a_user_and_for_root(db_url, db, tmp_path):
    """A file that cannot be read (chmod 000, --checksum) and one that cannot even be
    stat()ed (in a chmod 000 directory): each reported unreadable by path, exit 1, nothing
    concluded - their documents keep their status. Run in a child process that meets mode
    bits as their owner does, also when the tests run as root (tests/unprivileged.py)."""
    from unprivileged import run_python

    paths = make_files(tmp_path)
    locked_dir = tmp_path / "data" / "locked"
    locked_dir.mkdir()
    hidden = str(samples.write_spine_file(locked_dir / "in_locked_dir.h5", seed=9))
    rep = ingest.inject(db, settings=settings(checksum=True), sources=[str(tmp_path / "data")])
    assert rep.indexed == len(paths) + 1
    before = statuses(db)
    store.close(db)
    os.chmod(paths[1], 0)
    locked_dir.chmod(0)
    try:
        out = run_python(_VERIFY_AS_A_USER, "verify", "--db", db_url, "--site", SITE, "--checksum",
                         "--json", "--no-progress")
    finally:
        locked_dir.chmod(0o755)
        os.chmod(paths[1], 0o644)
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert (report["unreadable"], report["missing"], report["corrupt"], report["changed"]) == (2, 0, 0, 0)
    assert report["ok"] == len(paths) - 1
    reasons = {p["path"]: p["reason"] for p in report["problems"]}
    assert set(reasons) == {paths[1], hidden}
    assert reasons[paths[1]].startswith("cannot read for checksum: ")
    assert reasons[hidden] == "permission denied (cannot stat)"
    db = store.connect(db_url, create=False)          # (embedded: read what the child saved)
    assert statuses(db) == before                     # nothing concluded about either
    store.close(db)
    assert hidden in before and paths[1] in before
