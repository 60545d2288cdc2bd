"""Set-diff benchmark: two productions of N files each, compared with
``spine-docs diff --left prod_version=v2 --right prod_version=v3`` (matched by input file).

    python bench/diff.py                  # 2 x 50,000 files, in memory (mongomock://)
    python bench/diff.py 10000 --db /tmp/cat    # an embedded catalog directory

The two sets are written first (documents shaped like extracted ones: 30 root attributes,
a nested cfg, 25 datasets; every pair differs in a few attributes, one cfg key and, for one
pair in ten, a dataset's shape; 1% of the files of each side have no partner). Then the set
diff runs and the script prints its time, the Python memory it allocated at its peak
(tracemalloc, around the diff only, after the engine's column cache of the sort key is
built: what the diff holds) and the process's peak RSS (which also counts the catalog,
held in memory by mongomock and the embedded catalog).

On the in-process engines a sort by an array field (``inputs``) is a blocking sort of the
matching entries inside the engine (about 0.7 KB per file, over the catalog it already
holds in memory); a sort by a top-level scalar (``--match-on name``) walks a sorted list of
references. The merge itself holds one key group at a time. On a server both are index
walks (``{inputs, _id}``, ``{name, _id}``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spine_docs import schema, setdiff, store  # noqa: E402

T0 = dt.datetime(2026, 1, 1)


def make_doc(prod: str, i: int, n: int) -> dict:
    rnd = random.Random(i)
    path = f"/data/{prod}/chunk_{i // 1000:03d}/file_{i:07d}.h5"
    k = i if prod == "v2" or i % 100 else i + n  # 1% of v3 reads other inputs: unmatched
    attrs = {f"attr_{j}": (rnd.random() if j % 3 == 0 else f"v{rnd.randint(0, 99)}" if j % 3 == 1
                           else rnd.randint(0, 10 ** 6)) for j in range(30)}
    attrs["energy"] = 1.0 + (0.5 if prod == "v3" else 0.0)
    depth = 5 if prod == "v2" else 6
    shape = [1000, 3] if prod == "v2" or i % 10 else [1000, 4]
    return {
        "_id": f"s1:{path}", "site": "s1", "path": path, "name": f"file_{i:07d}.h5",
        "dir": str(Path(path).parent), "size": 10 ** 6 + i + (prod == "v3") * (i % 7),
        "mtime": T0 + dt.timedelta(seconds=i), "status": "ok", "dataset": "mpvmpr", "prod_version": prod,
        "num_events": 100 + (prod == "v3") * (i % 3 == 0), "spine_version": "0.17.1",
        "inputs": [f"/in/mpvmpr_{k:07d}.root"], "inputs_count": 1,
        "attrs": attrs, "attr_types": {a: type(v).__name__ for a, v in attrs.items()},
        "cfg": {"model": {"name": "full_chain", "network": {"depth": depth},
                          "modules": {f"m{j}": {"a": j, "b": [1, 2, 3]} for j in range(10)}},
                "io": {"reader": {"file_keys": [f"/in/mpvmpr_{k:07d}.root"]}}},
        "structure": {"items": [{"path": f"/events/d{j}", "kind": "dataset",
                                 "shape": shape if j == 0 else [1000, j], "dtype": "float32"}
                                for j in range(25)], "count": 25, "truncated": False},
        "ingest": {"first_seen": T0, "last_seen": T0, "times_seen": 1, "run_id": "bench", "history": []},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", nargs="?", type=int, default=50_000, help="files per side")
    ap.add_argument("--db", default="mongomock://bench-diff", help="catalog URL or directory")
    ap.add_argument("--match-on", default="input", help="input (default) or name")
    args = ap.parse_args()
    db = store.connect(args.db)
    started = time.perf_counter()
    with store.writing(db):
        if schema.db_version(db) == 0:
            schema.setup(db)
        db.files.delete_many({"prod_version": {"$in": ["v2", "v3"]}})
        for prod in ("v2", "v3"):
            for lo in range(0, args.n, 5000):
                db.files.insert_many([make_doc(prod, i, args.n) for i in range(lo, min(args.n, lo + 5000))])
    print(f"wrote 2 x {args.n:,} files in {time.perf_counter() - started:.1f} s ({store.describe(db)})")

    left = setdiff.side_filter(db, "prod_version=v2")
    right = setdiff.side_filter(db, "prod_version=v3")
    # the in-process engines build a cache of the sort key's column for the whole collection
    # on the first sorted find (the catalog is in memory there anyway): built before the
    # measurement, so that the peak is what the diff itself holds, as on a server
    for flt in (left, right):
        fld, tie, _ = setdiff.sort_plan(flt, args.match_on)
        list(db.files.find(flt.to_mongo(), {"_id": 1}, sort=[(fld, 1), (tie, 1)], limit=1))
    tracemalloc.start()
    started = time.perf_counter()
    result = setdiff.compare_sets(db, left, right, match_on=args.match_on)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"set diff of 2 x {args.n:,} files matched on {args.match_on}: {result.pairs:,} pairs, {result.left.unmatched:,} + "
          f"{result.right.unmatched:,} unmatched, {len(result.rows())} differing keys")
    print(f"time {seconds:.1f} s ({2 * args.n / seconds:,.0f} files/s, under tracemalloc)")
    print(f"peak memory allocated by the diff (tracemalloc): {peak / 2**20:.1f} MiB")
    print(f"peak RSS of the process (catalog included): {rss:.0f} MiB")


if __name__ == "__main__":
    main()
