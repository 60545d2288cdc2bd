"""ingest.py: discovery, skip/re-index, bad input, parallel workers, run log, concurrency."""

from __future__ import annotations

import multiprocessing
import os
import time

import bson
import pytest

from spine_docs import discovery, ingest, samples, schema, store
from spine_docs.extract import normalise_path
from spine_docs.settings import Settings

SITE = "s1"


def settings(**kw):
    kw.setdefault("site", SITE)
    kw.setdefault("workers", 1)
    return Settings.load(env={}, **kw)


def tree(tmp_path, n=12, name="prod"):
    return samples.write_prod_tree(tmp_path / name, n, seed=3)


def test_inject_indexes_every_file(db, tmp_path):
    paths = tree(tmp_path)
    rep = ingest.inject(db, settings=settings(), sources=[str(tmp_path / "prod" / "**" / "*.h5")])
    assert rep.failed == 0 and rep.exit_code == 0
    assert rep.indexed == len(paths) == db.files.count_documents({})
    assert rep.unchanged == 0
    doc = db.files.find_one({"path": str(paths[0])})
    assert doc["site"] == SITE and doc["ingest"]["times_seen"] == 1
    assert doc["ingest"]["first_seen"] == doc["ingest"]["last_seen"]
    assert doc["ingest"]["history"][-1]["change"] == "new"
    run = db.runs.find_one({"_id": rep.run_id})
    assert run["state"] == "done" and run["counts"]["indexed"] == len(paths)
    assert schema.db_version(db) == schema.CODE_SCHEMA_VERSION


def test_rescan_skips_unchanged_and_reindexes_changed(db, tmp_path):
    paths = tree(tmp_path)
    src = [str(tmp_path / "prod")]
    ingest.inject(db, settings=settings(), sources=src)
    rep = ingest.inject(db, settings=settings(), sources=src)
    assert (rep.indexed, rep.unchanged, rep.failed) == (0, len(paths), 0)
    assert db.files.count_documents({"ingest.times_seen": 2, "ingest.run_id": rep.run_id}) == len(paths)

    # change one file: new content and a new mtime
    samples.write_spine_file(paths[0], model="changed_model")
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    rep = ingest.inject(db, settings=settings(), sources=src)
    assert (rep.indexed, rep.unchanged) == (1, len(paths) - 1)
    doc = db.files.find_one({"path": str(paths[0])})
    assert doc["model"] == "changed_model"
    assert doc["ingest"]["times_seen"] == 3
    assert [h["change"] for h in doc["ingest"]["history"]] == ["new", "changed"]

    # forced: every insert finds its document, and becomes an upsert (nothing is refused)
    first_seen = db.files.find_one({"path": str(paths[1])})["ingest"]["first_seen"]
    rep = ingest.inject(db, settings=settings(), sources=src, skip_existing=False)
    assert rep.indexed == len(paths) and rep.unchanged == 0
    assert (rep.failed, rep.problems) == (0, [])
    assert db.files.count_documents({}) == len(paths)
    doc = db.files.find_one({"path": str(paths[1])})
    assert doc["ingest"]["times_seen"] == 4 and doc["ingest"]["first_seen"] == first_seen
    assert [h["change"] for h in doc["ingest"]["history"]] == ["new", "reindexed"]


def test_new_files_are_inserted_with_what_an_upsert_gives_them(tmp_path):
    from datetime import datetime, timezone

    from bson.raw_bson import RawBSONDocument

    from spine_docs.extract import Limits, extract, extract_bson

    paths = tree(tmp_path, n=5)
    (tmp_path / "bad.h5").write_text("not hdf5")
    paths.append(tmp_path / "bad.h5")
    now, run = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc), "r-1"
    limits = Limits.from_settings(settings())
    for form in ("bson", "dict", "bytes"):  # bytes: what a worker hands over, with its status
        inserted = store.connect(f"mongomock://insert-{form}")
        upserted = store.connect(f"mongomock://upsert-{form}")
        for p in paths:
            doc = (RawBSONDocument(extract_bson(p, site=SITE, limits=limits)) if form != "dict"
                   else extract(p, site=SITE, limits=limits))
            given = (doc.raw, {"status": doc["status"]}) if form == "bytes" else (doc, {})
            inserted.files.bulk_write([ingest.insert_op(given[0], now=now, run_id=run, **given[1])])
            upserted.files.bulk_write([ingest.upsert_op(doc, now=now, run_id=run, change="new")])
        a = sorted(inserted.files.find(), key=lambda d: d["_id"])
        b = sorted(upserted.files.find(), key=lambda d: d["_id"])
        assert len(a) == len(paths) and a == b
        for x, y in zip(a, b):
            if x["status"] != "error":  # an error upsert sets its four fields first
                assert list(x) == list(y) and list(x["ingest"]) == list(y["ingest"])


def test_new_files_are_not_decoded_to_be_written(tmp_path, monkeypatch):
    paths = tree(tmp_path, n=10)
    db = store.connect("mongomock://insert-first")
    upserts = []
    real = ingest.upsert_op
    monkeypatch.setattr(ingest, "upsert_op", lambda *a, **k: upserts.append(1) or real(*a, **k))
    rep = ingest.inject(db, settings=settings(workers=2), sources=[str(tmp_path / "prod")])
    assert rep.indexed == len(paths) and upserts == []
    # a run that did not know them (another run indexed them meanwhile): upserts after all
    monkeypatch.setattr(ingest, "existing_index", lambda db, site: {})
    rep = ingest.inject(db, settings=settings(workers=2), sources=[str(tmp_path / "prod")])
    assert (rep.indexed, rep.failed, rep.problems) == (len(paths), 0, [])
    assert len(upserts) == len(paths) == db.files.count_documents({"ingest.times_seen": 2})
    assert {len(d["ingest"]["history"]) for d in db.files.find()} == {2}


def test_bad_input_is_reported_and_the_rest_indexed(db, tmp_path):
    good = [samples.write_spine_file(tmp_path / f"g{i}.h5", seed=i) for i in range(3)]
    (tmp_path / "empty.h5").write_bytes(b"")
    (tmp_path / "text.h5").write_text("hello")
    (tmp_path / "dir.h5").mkdir()
    os.symlink(tmp_path / "nowhere.h5", tmp_path / "broken.h5")
    rep = ingest.inject(db, settings=settings(),
                        sources=[str(tmp_path / "*.h5"), str(tmp_path / "nothing*.h5"),
                                 str(tmp_path / "missing.h5")])
    assert rep.indexed == 3 and rep.exit_code == 1
    reasons = {os.path.basename(p.path): p.reason for p in rep.problems}
    assert "empty" in reasons["empty.h5"]
    assert "not an HDF5" in reasons["text.h5"]
    assert "directory" in reasons["dir.h5"]
    assert "broken symbolic link" in reasons["broken.h5"]
    assert "vanished" in reasons["missing.h5"]
    assert "matched no files" in reasons["nothing*.h5"]
    assert rep.failed == 6
    assert db.files.count_documents({"status": "error"}) == 5
    assert db.files.count_documents({"status": "ok"}) == len(good)
    run = db.runs.find_one({"_id": rep.run_id})
    assert run["state"] == "failed" and run["problems_count"] == 6


def test_error_keeps_what_was_read_before(db, tmp_path):
    p = samples.write_spine_file(tmp_path / "a.h5", model="m1")
    ingest.inject(db, settings=settings(), sources=[str(p)])
    p.write_bytes(p.read_bytes()[:100])  # the file got truncated
    rep = ingest.inject(db, settings=settings(), sources=[str(p)])
    assert rep.failed == 1
    doc = db.files.find_one({"path": str(p)})
    assert doc["status"] == "error" and "HDF5" in doc["error"]
    assert doc["model"] == "m1"  # not lost
    # errors are retried on the next scan even when unchanged
    rep = ingest.inject(db, settings=settings(), sources=[str(p)])
    assert rep.unchanged == 0 and rep.failed == 1


def test_workers_give_the_same_documents(tmp_path):
    paths = tree(tmp_path, n=16)
    one = store.connect("mongomock://ingest-one")
    two = store.connect("mongomock://ingest-two")
    ingest.inject(one, settings=settings(workers=1), sources=[str(tmp_path / "prod")])
    ingest.inject(two, settings=settings(workers=2), sources=[str(tmp_path / "prod")])
    strip = lambda d: {k: v for k, v in d.items() if k != "ingest"}  # noqa: E731
    a = sorted((strip(d) for d in one.files.find()), key=lambda d: d["_id"])
    b = sorted((strip(d) for d in two.files.find()), key=lambda d: d["_id"])
    assert len(a) == len(paths) and a == b


def test_source_list(db, tmp_path):
    paths = tree(tmp_path, n=5)
    lst = tmp_path / "list.txt"
    lst.write_text("# files\n" + "\n".join(map(str, paths[:3])) + "\n")
    rep = ingest.inject(db, settings=settings(), source_list=lst)
    assert rep.indexed == 3


def test_schema_mismatch_is_refused(db, tmp_path):
    p = samples.write_spine_file(tmp_path / "a.h5")
    ingest.inject(db, settings=settings(), sources=[str(p)])
    with store.writing(db):
        db.meta.update_one({"_id": "schema"}, {"$set": {"version": 999}})
    with pytest.raises(schema.SchemaMismatch, match="migrate"):
        ingest.inject(db, settings=settings(), sources=[str(p)])


def _inject_proc(catalog, src, site):
    db = store.connect(catalog)
    ingest.inject(db, settings=Settings.load(env={}, site=site, workers=1, batch_size=3), sources=[src])


def test_two_processes_inject_into_one_embedded_catalog(tmp_path):
    a = samples.write_prod_tree(tmp_path / "a", 15, seed=1)
    b = samples.write_prod_tree(tmp_path / "b", 15, seed=2)
    catalog = str(tmp_path / "catalog")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_inject_proc, args=(catalog, str(tmp_path / d), d)) for d in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    db = store.connect(catalog)
    assert db.files.count_documents({"site": "a"}) == len(a)
    assert db.files.count_documents({"site": "b"}) == len(b)
    assert db.runs.count_documents({}) == 2
    # the files on disk decode with plain bson, as mongorestore would read them
    with open(os.path.join(catalog, "spine_docs", "files.bson"), "rb") as fh:
        assert sum(1 for _ in bson.decode_file_iter(fh)) == len(a) + len(b)


def test_refused_documents_are_counted_once(tmp_path, monkeypatch):
    from pymongo.errors import BulkWriteError

    db = store.connect("mongomock://refused")
    good = [samples.write_spine_file(tmp_path / f"g{i}.h5", seed=i) for i in range(3)]
    (tmp_path / "bad.h5").write_text("x")
    coll_type = type(db.files)
    real = coll_type.bulk_write

    def refuse_first(self, ops, *a, **k):
        if self.name != "files":
            return real(self, ops, *a, **k)
        real(self, ops[1:], *a, **k)
        raise BulkWriteError({"writeErrors": [{"index": 0, "errmsg": "Document failed validation"}]})

    monkeypatch.setattr(coll_type, "bulk_write", refuse_first)
    rep = ingest.inject(db, settings=settings(), sources=[str(tmp_path / "*.h5")])
    # sorted paths: bad.h5 comes first and was already a failure; it must not count twice
    assert (rep.indexed, rep.failed) == (3, 1)
    assert any("refused" in p.reason for p in rep.problems)
    assert db.files.count_documents({}) == len(good)


def test_stat_many_keeps_order_and_goes_to_threads_only_when_stat_is_slow():
    import threading

    paths = [f"/p/{i:04d}" for i in range(1000)]
    used = set()

    def fast(p):
        used.add(threading.get_ident())
        return p, None

    def slow(p):
        used.add(threading.get_ident())
        time.sleep(0.0002)
        return p, "slow"

    # a filesystem that answers fast: one thread (this one), in order
    assert list(ingest.stat_many(paths, stat=fast, probe=100, slow_s=1.0)) == [(p, None) for p in paths]
    assert used == {threading.get_ident()}
    # a slow one (GPFS, Lustre, NFS): after the probe, threads; still in order
    used.clear()
    assert list(ingest.stat_many(paths, stat=slow, probe=100, slow_s=1e-4, threads=8)) \
        == [(p, "slow") for p in paths]
    assert len(used) > 2
    # fewer paths than the probe, or no threads allowed: no threads
    used.clear()
    assert list(ingest.stat_many(paths[:50], stat=slow, probe=100, slow_s=1e-4)) == [(p, "slow") for p in paths[:50]]
    assert list(ingest.stat_many(paths[:300], stat=slow, probe=100, slow_s=1e-4, threads=1)) \
        == [(p, "slow") for p in paths[:300]]
    assert used == {threading.get_ident()}


def test_a_rescan_on_a_slow_filesystem_stats_in_threads(db, tmp_path, monkeypatch):
    paths = tree(tmp_path, n=12)
    src = [str(tmp_path / "prod")]
    ingest.inject(db, settings=settings(), sources=src)
    real = ingest.stat_many
    monkeypatch.setattr(ingest, "stat_many", lambda ps: real(ps, probe=4, slow_s=0.0, threads=4))
    rep = ingest.inject(db, settings=settings(), sources=src)
    assert (rep.indexed, rep.unchanged, rep.failed) == (0, len(paths), 0)
    os.remove(paths[7])  # still reported by path, from a thread
    rep = ingest.inject(db, settings=settings(), sources=src + [str(paths[7])])
    assert (rep.unchanged, rep.failed) == (len(paths) - 1, 1)
    assert rep.problems[0].path == str(paths[7]) and "vanished" in rep.problems[0].reason


# --------------------------------------------------------------------------- behaviours a
# small mistake would break silently (each was broken on purpose once to see the test fail)

def _ms(value):
    """Milliseconds since the epoch of a stored date (naive dates are UTC)."""
    from datetime import timezone

    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return round(value.timestamp() * 1000)


def _set_mtime(path, seconds):
    os.utime(path, ns=(seconds * 1_000_000_000, seconds * 1_000_000_000))


def test_the_same_paths_under_two_sites_are_two_sets_of_documents(db, tmp_path):
    paths = tree(tmp_path, n=6)
    src = [str(tmp_path / "prod")]
    first = ingest.inject(db, settings=settings(site="site_a"), sources=src)
    second = ingest.inject(db, settings=settings(site="site_b"), sources=src)
    assert (first.indexed, first.unchanged) == (len(paths), 0)
    # what site_a holds is no reason to skip site_b's copies
    assert (second.indexed, second.unchanged, second.failed) == (len(paths), 0, 0)
    for site in ("site_a", "site_b"):
        got = sorted(d["path"] for d in db.files.find({"site": site}))
        assert got == sorted(str(p) for p in paths), site
        assert db.files.count_documents({"_id": {"$in": [f"{site}:{p}" for p in paths]}}) == len(paths)
    # and a re-scan of each site sees its own documents unchanged
    again = ingest.inject(db, settings=settings(site="site_b"), sources=src)
    assert (again.indexed, again.unchanged) == (0, len(paths))


def test_a_size_change_alone_or_an_mtime_change_alone_reindexes(db, tmp_path):
    a = samples.write_spine_file(tmp_path / "a.h5", model="before", seed=1)
    b = samples.write_spine_file(tmp_path / "b.h5", model="before", seed=2)
    _set_mtime(a, 1_700_000_000)
    _set_mtime(b, 1_700_000_000)
    src = [str(tmp_path / "*.h5")]
    ingest.inject(db, settings=settings(), sources=src)
    old_size = os.path.getsize(a)

    # a: new content of another size, but the same mtime as before
    samples.write_spine_file(a, model="bigger", n_events=200, seed=1)
    _set_mtime(a, 1_700_000_000)
    assert os.path.getsize(a) != old_size
    rep = ingest.inject(db, settings=settings(), sources=src)
    assert (rep.indexed, rep.unchanged) == (1, 1)
    doc = db.files.find_one({"path": str(a)})
    assert doc["model"] == "bigger" and doc["size"] == os.path.getsize(a)
    assert [h["change"] for h in doc["ingest"]["history"]] == ["new", "changed"]

    # b: only its mtime moves (same bytes, same size)
    size_b = os.path.getsize(b)
    _set_mtime(b, 1_700_000_600)
    rep = ingest.inject(db, settings=settings(), sources=src)
    assert (rep.indexed, rep.unchanged) == (1, 1)
    doc = db.files.find_one({"path": str(b)})
    assert doc["size"] == size_b and _ms(doc["mtime"]) == 1_700_000_600_000
    assert [h["change"] for h in doc["ingest"]["history"]] == ["new", "changed"]


def test_history_keeps_the_newest_entries(db, tmp_path):
    assert ingest.HISTORY_LENGTH == 20
    p = tmp_path / "a.h5"
    runs = []
    for i in range(25):
        if i % 5 == 4:
            p.write_bytes(b"not HDF5, this time " + bytes(i))  # an error entry every fifth run
        else:
            samples.write_spine_file(p, model=f"m{i}", seed=1)
        _set_mtime(p, 1_700_000_000 + 60 * i)
        rep = ingest.inject(db, settings=settings(), sources=[str(p)])
        runs.append((rep.run_id, "error" if i % 5 == 4 else "ok"))
    doc = db.files.find_one({"path": str(p)})
    history = doc["ingest"]["history"]
    assert doc["ingest"]["times_seen"] == 25
    assert [(h["run_id"], h["status"]) for h in history] == runs[5:]
    # the first entry ("new") is among those dropped; an error is retried as "retried"
    assert [h["change"] for h in history] == [
        "retried" if i % 5 == 0 else "changed" for i in range(5, 25)]


def test_a_directory_whose_name_looks_like_a_glob_is_a_directory(db_url, tmp_path):
    from typer.testing import CliRunner

    from spine_docs.cli import app

    wanted = []
    for name in ("dir[1]", "a*b", "c?d"):
        d = tmp_path / name / "sub"
        d.mkdir(parents=True)
        wanted.append(samples.write_spine_file(d / "f.h5", seed=len(wanted)))
    # what the names would match as globs: decoys that must not be indexed
    for name in ("dir1", "aXYZb", "cXd"):
        (tmp_path / name).mkdir()
        samples.write_spine_file(tmp_path / name / "decoy.h5", seed=9)
    paths, problems = ingest.discover([str(tmp_path / "dir[1]")])
    assert (paths, problems) == ([str(wanted[0])], [])

    env = {"SPINE_DOCS_SITE": SITE, "SPINE_DOCS_WORKERS": "1"}
    for name, path in zip(("dir[1]", "a*b", "c?d"), wanted):
        r = CliRunner().invoke(app, ["inject", "--db", db_url, "--source", str(tmp_path / name),
                                     "--no-progress", "--json"], env=env)
        assert r.exit_code == 0, r.output
        assert '"indexed": 1' in r.stdout and '"failed": 0' in r.stdout, r.stdout
    db = store.connect(db_url)
    assert sorted(d["path"] for d in db.files.find({})) == sorted(map(str, wanted))


def test_an_error_reindex_records_the_new_size_and_mtime(db, tmp_path):
    p = samples.write_spine_file(tmp_path / "a.h5", model="m1")
    _set_mtime(p, 1_700_000_000)
    ingest.inject(db, settings=settings(), sources=[str(p)])
    assert db.files.find_one({"path": str(p)})["status"] == "ok"
    p.write_bytes(p.read_bytes()[:100])  # truncated: another size ...
    _set_mtime(p, 1_700_003_600)         # ... and another mtime
    rep = ingest.inject(db, settings=settings(), sources=[str(p)])
    assert rep.failed == 1
    doc = db.files.find_one({"path": str(p)})
    assert doc["status"] == "error"
    assert doc["size"] == 100 and _ms(doc["mtime"]) == 1_700_003_600_000
    assert doc["model"] == "m1"  # what was read before stays


def test_a_directory_source_finds_what_a_recursive_glob_finds(tmp_path):
    import glob

    top = tmp_path / "top"
    for rel in ["a.h5", "b.H5", "c.h5.json", "notes.txt", ".hidden.h5", "x/d.h5", "x/y/z/e.h5",
                "x/.hid/f.h5", ".dot/g.h5", "dir.h5/h.h5", "x/y/.i.h5", "w/j.h5x"]:
        p = top / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    (top / "empty").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "k.h5").write_bytes(b"x")
    os.symlink(outside, top / "linked")
    os.symlink(tmp_path / "nowhere", top / "dangling.h5")

    expected = sorted(glob.glob(os.path.join(glob.escape(str(top)), "**", "*.h5"), recursive=True))
    # what glob finds, spelled out: no hidden name on the way, directories and links included
    assert [os.path.relpath(p, top) for p in expected] == [
        "a.h5", "dangling.h5", "dir.h5", "dir.h5/h.h5", "linked/k.h5", "x/d.h5", "x/y/z/e.h5"]
    assert sorted(discovery.h5_files_below(str(top))) == expected
    paths, problems = ingest.discover([str(top)])
    assert (paths, problems) == ([normalise_path(p) for p in expected], [])


def test_the_workers_forkserver_starts_early_only_when_they_will_be_used(db, tmp_path, monkeypatch):
    paths = tree(tmp_path, n=12)
    src = [str(tmp_path / "prod")]
    calls = []
    real_start, real_discover = ingest.start_pool, ingest.discover
    monkeypatch.setattr(ingest, "start_pool", lambda mods: calls.append("start") or real_start(mods))
    monkeypatch.setattr(ingest, "discover", lambda *a, **k: calls.append("discover") or real_discover(*a, **k))

    # a catalog without the site's files: every file will be extracted, start at once
    rep = ingest.inject(db, settings=settings(workers=2), sources=src)
    assert rep.indexed == len(paths) and calls == ["start", "discover"]
    # unchanged: no worker at all
    calls.clear()
    rep = ingest.inject(db, settings=settings(workers=2), sources=src)
    assert rep.unchanged == len(paths) and calls == ["discover"]
    # too few changed files for workers (extracted here), then enough: started once they are found
    for n in (ingest.MIN_PARALLEL - 1, ingest.MIN_PARALLEL):
        for p in paths[:n]:
            st = os.stat(p)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        calls.clear()
        rep = ingest.inject(db, settings=settings(workers=2), sources=src)
        assert rep.indexed == n
        assert calls == (["discover"] if n < ingest.MIN_PARALLEL else ["discover", "start"])
    # one worker: never
    calls.clear()
    ingest.inject(db, settings=settings(workers=1), sources=src, skip_existing=False)
    assert calls == ["discover"]


def test_the_last_batch_is_small_however_long_the_commit_interval(tmp_path, monkeypatch):
    # a large embedded catalog commits every tens of seconds; the batch that is written
    # after the last file (while nothing else runs) is cut to batch_size files all the same
    samples.write_prod_tree(tmp_path / "prod", 23, seed=3)
    db = store.connect(str(tmp_path / "cat"))
    monkeypatch.setattr(store, "commit_interval", lambda db: 1e9)
    sizes = []
    real = ingest._Writer.flush

    def flush(self):
        sizes.append(len(self.extractions))
        return real(self)

    monkeypatch.setattr(ingest._Writer, "flush", flush)
    rep = ingest.inject(db, settings=settings(batch_size=5), sources=[str(tmp_path / "prod")])
    assert rep.indexed == 23 and rep.failed == 0
    assert [n for n in sizes if n] == [18, 5]  # when 5 were still to come, then those 5
    assert db.files.count_documents({}) == 23


def _mixed_sources(tmp_path):
    """Sources of every kind, with their problems: a directory, a glob, a list file (with
    a comment and a missing path), a glob that matches nothing, a plain missing path."""
    top = tmp_path / "top"
    for rel in ["a.h5", "x/b.h5", "x/y/c.h5", ".hidden/d.h5", "other/e.h5"]:
        p = top / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    listed = tmp_path / "list.txt"
    listed.write_text(f"# made by hand\n{top / 'other' / 'e.h5'}\n{tmp_path / 'gone.h5'}\n")
    sources = [str(top / "x"), str(top / "*.h5"), str(tmp_path / "none" / "*.h5"), str(tmp_path / "missing.h5")]
    expected = sorted(str(p) for p in (top / "a.h5", top / "x/b.h5", top / "x/y/c.h5", top / "other/e.h5",
                                       tmp_path / "gone.h5", tmp_path / "missing.h5"))
    return sources, listed, expected


@pytest.mark.parametrize("workers", [1, 2])
def test_a_discovery_finds_what_discover_finds(tmp_path, workers, monkeypatch):
    sources, listed, expected = _mixed_sources(tmp_path)
    monkeypatch.chdir(tmp_path)  # a relative source is read from this directory, as here
    sources[0] = os.path.join("top", "x")
    with ingest.Discovery(sources, listed, workers=workers) as found:
        paths, problems = found.result()
        assert found.result() == (paths, problems)  # asked again: the same answer
    assert paths == expected
    assert problems == [ingest.Problem(str(tmp_path / "none" / "*.h5"), "the pattern matched no files")]
    assert (paths, problems) == ingest.discover(sources, listed)


def test_a_discovery_expands_a_home_directory_in_this_process(tmp_path, monkeypatch):
    # a worker has the environment of the forkserver it came from, not this process's
    from spine_docs import pool, worker

    pool.start(worker.MODULES)  # running before HOME changes, as in a long-lived caller
    (tmp_path / "home" / "data").mkdir(parents=True)
    (tmp_path / "home" / "data" / "f.h5").write_bytes(b"x")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with ingest.Discovery(["~/data"], workers=2) as found:
        assert found.result() == ([str(tmp_path / "home" / "data" / "f.h5")], [])


def test_inject_refuses_a_discovery_of_other_sources(db, tmp_path):
    with ingest.Discovery([str(tmp_path / "a")]) as found, pytest.raises(ValueError, match="not of these sources"):
        ingest.inject(db, settings=settings(), sources=[str(tmp_path / "b")], discovery=found)


def test_inject_uses_the_discovery_it_is_given(db, tmp_path, monkeypatch):
    paths = tree(tmp_path, n=9)
    src = [str(tmp_path / "prod")]
    with ingest.Discovery(src, workers=2) as found:
        monkeypatch.setattr(ingest, "discover", lambda *a, **k: pytest.fail("walked the tree again"))
        rep = ingest.inject(db, settings=settings(workers=2), sources=src, discovery=found)
    assert rep.indexed == len(paths) == 9 and rep.failed == 0


def test_only_files_the_catalog_holds_are_stated_before_extraction(db, tmp_path, monkeypatch):
    # a new file is opened by its worker anyway (which reports a file that vanished or
    # cannot be read); stat() here only tells whether a known file is unchanged
    paths = tree(tmp_path, n=9)
    src = [str(tmp_path / "prod")]
    given = []
    real = ingest.stat_many
    monkeypatch.setattr(ingest, "stat_many", lambda ps, **k: given.append(list(ps)) or real(ps, **k))
    rep = ingest.inject(db, settings=settings(), sources=src)
    assert rep.indexed == 9 and given == []
    new = samples.write_spine_file(tmp_path / "prod" / "zz_new.h5", seed=11)
    rep = ingest.inject(db, settings=settings(), sources=src)
    assert rep.indexed == 1 and rep.unchanged == 9
    assert given == [sorted(map(str, paths))]  # the 9 known ones, not the new one
    assert db.files.count_documents({"path": str(new)}) == 1
