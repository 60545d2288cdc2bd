"""History: inject keeps a file's previous document in ``file_versions`` when its content
changed; versions are rebuilt from reverse deltas or whole documents; bounded; read by
version number and as of a date. Expected values are written by hand or are the documents
the catalog held before (read back from ``files``), never computed by ``history``."""

from __future__ import annotations

import copy
import os
from datetime import datetime, timedelta, timezone

import pytest

from spine_docs import history, ingest, samples, store
from spine_docs.plans import Shape, choose, indexes_of
from spine_docs.schema import load_schema
from spine_docs.settings import Settings

UTC = timezone.utc
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- pure parts

OLD = {
    "_id": "s:/f.h5", "path": "/f.h5", "size": 100, "status": "ok", "fingerprint": "aaa",
    "attrs": {"energy": 1.5, "a%2Eb": "dot", "%24x": "dollar", "énergie": [1, 2, 3], "nan": float("nan")},
    "cfg": {"model": {"network": {"depth": 5, "width": 8}}, "io": {"reader": {"file_keys": ["in0.root"]}}},
    "structure": {"items": [{"path": "events", "kind": "dataset", "shape": [10], "dtype": "f4"}],
                  "count": 1, "truncated": False},
    "ingest": {"run_id": "r1", "first_seen": T0},
}


def new_of(old):
    new = copy.deepcopy(old)
    new["fingerprint"] = "bbb"
    new["attrs"]["energy"] = 2.5                 # changed
    del new["attrs"]["a%2Eb"]                    # removed
    new["attrs"]["added"] = True                 # added
    new["cfg"]["model"]["network"]["depth"] = 6  # deep in cfg
    new["ingest"] = {"run_id": "r2"}
    return new


def test_delta_names_old_values_one_level_into_nested_fields():
    d, changed = history.delta(OLD, new_of(OLD))
    assert changed == ["fingerprint", "attrs", "cfg"]          # NaN equals itself; ingest ignored
    assert d == {"set": [[["fingerprint"], "aaa"], [["attrs", "energy"], 1.5], [["attrs", "a%2Eb"], "dot"],
                         [["cfg", "model"], {"network": {"depth": 5, "width": 8}}]],
                 "unset": [["attrs", "added"]]}


def test_undo_gives_the_old_document_back_from_a_delta_and_from_a_whole():
    old = dict(OLD, job={"log": "x" * 5000})                   # big enough for a delta
    new = new_of(old)
    v = history.version_document(old, new, version=1, replaced_at=T0, run_id="r2", valid_from=T0)
    assert v["kind"] == "delta" and v["_id"] == "s:/f.h5#0" and v["indexed_by"] == "r1"
    back = history.undo(copy.deepcopy(new), v)
    assert back["attrs"] == {"energy": 1.5, "%24x": "dollar", "énergie": [1, 2, 3], "nan": back["attrs"]["nan"],
                             "a%2Eb": "dot"}
    assert back["cfg"]["model"]["network"] == {"depth": 5, "width": 8} and back["fingerprint"] == "aaa"
    assert back["ingest"] == {"run_id": "r2"}                   # bookkeeping is the current one's
    assert back["job"] == old["job"]
    whole = dict(v, kind="whole", whole={k: x for k, x in OLD.items() if k not in ("_id", "ingest")})
    whole.pop("delta")
    back2 = history.undo(copy.deepcopy(new), whole)
    assert back2["cfg"] == OLD["cfg"] and back2["attrs"].keys() == OLD["attrs"].keys()


def test_whole_or_delta_is_chosen_by_size():
    small = {"_id": "s:/g.h5", "status": "ok", "fingerprint": "a", "size": 1}
    v = history.version_document(small, dict(small, fingerprint="b", size=2), version=3,
                                 replaced_at=T0, run_id="r", valid_from=None)
    assert v["kind"] == "whole" and v["whole"] == {"status": "ok", "fingerprint": "a", "size": 1}
    big = dict(OLD, job={"log": "x" * 10_000})
    v = history.version_document(big, dict(big, fingerprint="c"), version=3, replaced_at=T0,
                                 run_id="r", valid_from=None)
    assert v["kind"] == "delta" and v["delta"] == {"set": [[["fingerprint"], "aaa"]], "unset": []}
    assert history.version_document(OLD, copy.deepcopy(OLD), version=1, replaced_at=T0,
                                    run_id="r", valid_from=None) is None


def test_an_error_document_only_changes_status_error_size_mtime():
    new = {"_id": "s:/f.h5", "status": "error", "error": "truncated", "size": 3, "mtime": T0,
           "attrs": {}, "fingerprint": None}
    eff = history.effective(OLD, new)
    assert eff["attrs"] == OLD["attrs"] and eff["fingerprint"] == "aaa"
    assert (eff["status"], eff["error"], eff["size"]) == ("error", "truncated", 3)


def test_as_of_a_date_is_the_end_of_that_day():
    assert history.as_of_instant("2026-11-01") == datetime(2026, 11, 1, 23, 59, 59, 999000, tzinfo=UTC)
    assert history.as_of_instant("2026-11-01T10:00:00Z") == datetime(2026, 11, 1, 10, tzinfo=UTC)
    with pytest.raises(history.HistoryError):
        history.as_of_instant("yesterday")


def test_every_history_lookup_is_index_served():
    ix = indexes_of(load_schema(), "file_versions")
    from spine_docs.queries import shapes
    for s in shapes.version_shapes():
        assert choose(s, ix).plan == "IXSCAN", s.name
    without = [i for i in ix if i.name != "file_id_1_version_1"]
    assert choose(Shape("x", {"file_id": "a"}, (("version", 1),)), without).plan == "COLLSCAN"


# --------------------------------------------------------------------------- through inject

def settings_for(db_url, **kw):
    return Settings.load(env={}, db=db_url, site="hist", workers=1, **kw)


def write(path, energy, *, depth=None, mtime=None):
    root = {"energy": energy, "a.b": "dotted", "$dollar": "d", "énergie": "é"}
    samples.write_spine_file(path, root_attrs=root, seed=0, n_events=3)
    ts = (mtime or T0).timestamp()
    os.utime(path, (ts, ts))
    return path


def inject(db, db_url, path, **kw):
    rep = ingest.inject(db, settings=settings_for(db_url, **kw), sources=[str(path)])
    assert rep.failed == 0, rep.problems
    return rep


def current(db, path):
    doc = db.files.find_one({"path": str(path)})
    return doc


def content(doc):
    return {k: v for k, v in doc.items() if k not in ("ingest", "version")}


def test_inject_keeps_the_previous_document_when_content_changed(db, db_url, tmp_path):
    p = write(tmp_path / "f.h5", 1.0)
    inject(db, db_url, p)
    first = current(db, p)
    assert db.file_versions.count_documents({}) == 0

    os.utime(p, (T0.timestamp() + 60,) * 2)                   # touched: same content
    touched = inject(db, db_url, p)
    assert db.file_versions.count_documents({}) == 0
    inject(db, db_url, p)                                      # unchanged: only seen
    first = current(db, p)                                     # what the re-processing replaces

    write(p, 2.0, mtime=T0 + timedelta(hours=1))              # re-processed
    rep = inject(db, db_url, p)
    now = current(db, p)
    assert now["attrs"]["energy"] == 2.0
    (v,) = list(db.file_versions.find({}))
    assert (v["file_id"], v["version"], v["run_id"], v["change"]) == (first["_id"], 1, rep.run_id, "changed")
    assert "attrs" in v["changed"] and "fingerprint" in v["changed"]
    assert v["indexed_by"] == touched.run_id                   # the last run that wrote it
    assert history.versions(db, first["_id"])[0]["version"] == 1

    old = history.document_version(db, now, 1)
    assert content(old) == content(first)
    assert old["version"]["number"] == 1 and old["version"]["valid_to"] is not None
    cur = history.document_version(db, now, 2)
    assert content(cur) == content(now) and cur["version"]["valid_to"] is None
    for bad in (0, 3):
        with pytest.raises(history.HistoryError):
            history.document_version(db, now, bad)


def test_versions_are_bounded_by_the_setting(db, db_url, tmp_path):
    p = tmp_path / "f.h5"
    seen = []
    for i in range(5):
        write(p, float(i), mtime=T0 + timedelta(hours=i))
        inject(db, db_url, p, keep_versions=2)
        seen.append(current(db, p))
    fid = seen[0]["_id"]
    assert db.file_versions.count_documents({"file_id": fid}) == 2    # a ring of two slots
    assert [v["version"] for v in history.versions(db, fid)] == [3, 4]
    now = seen[-1]
    for n in (3, 4, 5):
        assert content(history.document_version(db, now, n)) == content(seen[n - 1])
    for n in (1, 2):
        with pytest.raises(history.HistoryError, match="not kept"):
            history.document_version(db, now, n)
    # the bound lowered to one: the older version is pruned by the next write
    write(p, 9.0, mtime=T0 + timedelta(hours=9))
    inject(db, db_url, p, keep_versions=1)
    assert [v["version"] for v in history.versions(db, fid)] == [5]
    assert db.file_versions.count_documents({"file_id": fid, "kind": "pruned"}) == 1
    assert content(history.document_version(db, current(db, p), 5)) == content(seen[4])


def test_no_history_when_keep_is_zero(db, db_url, tmp_path):
    p = write(tmp_path / "f.h5", 1.0)
    inject(db, db_url, p, keep_versions=0)
    write(p, 2.0, mtime=T0 + timedelta(hours=1))
    inject(db, db_url, p, keep_versions=0)
    assert db.file_versions.count_documents({}) == 0


def test_a_status_change_is_a_version(db, db_url, tmp_path):
    p = write(tmp_path / "f.h5", 1.0)
    inject(db, db_url, p)
    good = current(db, p)
    p.write_bytes(b"not hdf5 any more")
    os.utime(p, (T0.timestamp() + 7200,) * 2)
    ingest.inject(db, settings=settings_for(db_url), sources=[str(p)])
    bad = current(db, p)
    assert bad["status"] == "error" and bad["attrs"] == good["attrs"]
    (v,) = list(db.file_versions.find({}))
    assert v["status"] == "ok" and set(v["changed"]) == {"status", "error", "size", "mtime"}
    assert content(history.document_version(db, bad, 1)) == content(good)


def test_no_skip_existing_reindex_keeps_the_replaced_document(db, db_url, tmp_path):
    p = write(tmp_path / "f.h5", 1.0)
    inject(db, db_url, p)
    first = current(db, p)
    write(p, 3.0)                                              # same mtime: only a re-index sees it
    rep = ingest.inject(db, settings=settings_for(db_url), sources=[str(p)], skip_existing=False)
    (v,) = list(db.file_versions.find({}))
    assert v["change"] == "reindexed" and v["run_id"] == rep.run_id
    assert content(history.document_version(db, current(db, p), 1)) == content(first)


class Clock(datetime):
    """ingest's clock, set by the test (the two runs of a test would share one second)."""
    at = T0

    @classmethod
    def now(cls, tz=None):
        return cls.at


def test_as_of_before_the_first_between_and_after_the_last(db, db_url, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "datetime", Clock)
    Clock.at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    p = write(tmp_path / "f.h5", 1.0)
    inject(db, db_url, p)
    first = current(db, p)
    write(p, 2.0, mtime=T0 + timedelta(hours=1))
    Clock.at = datetime(2026, 3, 5, 12, tzinfo=UTC)
    inject(db, db_url, p)
    now = current(db, p)
    (v,) = list(db.file_versions.find({}))
    seen = first["ingest"]["first_seen"].replace(tzinfo=UTC)
    replaced = v["replaced_at"].replace(tzinfo=UTC)
    with pytest.raises(history.HistoryError, match="oldest known version"):
        history.document_as_of(db, now, seen - timedelta(seconds=1))
    with pytest.raises(history.HistoryError):
        history.document_as_of(db, now, "2000-01-01")
    assert content(history.document_as_of(db, now, seen)) == content(first)
    assert content(history.document_as_of(db, now, replaced - timedelta(milliseconds=1))) == content(first)
    assert content(history.document_as_of(db, now, replaced)) == content(now)
    assert content(history.document_as_of(db, now, "2999-01-01")) == content(now)
    # dates: the end of that day
    with pytest.raises(history.HistoryError):
        history.document_as_of(db, now, "2026-02-28")
    assert content(history.document_as_of(db, now, "2026-03-01")) == content(first)
    assert content(history.document_as_of(db, now, "2026-03-04")) == content(first)
    assert content(history.document_as_of(db, now, "2026-03-05")) == content(now)
    assert (seen, replaced) == (datetime(2026, 3, 1, 12, tzinfo=UTC), datetime(2026, 3, 5, 12, tzinfo=UTC))
