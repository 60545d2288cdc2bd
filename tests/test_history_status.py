"""Status changes are versions too (issue 14 item 1): verify's verdicts, retire/unretire and
supersede keep the document they replace in ``file_versions``, bounded by ``keep_versions``,
written in one batch per bulk write; ``--as-of`` and ``diff PATH@N`` see them. Expected
values are the statuses the test set at each date, by hand."""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone

import pytest
from pymongo import UpdateMany, UpdateOne

from spine_docs import asof, diff as docdiff, history, ingest, retire, samples, schema, store, supersede, verify
from spine_docs import spine as spine_mod
from spine_docs.queries import Filter
from spine_docs.settings import Settings

from dated import frozen_clock

UTC = timezone.utc
SITE = "s"


Clock = frozen_clock()


# --------------------------------------------------------------------------- pure parts

def test_updated_applies_set_and_unset_and_leaves_the_ingest_bookkeeping():
    doc = {"_id": "x", "status": "ok", "verify": {"verdict": "missing", "at": 1}, "a": {"b": 1},
           "ingest": {"history": [1]}}
    out = history.updated(doc, {"$set": {"status": "missing", "a.c": 2}, "$unset": {"verify": "", "no.such": ""},
                                "$push": {"ingest.history": {"$each": [2]}}})
    assert out == {"_id": "x", "status": "missing", "a": {"b": 1, "c": 2}, "ingest": {"history": [1]}}
    assert doc["status"] == "ok" and "c" not in doc["a"]          # a copy
    with pytest.raises(ValueError, match=r"\$inc"):
        history.updated(doc, {"$inc": {"size": 1}})


def test_status_ops_keep_only_the_documents_whose_guard_holds():
    t = datetime(2026, 3, 1, tzinfo=UTC)
    first = datetime(2026, 2, 1, tzinfo=UTC)
    docs = {i: {"_id": i, "status": s, "path": f"/{i}", "ingest": {"first_seen": first}}
            for i, s in (("a", "ok"), ("b", "missing"), ("c", "ok"))}
    before = history.Before(docs=dict(docs), newest={"c": (4, datetime(2026, 2, 20, tzinfo=UTC))})
    ops = history.status_ops(before, [
        UpdateOne({"_id": "a", "status": "ok"}, {"$set": {"status": "missing"}}),
        UpdateOne({"_id": "b", "status": "ok"}, {"$set": {"status": "corrupt"}}),   # guard fails: b is missing
        UpdateMany({"_id": {"$in": ["c", "zz"]}}, {"$set": {"retired": {"reason": "r"}}}),
    ], now=t, run_id="R", keep=3, change="verify")
    kept = [op._doc for op in ops if isinstance(op._doc, dict) and "file_id" in op._doc]
    assert [(v["_id"], v["file_id"], v["version"], v["status"], v["changed"], v["valid_from"])
            for v in kept] == [("a#0", "a", 1, "ok", ["status"], first),
                               ("c#1", "c", 5, "ok", ["retired"], datetime(2026, 2, 20, tzinfo=UTC))]
    # c: version 5 > keep 3, so the versions up to 2 are marked pruned in the same write
    (prune,) = [op for op in ops if isinstance(op, UpdateMany)]
    assert prune._filter == {"file_id": "c", "version": {"$lte": 2}, "kind": {"$ne": "pruned"}}
    assert history.status_ops(before, [UpdateOne({"_id": "a"}, {"$set": {"status": "x"}})],
                              now=t, run_id="R", keep=0, change="verify") == []


# --------------------------------------------------------------------------- on a catalog

def settings(db_url, **kw):
    return Settings.load(env={}, db=db_url, site=SITE, workers=1, **kw)


@pytest.fixture
def lifecycle(db, db_url, tmp_path, monkeypatch):
    """f1 and f2 indexed Mar 1; f1 missing Mar 3 (verify), back Mar 5 (verify); f2 retired
    Mar 7, unretired Mar 9."""
    for mod in (ingest, verify, retire):
        monkeypatch.setattr(mod, "datetime", Clock)
    d = tmp_path / "data"
    d.mkdir()
    f1 = str(samples.write_spine_file(d / "f1.h5", run=1, n_events=3, seed=1))
    f2 = str(samples.write_spine_file(d / "f2.h5", run=2, n_events=3, seed=2))
    Clock.at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert ingest.inject(db, settings=settings(db_url), sources=[str(d)]).indexed == 2
    keep = tmp_path / "keep"
    keep.mkdir()
    shutil.copy2(f1, keep / "f1.h5")
    os.remove(f1)
    Clock.at = datetime(2026, 3, 3, 12, tzinfo=UTC)
    assert verify.verify(db, site=SITE).missing == 1
    shutil.copy2(keep / "f1.h5", f1)
    Clock.at = datetime(2026, 3, 5, 12, tzinfo=UTC)
    assert verify.verify(db, site=SITE).restored == 1
    Clock.at = datetime(2026, 3, 7, 12, tzinfo=UTC)
    assert retire.retire(db, {"path": f2}, reason="bad calibration", dry_run=False).changed == 1
    Clock.at = datetime(2026, 3, 9, 12, tzinfo=UTC)
    assert retire.unretire(db, {"path": f2}).changed == 1
    return db, f1, f2


def states(db, when, **kw):
    return {os.path.basename(d["path"]): (d["status"], (d.get("retired") or {}).get("reason"))
            for d in asof.documents(db, Filter(as_of=when, **kw))}


def test_verify_and_retire_changes_are_seen_as_of_a_date(lifecycle):
    db, f1, f2 = lifecycle
    assert states(db, "2026-03-02") == {"f1.h5": ("ok", None), "f2.h5": ("ok", None)}
    assert states(db, "2026-03-04") == {"f1.h5": ("missing", None), "f2.h5": ("ok", None)}
    assert states(db, "2026-03-04", status=["missing"]) == {"f1.h5": ("missing", None)}
    assert states(db, "2026-03-06") == {"f1.h5": ("ok", None), "f2.h5": ("ok", None)}
    assert states(db, "2026-03-08") == {"f1.h5": ("ok", None)}              # retired: hidden
    assert states(db, "2026-03-08", include_retired=True) == {
        "f1.h5": ("ok", None), "f2.h5": ("ok", "bad calibration")}
    assert states(db, "2026-03-10") == {"f1.h5": ("ok", None), "f2.h5": ("ok", None)}


def test_each_status_change_is_one_version_with_what_changed(lifecycle):
    db, f1, f2 = lifecycle
    got = {(v["file_id"].split("/")[-1], v["version"]): (v["change"], v["status"], sorted(v["changed"]))
           for v in db.file_versions.find({})}
    assert got == {("f1.h5", 1): ("verify", "ok", ["status", "verify"]),
                   ("f1.h5", 2): ("verify", "missing", ["status", "verify"]),
                   ("f2.h5", 1): ("retire", "ok", ["retired"]),
                   ("f2.h5", 2): ("unretire", "ok", ["retired"])}
    # diff PATH@N reads them: version 2 of f1 is the missing one, version 1 the first
    v1, v2, now = (docdiff.resolve(db, ref, site=SITE) for ref in (f"{f1}@1", f"{f1}@2", f1))
    assert (v1["status"], v2["status"], v2["verify"]["verdict"], now["status"]) == ("ok", "missing", "missing", "ok")
    assert "verify" not in v1 and "verify" not in now
    d = docdiff.diff_documents(v2, now)
    assert any(r["key"] == "status" and (r["a"], r["b"]) == ("missing", "ok") for s in ("facts", "promoted") for r in d[s])


def test_status_versions_are_bounded_by_keep_versions(db, db_url, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    f = str(samples.write_spine_file(d / "f.h5", run=1, n_events=3, seed=1))
    ingest.inject(db, settings=settings(db_url), sources=[str(d)])
    for i in range(3):   # retire, unretire, retire: three versions, one slot
        (retire.retire if i % 2 == 0 else retire.unretire)(
            db, {"path": f}, **({"reason": f"r{i}", "dry_run": False} if i % 2 == 0 else {}), keep_versions=1)
    # version 1: before r0 (not retired), 2: retired r0, 3: not retired (replaced by r2)
    (v,) = list(db.file_versions.find({}))
    assert (v["version"], v["change"], v["_id"].endswith("#0")) == (3, "retire", True)
    cur = db.files.find_one({"path": f})
    assert cur["retired"]["reason"] == "r2"
    assert "retired" not in history.document_version(db, cur, 3)
    with pytest.raises(history.HistoryError, match="not kept"):
        history.document_version(db, cur, 2)
    retire.unretire(db, {"path": f}, keep_versions=0)      # 0 keeps none
    assert db.file_versions.count_documents({}) == 1


def test_one_versions_write_per_verify_batch(db, db_url, tmp_path, monkeypatch):
    d = tmp_path / "data"
    d.mkdir()
    paths = [str(samples.write_spine_file(d / f"f{i}.h5", run=i + 1, n_events=3, seed=i)) for i in range(4)]
    ingest.inject(db, settings=settings(db_url), sources=[str(d)])
    for p in paths[:3]:
        os.remove(p)
    coll = type(db.files)
    real_write, real_find = coll.bulk_write, coll.find
    calls = []
    monkeypatch.setattr(coll, "bulk_write", lambda self, ops, *a, **k: (calls.append(("write", self.name, len(ops))),
                                                                        real_write(self, ops, *a, **k))[1])
    monkeypatch.setattr(coll, "find", lambda self, *a, **k: (calls.append(("find", self.name)),
                                                             real_find(self, *a, **k))[1])
    assert verify.verify(db, site=SITE).missing == 3
    assert [c for c in calls if c[0] == "write"] == [("write", "files", 3), ("write", "file_versions", 3)]
    # the documents and their newest versions: one read each for the batch (and the scan)
    assert calls.count(("find", "file_versions")) == 1


def _doc(name, prod):
    path = f"/data/{name}.h5"
    return {"_id": f"s1:{path}", "site": "s1", "path": path, "name": f"{name}.h5", "status": "ok",
            "inputs": ["/raw/a.root"], "config": "cfg", "prod_version": prod, "spine_version": "0.1",
            "spine_version_key": spine_mod.semver_key("0.1"), "mtime": datetime(2024, 1, 1),
            "ingest": {"first_seen": datetime(2024, 1, 1, tzinfo=UTC)}}


def test_a_superseded_mark_is_a_version(db):
    schema.setup(db)
    with store.writing(db):
        db.files.insert_many([_doc("v1", "1.0.0")])
    supersede.mark(db, ["/data/v1.h5"], now=datetime(2024, 2, 1, tzinfo=UTC))
    assert db.file_versions.count_documents({}) == 0         # nothing to mark
    with store.writing(db):
        db.files.insert_many([_doc("v2", "2.0.0")])
    supersede.mark(db, ["/data/v2.h5"], run_id="R2", now=datetime(2024, 3, 1, tzinfo=UTC))
    (v,) = list(db.file_versions.find({}))
    assert (v["file_id"], v["version"], v["change"], v["run_id"], v["changed"]) == (
        "s1:/data/v1.h5", 1, "supersede", "R2", ["superseded_by"])
    cur = db.files.find_one({"_id": "s1:/data/v1.h5"})
    assert cur["superseded_by"] == "s1:/data/v2.h5"
    assert "superseded_by" not in history.document_as_of(db, cur, "2024-02-15")
    assert history.document_as_of(db, cur, "2024-03-02")["superseded_by"] == "s1:/data/v2.h5"
