"""A migration that rewrites ``files`` documents keeps ``file_versions`` consistent
(``ops.transform_files``): a test-only migration renames the root attribute ``energy`` to
``beam_energy``; after ``migrate up`` and after ``down``, ``--as-of`` and ``diff PATH@1``
still give the old values, under the new name and then the old one. Both kinds of stored
version are covered: reverse deltas (a real file, re-indexed twice) and a whole document (a
small document written here). Expected values are the energies the test wrote, by hand."""

from __future__ import annotations

import os
from datetime import datetime, timezone

from spine_docs import asof, diff as docdiff, history, ingest, migrate, samples, store
from spine_docs.migrate import ops
from spine_docs.queries import Filter
from spine_docs.settings import Settings

from test_migrate_helpers import HEAD, NEXT, db, kind, migrations_copy, reopen  # noqa: F401

UTC = timezone.utc
SITE = "s"
SMALL = f"{SITE}:/small.h5"

RENAME = '''"""Test-only: rename the root attribute energy to beam_energy, in files and in the history."""
from spine_docs.migrate import ops

description = "rename attrs.energy to attrs.beam_energy"


def _rename(doc, a, b):
    done = False
    for f in ("attrs", "attr_types"):
        sub = doc.get(f)
        if isinstance(sub, dict) and a in sub:
            sub[b] = sub.pop(a)
            done = True
    return doc if done else None


def plan(db):
    return []


def up(db):
    ops.transform_files(db, lambda d: _rename(d, "energy", "beam_energy"), batch_size=2)


def down(db):
    ops.transform_files(db, lambda d: _rename(d, "beam_energy", "energy"), batch_size=2)
'''


class Clock(datetime):
    at = datetime(2026, 1, 1, tzinfo=UTC)

    @classmethod
    def now(cls, tz=None):
        return cls.at


def _at(day, hour=12):
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def build(db, tmp_path, monkeypatch):
    """f1: energy 1.0 (Mar 1), 2.0 (Mar 5), 4.0 (Mar 9): two delta versions. SMALL: 6.0 from
    Mar 1, 7.0 from Mar 3: one whole version."""
    monkeypatch.setattr(ingest, "datetime", Clock)
    f1 = tmp_path / "f1.h5"
    for day, energy, hour in ((1, 1.0, 0), (5, 2.0, 1), (9, 4.0, 2)):
        Clock.at = _at(day)
        samples.write_spine_file(f1, root_attrs={"energy": energy}, seed=0, n_events=3)
        ts = datetime(2026, 1, 1, hour, tzinfo=UTC).timestamp()
        os.utime(f1, (ts, ts))
        rep = ingest.inject(db, settings=Settings.load(env={}, site=SITE, workers=1), sources=[str(f1)])
        assert rep.failed == 0
    old = {"_id": SMALL, "site": SITE, "path": "/small.h5", "name": "small.h5", "dir": "/", "status": "ok",
           "attrs": {"energy": 6.0}, "attr_types": {"energy": "double"}, "ingest": {"first_seen": _at(1)}}
    new = {**old, "attrs": {"energy": 7.0}}
    version = history.version_document(old, new, version=1, replaced_at=_at(3), run_id="R", valid_from=_at(1))
    with store.writing(db):
        db.files.insert_one(new)
        db.file_versions.insert_one(version)
    kinds = sorted(v["kind"] for v in db.file_versions.find({}))
    assert kinds == ["delta", "delta", "whole"], kinds
    return f"{SITE}:{f1}"


def energies(db, when, name):
    return {d["_id"]: d["attrs"].get(name) for d in asof.documents(db, Filter(as_of=when))}


def names(db, when):
    return {k for d in asof.documents(db, Filter(as_of=when)) for k in d["attrs"]}


def documents(db, coll):
    return sorted(db[coll].find({}), key=lambda d: d["_id"])


def test_a_rename_reaches_the_history_up_and_down(kind, db, tmp_path, monkeypatch):
    f1 = build(db, tmp_path, monkeypatch)
    files_before, versions_before = documents(db, "files"), documents(db, "file_versions")
    mdir, sfile = migrations_copy(tmp_path, {f"{NEXT}_rename_energy.py": RENAME})

    res = migrate.up(db, migrations_dir=mdir, schema_file=sfile, backup_root=tmp_path / "b")
    assert res.ok, res.message
    db = reopen(kind, db, tmp_path)
    assert energies(db, "2026-03-02", "beam_energy") == {f1: 1.0, SMALL: 6.0}
    assert energies(db, "2026-03-04", "beam_energy") == {f1: 1.0, SMALL: 7.0}
    assert energies(db, "2026-03-06", "beam_energy") == {f1: 2.0, SMALL: 7.0}
    assert energies(db, "2026-03-10", "beam_energy") == {f1: 4.0, SMALL: 7.0}
    for when in ("2026-03-02", "2026-03-06", "2026-03-10"):
        assert "energy" not in names(db, when)
    first = docdiff.resolve(db, f"{f1}@1")
    assert first["attrs"]["beam_energy"] == 1.0 and "energy" not in first["attrs"]
    assert first["attr_types"].get("beam_energy") and "energy" not in first["attr_types"]
    d = docdiff.diff_documents(first, docdiff.resolve(db, f1))
    assert [(r["key"], r["change"], r["a"], r["b"]) for r in d["attrs"]] == [("beam_energy", "changed", 1.0, 4.0)]
    small = docdiff.resolve(db, f"{SMALL}@1")
    assert small["attrs"] == {"beam_energy": 6.0}
    assert db.file_versions.find_one({"_id": f"{SMALL}#0"})["whole"]["attrs"] == {"beam_energy": 6.0}

    res = migrate.down(db, to=HEAD, migrations_dir=mdir, schema_file=sfile, backup_root=tmp_path / "b")
    assert res.ok, res.message
    db = reopen(kind, db, tmp_path)
    assert energies(db, "2026-03-02", "energy") == {f1: 1.0, SMALL: 6.0}
    assert energies(db, "2026-03-06", "energy") == {f1: 2.0, SMALL: 7.0}
    assert "beam_energy" not in names(db, "2026-03-02")
    assert docdiff.resolve(db, f"{f1}@2")["attrs"]["energy"] == 2.0
    # the same documents and versions as before the round trip (key order aside)
    assert documents(db, "files") == files_before
    assert documents(db, "file_versions") == versions_before


def test_transform_files_counts_and_leaves_what_it_does_not_change(kind, db, tmp_path, monkeypatch):
    f1 = build(db, tmp_path, monkeypatch)
    versions_before = documents(db, "file_versions")
    # a transformation that only touches SMALL: its document and its one version
    def only_small(doc):
        if doc["_id"] != SMALL or "tag" in doc:
            return None
        doc["tag"] = "x"
        return doc

    assert ops.transform_files(db, only_small) == (1, 1)
    assert ops.transform_files(db, only_small) == (0, 0)          # idempotent: nothing left
    after = {v["_id"]: v for v in documents(db, "file_versions")}
    assert after[f"{SMALL}#0"]["whole"]["tag"] == "x"
    assert [v for v in versions_before if v["file_id"] == f1] == [v for v in after.values() if v["file_id"] == f1]
