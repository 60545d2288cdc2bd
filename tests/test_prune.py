"""prune.py, `spine-docs prune` and `restore-files`: dry run first, archive with who/when/why,
restore byte-identical, interruptions never lose a document, conflicts kept."""

from __future__ import annotations

import getpass
import json
import os
import socket
from datetime import datetime, timedelta, timezone

import bson
import pytest
from typer.testing import CliRunner

from spine_docs import ingest, prune, samples, store, verify
from spine_docs.cli import app
from spine_docs.settings import Settings

SITE = "s1"
runner = CliRunner()


def make_catalog(db, tmp_path, n=6):
    d = tmp_path / "data"
    d.mkdir()
    paths = [str(samples.write_spine_file(d / f"f{i}.h5", run=i + 1, n_events=3, seed=i)) for i in range(n)]
    ingest.inject(db, settings=Settings.load(env={}, site=SITE, workers=1), sources=[str(d)])
    return paths


def missing_since(db, path_days):
    """Files gone from disk, found missing by verify, then dated back ``days`` each."""
    for p in path_days:
        os.remove(p)
    verify.verify(db, site=SITE)
    now = datetime.now(timezone.utc)
    with store.writing(db):
        for p, days in path_days.items():
            db.files.update_one({"path": p}, {"$set": {"verify.missing_since": now - timedelta(days=days)}})


def raw_files(db, coll="files"):
    """Every document's BSON, by _id: what 'byte-identical' compares."""
    return [bson.encode(d) for d in sorted(db[coll].find({}), key=lambda d: d["_id"])]


def test_parse_age():
    assert prune.parse_age("30d") == prune.parse_age("30") == timedelta(days=30)
    assert prune.parse_age("12h") == timedelta(hours=12) and prune.parse_age("2w") == timedelta(days=14)
    assert prune.parse_age("90m") == timedelta(minutes=90)
    for bad in ("", "d", "-3d", "3y", "3 days"):
        with pytest.raises(prune.PruneError):
            prune.parse_age(bad)
    with pytest.raises(prune.PruneError, match="say what to prune"):
        prune.selection()


def test_dry_run_then_prune_then_restore_is_byte_identical(db, tmp_path):
    paths = make_catalog(db, tmp_path)
    missing_since(db, {paths[0]: 40, paths[1]: 31, paths[2]: 10})
    before = raw_files(db)
    query = prune.selection(missing_for=timedelta(days=30))

    dry = prune.prune(db, query, why="gone", dry_run=True)
    assert (dry.selected, dry.moved) == (2, 0) and sorted(dry.paths) == sorted(paths[:2])
    assert raw_files(db) == before and db.files_archive.count_documents({}) == 0

    rep = prune.prune(db, query, why="missing for 30d", dry_run=False)
    assert (rep.selected, rep.moved, rep.skipped) == (2, 2, 0)
    assert sorted(d["path"] for d in db.files.find({})) == sorted(paths[2:])
    archived = list(db.files_archive.find({}))
    assert sorted(a["path"] for a in archived) == sorted(paths[:2])
    for a in archived:
        stamp = a["archived"]
        assert stamp["by"] == f"{getpass.getuser()}@{socket.gethostname()}"
        assert stamp["why"] == "missing for 30d" and stamp["run_id"] == rep.run_id
        assert isinstance(stamp["at"], datetime)
        assert list(a)[-1] == "archived"
    run = db.runs.find_one({"_id": rep.run_id})
    assert (run["kind"], run["state"], run["counts"]["moved"]) == ("prune", "done", 2)

    back = prune.restore(db, prune.archive_query())
    assert (back.selected, back.moved) == (2, 2)
    assert raw_files(db) == before                   # every byte as it was
    assert db.files_archive.count_documents({}) == 0


def test_restore_by_filter_and_by_run(db, tmp_path):
    from spine_docs.queries import Filter

    paths = make_catalog(db, tmp_path)
    missing_since(db, {paths[0]: 40, paths[1]: 40, paths[3]: 40})
    rep = prune.prune(db, prune.selection(missing_for=timedelta(days=30)), why="x", dry_run=False)
    assert rep.moved == 3
    one = prune.restore(db, prune.archive_query(Filter(run_min=2, run_max=2)))   # f1 holds run 2
    assert one.moved == 1 and db.files.count_documents({"path": paths[1]}) == 1
    rest = prune.restore(db, prune.archive_query(run_id=rep.run_id))
    assert rest.moved == 2 and db.files.count_documents({}) == len(paths)


def test_an_interrupted_prune_loses_nothing_and_finishes_next_time(db, tmp_path, monkeypatch):
    paths = make_catalog(db, tmp_path)
    missing_since(db, {p: 40 for p in paths[:4]})
    before = raw_files(db)
    query = prune.selection(missing_for=timedelta(days=30))
    coll = type(db.files)
    real = coll.delete_many
    calls = []

    def failing(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:               # the second batch: copied to the archive, not yet removed
            raise KeyboardInterrupt("stop")
        return real(self, *a, **k)

    monkeypatch.setattr(coll, "delete_many", failing)
    with pytest.raises(KeyboardInterrupt):
        prune.prune(db, query, why="x", dry_run=False, batch_size=2)
    monkeypatch.setattr(coll, "delete_many", real)
    in_files = {d["_id"] for d in db.files.find({})}
    in_archive = {d["_id"] for d in db.files_archive.find({})}
    every = {d["_id"] for d in (bson.decode(b) for b in before)}
    assert in_files | in_archive == every              # nothing lost
    assert len(in_files & in_archive) == 2             # the interrupted batch is in both
    rep = prune.prune(db, query, why="x", dry_run=False, batch_size=2)
    assert rep.moved == 2
    assert db.files.count_documents({}) == 2 and db.files_archive.count_documents({}) == 4
    prune.restore(db, prune.archive_query())
    assert raw_files(db) == before


def test_an_interrupted_restore_finishes_next_time(db, tmp_path, monkeypatch):
    paths = make_catalog(db, tmp_path)
    missing_since(db, {p: 40 for p in paths[:4]})
    before = raw_files(db)
    prune.prune(db, prune.selection(missing_for=timedelta(days=30)), why="x", dry_run=False)
    coll = type(db.files)
    real = coll.delete_many
    monkeypatch.setattr(coll, "delete_many", lambda self, *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        prune.restore(db, prune.archive_query(), batch_size=3)
    monkeypatch.setattr(coll, "delete_many", real)
    assert db.files_archive.count_documents({}) == 4 and db.files.count_documents({}) == 5
    again = prune.restore(db, prune.archive_query())
    assert (again.moved, again.conflicts) == (4, [])
    assert raw_files(db) == before and db.files_archive.count_documents({}) == 0


def test_a_file_indexed_again_is_a_conflict_and_both_are_kept(db, tmp_path):
    paths = make_catalog(db, tmp_path)
    missing_since(db, {paths[0]: 40})
    prune.prune(db, prune.selection(missing_for=timedelta(days=30)), why="x", dry_run=False)
    samples.write_spine_file(paths[0], run=99, n_events=3)
    ingest.inject(db, settings=Settings.load(env={}, site=SITE, workers=1), sources=[paths[0]])
    rep = prune.restore(db, prune.archive_query())
    assert (rep.moved, rep.skipped, rep.conflicts) == (0, 1, [paths[0]])
    assert db.files.find_one({"path": paths[0]})["run"] == 99
    assert db.files_archive.find_one({"path": paths[0]})["run"] == 1


def test_cli_prune_and_restore(db_url, db, tmp_path):
    paths = make_catalog(db, tmp_path)
    missing_since(db, {paths[0]: 40, paths[1]: 5})
    before = raw_files(db)
    r = runner.invoke(app, ["prune", "--db", db_url, "--missing-for", "30d"])
    assert r.exit_code == 0, r.output
    assert paths[0] in r.stdout and "would move 1 documents into files_archive" in r.stdout
    assert raw_files(db) == before
    r = runner.invoke(app, ["prune", "--db", db_url, "--missing-for", "1d", "--yes", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["moved"], out["dry_run"]) == (2, False)
    assert {a["archived"]["why"] for a in db.files_archive.find({})} == {"missing for 1d"}
    r = runner.invoke(app, ["restore-files", "--db", db_url])
    assert r.exit_code == 2 and "say what to restore" in r.stderr
    r = runner.invoke(app, ["restore-files", "--db", db_url, "--all", "--dry-run"])
    assert r.exit_code == 0 and "would move 2 documents back into files" in r.stdout
    assert "run it again without --dry-run" in r.stdout and "--yes" not in r.stdout  # it has no --yes
    r = runner.invoke(app, ["restore-files", "--db", db_url, "--all"])
    assert r.exit_code == 0 and "restored 2 of 2 documents" in r.stdout
    assert raw_files(db) == before
    r = runner.invoke(app, ["prune", "--db", db_url])
    assert r.exit_code == 2 and "say what to prune" in r.stderr


def test_restore_by_run_finds_the_runs_documents_by_when_they_were_archived(db_url, db, tmp_path):
    """`restore-files --run` reads the run's start from `runs` and asks for that stamp too:
    the archive's `archived.at` index finds what the run archived (`archived.run_id` has no
    index: alone, it reads the whole archive). The other run's documents stay archived."""
    paths = make_catalog(db, tmp_path)
    missing_since(db, {paths[0]: 40, paths[1]: 40})
    first = prune.prune(db, prune.selection(missing_for=timedelta(days=30)), why="x", dry_run=False)
    missing_since(db, {paths[2]: 40})
    second = prune.prune(db, prune.selection(missing_for=timedelta(days=30)), why="y", dry_run=False)
    assert (first.moved, second.moved) == (2, 1)
    stamps = {a["archived"]["run_id"]: a["archived"]["at"] for a in db.files_archive.find({})}
    assert prune.archived_at(db, first.run_id) == stamps[first.run_id]
    assert prune.archived_at(db, "20260101T000000Z-nothere") is None
    assert prune.archive_query(run_id="r", at=stamps[first.run_id]) == {
        "$and": [{"archived.run_id": "r", "archived.at": stamps[first.run_id]}]}
    assert prune.archive_query(run_id="r") == {"archived.run_id": "r"}        # a run `runs` forgot
    r = runner.invoke(app, ["restore-files", "--db", db_url, "--run", first.run_id, "--json"])
    assert r.exit_code == 0, r.output
    assert (json.loads(r.stdout)["selected"], json.loads(r.stdout)["moved"]) == (2, 2)
    assert sorted(d["path"] for d in db.files_archive.find({})) == [paths[2]]
    assert db.files.count_documents({"path": {"$in": paths[:2]}}) == 2
