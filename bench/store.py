"""Store benchmark: plain mongomock vs the spine-docs shim, measured in the same run.

    python bench/store.py                 # 10000 and 50000 documents
    python bench/store.py 2000 --vanilla-max 2000

Prints milliseconds per operation (or per document) for the access patterns the catalog
uses. Plain mongomock is quadratic in places, so it is measured at ``min(n, --vanilla-max)``
documents (the size is printed); the shim at every size. The embedded catalog's save/load
times and the process's peak RSS are printed at the end of each size.
"""

from __future__ import annotations

import argparse
import multiprocessing
import datetime as dt
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import mongomock
from pymongo import UpdateOne

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spine_docs import store  # noqa: E402

T0 = dt.datetime(2024, 1, 1)


def make_doc(i: int) -> dict:
    rnd = random.Random(i)
    path = f"/data/run_{i // 100:05d}/file_{i:07d}.h5"
    attrs = {f"attr_{k}": (rnd.random() if k % 3 == 0 else f"v{rnd.randint(0, 99)}" if k % 3 == 1
                           else rnd.randint(0, 10 ** 6)) for k in range(30)}
    return {
        "_id": f"s1:{path}", "site": "s1", "path": path, "size": rnd.randint(10 ** 6, 10 ** 9),
        "mtime": T0 + dt.timedelta(seconds=i), "status": ["ok", "ok", "incomplete", "error"][i % 4],
        "detector": ["icarus", "sbnd", "2x2"][i % 3], "run": i // 100, "subrun": i % 100,
        "attrs": attrs, "attr_types": {k: type(v).__name__ for k, v in attrs.items()},
        "cfg": {"model": {"name": "full_chain", "modules": {f"m{j}": {"a": j, "b": [1, 2, 3]} for j in range(10)}},
                "io": {"loader": {"batch_size": 4, "files": [f"/in/{i}_{j}.root" for j in range(5)]}}},
        "structure": {"items": [{"path": f"/events/d{j}", "kind": "dataset", "shape": [1000, j],
                                 "dtype": "float32"} for j in range(25)], "count": 25, "truncated": False},
        "ingest": {"first_seen": T0, "last_seen": T0, "times_seen": 1,
                   "history": [{"at": T0, "run_id": f"r{k}", "status": "ok"} for k in range(5)]},
    }


def upserts(docs: list[dict]) -> list[UpdateOne]:
    ops = []
    for d in docs:
        body = {k: v for k, v in d.items() if k not in ("_id", "ingest")}
        ops.append(UpdateOne({"_id": d["_id"]}, {
            "$set": {**body, "ingest.last_seen": T0}, "$setOnInsert": {"ingest.first_seen": T0},
            "$inc": {"ingest.times_seen": 1},
            "$push": {"ingest.history": {"$each": [{"at": T0, "run_id": "b", "status": "ok"}], "$slice": -20}},
        }, upsert=True))
    return ops


def touches(ids: list[str], when: dt.datetime) -> list[UpdateOne]:
    """What ingest sends for an unchanged file on a re-scan."""
    return [UpdateOne({"_id": _id}, {"$set": {"ingest.last_seen": when, "ingest.run_id": "r2"},
                                     "$inc": {"ingest.times_seen": 1}}) for _id in ids]


def touch_all(coll, n: int, bulk: bool) -> float:
    """Seconds to touch every document, in unordered bulks of 500 (making ops excluded)."""
    spent = 0.0
    for start in range(0, n, 500):
        ops = touches([make_doc(i)["_id"] for i in range(start, min(n, start + 500))], T0)
        if bulk:
            spent += timed(lambda: coll.bulk_write(ops, ordered=False))
        else:
            spent += timed(lambda: [coll.update_one(op._filter, op._doc) for op in ops])
    return spent


ATTR_KEYS = [{"$project": {"_id": 0, "t": {"$objectToArray": "$attr_types"}}}, {"$unwind": "$t"},
             {"$group": {"_id": {"k": "$t.k", "t": "$t.v"}, "n": {"$sum": 1}}}, {"$sort": {"_id.k": 1}}]
FACETS = [{"$match": {"status": {"$in": ["ok", "incomplete"]}}},
          {"$facet": {f: [{"$group": {"_id": "$" + f, "n": {"$sum": 1}}}, {"$sort": {"n": -1}}]
                      for f in ("detector", "status", "run")}}]


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def insert_all(coll, n: int, chunk: int = 1000) -> float:
    """Seconds spent in insert_many (not in making the documents)."""
    spent = 0.0
    for start in range(0, n, chunk):
        docs = [make_doc(i) for i in range(start, min(n, start + chunk))]
        spent += timed(lambda: coll.insert_many(docs))
    return spent


def measure(coll, n: int, bulk: bool) -> dict[str, str]:
    """Documents are generated on the fly: the benchmark holds none of them itself."""
    out = {}
    coll.create_index([("site", 1), ("path", 1)], unique=True)
    s = insert_all(coll, n)
    out["insert_many, unique index (per doc)"] = f"{s / n * 1e3:.3f}"
    batch = [make_doc(i) for i in range(0, n, max(1, n // 500))][:500]
    if bulk:
        s = timed(lambda: coll.bulk_write(upserts(batch), ordered=False))
    else:  # plain mongomock's bulk_write raises TypeError with pymongo >= 4.11
        s = timed(lambda: [coll.update_one(op._filter, op._doc, upsert=True) for op in upserts(batch)])
    out["upsert by _id, batch of 500 (per op)"] = f"{s / len(batch) * 1e3:.3f}"
    s = timed(lambda: list(coll.find({"site": "s1"}, {"path": 1, "size": 1, "mtime": 1, "_id": 0})))
    out["re-scan find with projection (per doc)"] = f"{s / n * 1e3:.4f}"
    s = touch_all(coll, n, bulk)
    out["re-scan touch by _id, bulks of 500 (per op)"] = f"{s / n * 1e3:.4f}"
    s = timed(lambda: sum(1 for _d in coll.find()))
    out["find() of whole documents, streamed (per doc)"] = f"{s / n * 1e3:.4f}"
    s = timed(lambda: list(coll.find({"status": "ok"}).sort([("mtime", -1), ("_id", 1)]).limit(50)))
    out["sort + limit 50 page (total)"] = f"{s * 1e3:.0f}"
    s = timed(lambda: list(coll.find({"status": "ok"}).sort([("size", 1)]).skip(50).limit(50)))
    out["sort by one field, skip 50 limit 50 (total)"] = f"{s * 1e3:.0f}"
    s = timed(lambda: list(coll.find({}, {"path": 1}).sort([("detector", 1), ("mtime", -1)])))
    out["full sort, two keys (total)"] = f"{s * 1e3:.0f}"
    s = timed(lambda: list(coll.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}])))
    out["$group over all (total)"] = f"{s * 1e3:.0f}"
    s = timed(lambda: list(coll.aggregate(FACETS)))
    out["$match + $facet x3 (total)"] = f"{s * 1e3:.0f}"
    s = timed(lambda: list(coll.aggregate(ATTR_KEYS)))
    out["attribute keys: $objectToArray/$unwind/$group (total)"] = f"{s * 1e3:.0f}"
    return out


def embedded(n: int, root: str, conn) -> None:
    """In a child process (its own peak RSS): fill an embedded catalog in writing() blocks
    of 5000 documents, reopen it from disk, run the re-scan and a $group."""
    db = store.connect(root)
    t = time.perf_counter()
    saves = []
    for start in range(0, n, 5000):
        with store.writing(db):
            db.files.insert_many([make_doc(i) for i in range(start, min(n, start + 5000))])
        saves.append(store.embedded.catalog_of(db).last_save_s)
    fill = time.perf_counter() - t
    store.close(db)
    del db
    t = time.perf_counter()
    db = store.connect(root)
    load = time.perf_counter() - t
    rescan = timed(lambda: list(db.files.find({"site": "s1"}, {"path": 1, "size": 1, "mtime": 1, "_id": 0})))
    group = timed(lambda: list(db.files.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}])))
    ids = [d["_id"] for d in db.files.find({}, {"_id": 1})]

    def touch():
        with store.writing(db):
            for start in range(0, len(ids), 500):
                db.files.bulk_write(touches(ids[start:start + 500], T0), ordered=False)
    touch_s = timed(touch)  # the whole re-scan write: lookups, updates and the save
    size = sum(p.stat().st_size for p in (Path(root) / "spine_docs").glob("*.bson"))
    conn.send((fill, saves[-1], load, rescan, group, touch_s, size,
               resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sizes", nargs="*", type=int, default=[10000, 50000])
    ap.add_argument("--vanilla-max", type=int, default=3000,
                    help="largest size plain mongomock is measured at (it is quadratic)")
    args = ap.parse_args(argv)
    for n in args.sizes:
        nv = min(n, args.vanilla_max)
        vanilla = measure(mongomock.MongoClient().db.files, nv, bulk=False)
        shim = measure(store.connect("mongomock://").files, n, bulk=True)
        print(f"\n== {n} documents (plain mongomock at {nv}); milliseconds")
        print(f"{'operation':56} {'mongomock':>10} {'shim':>10}")
        for k in shim:
            print(f"{k:56} {vanilla[k]:>10} {shim[k]:>10}")
        root = Path(tempfile.mkdtemp(prefix="spine-docs-bench-"))
        try:
            ctx = multiprocessing.get_context("spawn")
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=embedded, args=(n, str(root / "catalog"), child))
            proc.start()
            fill, save, load, rescan, group, touch_s, size, rss = parent.recv()
            proc.join()
            print(f"embedded catalog ({size / 1e6:.0f} MB on disk): fill {fill:.1f} s in writing() blocks "
                  f"of 5000 (last save {save * 1e3:.0f} ms), reload {load * 1e3:.0f} ms, re-scan "
                  f"{rescan * 1e3:.0f} ms ({n / rescan:.0f} docs/s), $group {group * 1e3:.0f} ms, "
                  f"re-scan touch of all in one writing() {touch_s:.2f} s ({n / touch_s:.0f} docs/s, "
                  f"save included); "
                  f"peak RSS of that process {rss:.0f} MB")
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
