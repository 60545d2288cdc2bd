"""links.py: an inject writes each new file's lineage with its document, then fixes what
the rest of the run changed (a parent written in a later batch, a file name that became
ambiguous, a file another process wrote meanwhile, supersede marks of the run's groups).
Expected values are written by hand from the fixtures; the last test also checks that
re-linking every file afterwards (lineage.link, supersede.mark) finds nothing left to change."""

from __future__ import annotations

import pytest

from spine_docs import history, ingest, lineage, links, samples, store, supersede
from spine_docs.settings import Settings

SITE = "s1"


def inject(db, *paths, batch_size=1, workers=1):
    settings = Settings.load(env={}, site=SITE, workers=workers, batch_size=batch_size)
    rep = ingest.inject(db, settings=settings, sources=[str(p) for p in paths])
    assert rep.failed == 0, rep.problems
    return rep


def write(path, inputs, **kw):
    return str(samples.write_spine_file(path, inputs=inputs, n_events=3, **kw))


def lin(db, path):
    return db.files.find_one({"path": path})["lineage"]


INPUTS = ["/raw/bnb/r1.root"]


def versions(tmp_path, **spine_versions):
    """One product (same inputs and config) at ``<tmp_path>/<dir>/f.h5`` for each
    ``dir=SPINE version``, in that order; their paths."""
    out = []
    for d, v in spine_versions.items():
        (tmp_path / d).mkdir()
        out.append(samples.write_spine_file(tmp_path / d / "f.h5", spine_version=v, inputs=INPUTS, n_events=3))
    return out


@pytest.fixture
def finished(monkeypatch):
    """What every Links.finish of the test returned (linked, marked), in order."""
    out = []
    finish = links.Links.finish
    monkeypatch.setattr(links.Links, "finish", lambda self, *a, **k: out.append(finish(self, *a, **k)) or out[-1])
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_a_parent_written_in_a_later_batch_of_the_same_run_is_linked(db, tmp_path, workers):
    d = tmp_path / "p"
    d.mkdir()
    # discovery is in name order: the children come before their parent, one file per batch
    a = write(d / "a_child.h5", [str(d / "z_parent.h5")])
    b = write(d / "b_child.h5", ["staged/ds1/z_parent.h5"])      # the name fallback (same dataset)
    c = write(d / "c_child.h5", ["/raw/x.root"])                  # never resolved: kept as text
    z = write(d / "z_parent.h5", ["/raw/ds1/y.root"])
    for i in range(8):  # enough files for the worker pool (it starts at 8)
        write(d / f"m{i}.h5", [f"/raw/m{i}.root"])
    inject(db, d, workers=workers)
    assert lin(db, a) == {"parents": [{"text": z, "path": z, "how": "path"}], "pending": []}
    assert lin(db, b) == {"parents": [{"text": "staged/ds1/z_parent.h5", "path": z, "how": "name"}], "pending": []}
    assert lin(db, c) == {"parents": [{"text": "/raw/x.root", "path": None, "how": None}],
                          "pending": ["x.root"]}
    assert lin(db, z) == {"parents": [{"text": "/raw/ds1/y.root", "path": None, "how": None}],
                          "pending": ["y.root"]}
    assert sorted(x["path"] for x in db.files.find({"lineage.parents.path": z})) == sorted([a, b])


def test_a_name_that_a_later_file_makes_ambiguous_resolves_nothing(db, tmp_path):
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    child = write(tmp_path / "a.h5", ["s/ds1/p.h5"])
    one = write(tmp_path / "d1" / "p.h5", ["/raw/ds1/1.root"])
    inject(db, child, one)
    assert lin(db, child)["parents"] == [{"text": "s/ds1/p.h5", "path": one, "how": "name"}]
    two = write(tmp_path / "d2" / "p.h5", ["/raw/ds1/2.root"])     # same name, dataset, production
    child2 = write(tmp_path / "b.h5", ["s/ds1/p.h5"])
    inject(db, child2, two)        # child2 is written before "two" arrives: one candidate then
    assert lin(db, child2) == {"parents": [{"text": "s/ds1/p.h5", "path": None, "how": None}], "pending": ["p.h5"]}


def test_an_older_and_a_newer_version_in_one_run_and_a_reindexed_older_keeps_its_mark(db, tmp_path):
    inputs = ["/raw/bnb/r1.root"]
    (tmp_path / "new").mkdir()
    (tmp_path / "old").mkdir()
    old = samples.write_spine_file(tmp_path / "old" / "f.h5", spine_version="0.16.0", inputs=inputs, n_events=3)
    new = samples.write_spine_file(tmp_path / "new" / "f.h5", spine_version="0.17.1", inputs=inputs, n_events=3)
    inject(db, tmp_path)
    marks = {x["path"]: x.get("superseded_by") for x in db.files.find({})}
    assert marks == {str(old): f"{SITE}:{new}", str(new): None}
    samples.write_spine_file(old, spine_version="0.16.0", inputs=inputs, n_events=4)   # re-processed
    rep = inject(db, tmp_path)
    assert rep.indexed == 1
    assert db.files.find_one({"path": str(old)})["superseded_by"] == f"{SITE}:{new}"
    assert db.files.find_one({"path": str(old)})["num_events"] == 4
    samples.write_spine_file(old, spine_version="0.18.0", inputs=inputs, n_events=5)   # now the newest
    inject(db, tmp_path)
    marks = {x["path"]: x.get("superseded_by") for x in db.files.find({})}
    assert marks == {str(old): None, str(new): f"{SITE}:{old}"}
    # the marks are status changes kept in the history, by the run that made them; but a
    # file marked by the run that inserted it (old, in the first run) keeps no version of it
    assert [(v["change"], v["changed"]) for v in history.versions(db, f"{SITE}:{new}")] == \
        [("supersede", ["superseded_by"])]
    assert [v["change"] for v in history.versions(db, f"{SITE}:{old}")] == ["changed", "changed", "supersede"]


def test_a_parent_another_process_wrote_meanwhile_is_found_at_the_end(db):
    child = {"_id": "s1:/d/c.h5", "path": "/d/c.h5", "name": "c.h5", "site": "s1",
             "inputs": ["/d/p.h5"], "dataset": "ds", "prod_version": None, "status": "ok"}
    run = links.Links(db)
    [entry] = run.lineages([child])
    assert entry == {"parents": [{"text": "/d/p.h5", "path": None, "how": None}], "pending": ["p.h5"]}
    with store.writing(db):
        db.files.insert_one({**child, "lineage": entry})
        db.files.insert_one({"_id": "s2:/d/p.h5", "path": "/d/p.h5", "name": "p.h5", "site": "s2"})
        assert run.finish() == (1, 0)
    assert db.files.find_one({"_id": "s1:/d/c.h5"})["lineage"] == {
        "parents": [{"text": "/d/p.h5", "path": "/d/p.h5", "how": "path"}], "pending": []}


def test_nothing_is_left_for_a_relink_after_the_run(db, tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    paths = []
    for i in range(12):  # parents after children, bare names, two versions of some products
        parent = d / f"z{i % 4}.h5"
        inputs = [str(parent)] if i % 3 == 0 else ([f"s/ds1/z{i % 4}.h5"] if i % 3 == 1 else [f"/raw/ds1/{i % 5}.root"])
        paths.append(write(d / f"f{i:02d}.h5", inputs, spine_version="0.16.0" if i % 2 else "0.17.1"))
    for i in range(4):
        paths.append(write(d / f"z{i}.h5", [f"/raw/ds1/{i}.root"]))
    inject(db, d, batch_size=3)
    before = {x["_id"]: x for x in db.files.find({})}
    with store.writing(db):
        assert lineage.link(db, paths, site=SITE) == 0
        assert supersede.mark(db, paths, site=SITE) == 0
    assert {x["_id"]: x for x in db.files.find({})} == before
    # and the links are there: every f with a path or name input to z has it resolved
    resolved = {x["path"] for x in db.files.find({"lineage.parents.how": {"$in": ["path", "name"]}})}
    assert resolved == {p for i, p in enumerate(paths[:12]) if i % 3 != 2}
    # same inputs and config, an older SPINE version: f05 and z0 (/raw/0.root), f11 and z1
    # (/raw/1.root); f02/z2 and f08/z3 have equal versions and supersede nothing
    marked = {x["path"]: x["superseded_by"] for x in db.files.find({"superseded_by": {"$type": "string"}})}
    assert marked == {paths[5]: f"{SITE}:{paths[12]}", paths[11]: f"{SITE}:{paths[13]}"}


def _version(name, prod):
    """A document of one product (same inputs and config) at production ``prod``."""
    return {"_id": f"s1:/p/{name}.h5", "path": f"/p/{name}.h5", "name": f"{name}.h5", "site": "s1",
            "inputs": ["/raw/r1.root"], "config": "full_chain", "dataset": "ds", "prod_version": prod,
            "spine_version_key": None, "status": "ok"}


@pytest.mark.skip_backends("server")  # on a server the run's marks are all written at the end
def test_a_batch_s_marks_go_with_it_and_the_files_written_before_are_marked_after_it(db):
    run = links.Links(db)
    a = _version("a", "1.0.0")
    [la] = run.lineages([a])
    assert run.marks() == ({}, [])                     # alone in its group: the latest
    with store.writing(db):
        db.files.insert_one({**a, "lineage": la})
    b, c = _version("b", "2.0.0"), _version("c", "0.5.0")
    lb, lc = run.lineages([b, c])
    inline, ops = run.marks()
    assert inline == {"s1:/p/c.h5": "s1:/p/b.h5"}      # c is new: its mark goes with it
    assert [(op._filter, op._doc) for op in ops] == [  # a was written before: an update
        ({"_id": "s1:/p/a.h5"}, {"$set": {"superseded_by": "s1:/p/b.h5"}})]
    with store.writing(db):
        db.files.insert_many([{**b, "lineage": lb}, {**c, "lineage": lc, "superseded_by": inline[c["_id"]]}])
        assert supersede.write_marks(db, ops, keep=0, fresh=run.inserted) == 1
        assert run.marks() == ({}, [])                 # nothing changed since
        assert run.finish() == (0, 0)                  # nothing left for the end
    assert {x["_id"]: x.get("superseded_by") for x in db.files.find({})} == {
        "s1:/p/a.h5": "s1:/p/b.h5", "s1:/p/b.h5": None, "s1:/p/c.h5": "s1:/p/b.h5"}


@pytest.mark.skip_backends("server")  # a server marks the whole run at the end anyway
def test_a_newer_version_another_process_wrote_meanwhile_marks_the_run_s_file_at_the_end(db):
    run = links.Links(db)
    a = _version("a", "1.0.0")
    [la] = run.lineages([a])
    assert run.marks() == ({}, [])                     # alone in its group, as far as it knows
    with store.writing(db):
        db.files.insert_one({**a, "lineage": la})
        db.files.insert_one({**_version("b", "2.0.0"), "_id": "s2:/p/b.h5", "site": "s2"})
        assert run.finish() == (0, 1)
    assert db.files.find_one({"_id": "s1:/p/a.h5"})["superseded_by"] == "s2:/p/b.h5"


@pytest.mark.skip_backends("server")
def test_finish_marks_what_no_marks_call_planned(db):
    run = links.Links(db)
    new, old = _version("b", "2.0.0"), _version("a", "1.0.0")
    lineages = run.lineages([new, old])                # written without asking for the marks
    with store.writing(db):
        db.files.insert_many([{**d, "lineage": lin} for d, lin in zip([new, old], lineages)])
        assert run.finish() == (0, 1)
    assert db.files.find_one({"_id": "s1:/p/a.h5"})["superseded_by"] == "s1:/p/b.h5"


def test_an_inject_leaves_no_mark_for_its_end_and_writes_a_new_file_s_mark_where_a_set_would(
        db, tmp_path, finished, backend):
    mid, new, old = versions(tmp_path, a="0.16.0", b="0.17.1", c="0.15.0")
    inject(db, tmp_path, batch_size=1)   # a/f.h5, then b/f.h5, then c/f.h5 (batches differ by backend)
    marks = {x["path"]: x.get("superseded_by") for x in db.files.find({})}
    assert marks == {str(mid): f"{SITE}:{new}", str(new): None, str(old): f"{SITE}:{new}"}
    if backend != "server":
        assert finished == [(0, 0)]      # every mark was written with its batch
    # old's mark came with its document, mid's by a later update: both last, as a $set adds them
    # (a decoded document keeps the stored order of its fields)
    for path in (mid, old):
        assert list(db.files.find_one({"path": str(path)}))[-2:] == ["lineage", "superseded_by"]


def test_reindexing_every_file_moves_a_mark_the_new_versions_change(db, tmp_path, finished, backend):
    one, two = versions(tmp_path, a="0.16.0", b="0.17.1")
    inject(db, tmp_path)
    finished.clear()
    samples.write_spine_file(two, spine_version="0.15.0", inputs=INPUTS, n_events=3)  # now the older
    settings = Settings.load(env={}, site=SITE, workers=1, batch_size=10)  # one batch
    # --no-skip-existing: every file is written as new (an insert that finds its document
    # there, then the upsert): the mark a document has must still go
    rep = ingest.inject(db, settings=settings, sources=[str(tmp_path)], skip_existing=False)
    assert rep.failed == 0, rep.problems
    marks = {x["path"]: x.get("superseded_by") for x in db.files.find({})}
    assert marks == {str(one): None, str(two): f"{SITE}:{one}"}
    if backend != "server":  # by updates with the batches (not with the upserts: they keep a mark)
        assert finished == [(0, 0)]


@pytest.mark.skip_backends("server")
def test_a_batch_s_mark_updates_come_in_the_order_of_their_groups_whatever_the_hash_seed(db):
    run = links.Links(db)
    olds = [{**_version(f"old{i}", "1.0.0"), "inputs": [f"/raw/r{i}.root"]} for i in (5, 2, 7, 0, 3, 6, 1, 4)]
    run.lineages(olds)
    assert run.marks() == ({}, [])
    with store.writing(db):
        db.files.insert_many([dict(d) for d in olds])
    run.lineages([{**d, "_id": d["_id"].replace("old", "new"), "path": d["path"].replace("old", "new"),
                   "name": d["name"].replace("old", "new"), "prod_version": "2.0.0"} for d in olds])
    _inline, ops = run.marks()
    # one update per group, in the order of the groups' keys (their inputs), not of a set
    assert [op._filter["_id"] for op in ops] == [f"s1:/p/old{i}.h5" for i in range(8)]
