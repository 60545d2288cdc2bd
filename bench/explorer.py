"""Explorer benchmark: ``python bench/explorer.py [--sizes 10000 50000] [--dir D] [--keep]
[--reuse] [--repeat R]``.

Prints how long each explorer page view's queries take with the explorer's own result cache
cold (the app then reuses results until files are added), on an embedded catalog of each
size (target: under 1 s per page). Each page view is timed twice in a row on a catalog
opened just for it: the **first view** (nothing cached anywhere: what the first visitor
after the explorer opened the catalog, or after an inject changed it, waits for) and
**again** (the engine's caches warm: any later visit and every change of filter). The
queries are the ones the pages make with their defaults (``app/views/*.py`` through
``app/explorer_ui.py``); every page also runs the sidebar's facet counts. ``--repeat R``
times everything R times and prints the median with the range; the machine's load average
is printed with each table.

The catalog is built from real extracted documents: a few hundred sample files are generated
and indexed, then their documents are replicated with new paths, runs, subruns, sizes, event
counts and modification times spread over two years (about 2% of the copies keep their
fingerprint, so the Replicas page has work). With ``SPINE_DOCS_TEST_URI=mongodb://...`` the
same documents also go into a scratch database of that server (``spine_docs_bench_<N>``,
created with the indexes of schema.json and dropped at the end unless ``--keep``), the same
timings are printed for it, and each pipeline's ``explain`` summary: the plan (index or
collection scan), keys and documents examined, and the server's execution time.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spine_docs import ingest, queries, samples, schema, store  # noqa: E402
from spine_docs.queries import AttrFilter, Filter  # noqa: E402
from spine_docs.settings import Settings  # noqa: E402

TARGET_S = 1.0
BASE_FILES = 300
UTC = timezone.utc


# --------------------------------------------------------------------------- the catalog

def base_documents(workdir: Path) -> list[dict]:
    """Documents extracted from real sample files (format 1 and 2, old and new versions,
    sidecars, foreign files)."""
    samples.write_prod_tree(workdir / "samples", BASE_FILES, seed=7)
    db = store.connect("mongomock://bench-base")
    ingest.inject(db, settings=Settings.load(env={}, site="s3df", workers=os.cpu_count() or 1),
                  sources=[str(workdir / "samples")])
    return list(db.files.find())


def replicate(base: list[dict], n: int, seed: int = 0) -> list[dict]:
    """``n`` documents shaped like ``base`` with varied paths, runs, sizes, events, times."""
    rnd = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        doc = copy.deepcopy(base[i % len(base)])
        block, k = divmod(i, len(base))
        site = "s3df" if rnd.random() < 0.8 else "nersc"
        path = doc["path"].replace("/samples/", f"/prod/b{block:04d}/")
        doc.update(_id=f"{site}:{path}", site=site, path=path, dir=os.path.dirname(path))
        if doc.get("run") is not None:
            doc["run"] = doc["run"] + block * 3
            doc["run_max"] = doc["run"] if doc.get("run_max") is not None else None
        if doc.get("subrun") is not None and rnd.random() < 0.03:
            doc["subrun"] = doc["subrun"] + 1000  # leave gaps
        if doc.get("num_events") is not None:
            doc["num_events"] = max(1, int(doc["num_events"] * rnd.uniform(0.3, 3)))
        doc["size"] = int((doc.get("size") or 10_000) * rnd.lognormvariate(0, 1.2))
        when = start + timedelta(seconds=rnd.randrange(730 * 86400))
        doc["mtime"] = when.replace(microsecond=0)
        doc["ingest"] = {**doc.get("ingest", {}), "first_seen": when, "last_seen": when}
        if block and rnd.random() >= 0.02 and doc.get("fingerprint"):
            doc["fingerprint"] = f"{doc['fingerprint'][:48]}{i:016x}"
        out.append(doc)
    return out


def load(db: Any, docs: list[dict], batch: int = 2000) -> None:
    with store.writing(db):
        schema.setup(db)
    for i in range(0, len(docs), batch):
        with store.writing(db):
            db.files.insert_many(docs[i:i + batch], ordered=False)


# --------------------------------------------------------------------------- the pages' queries

def page_params(db: Any) -> dict[str, Any]:
    """The values the page views are made of (a dataset and a model to click, a cursor, a
    file id), read once before timing: computing them warms nothing that is timed (each
    first view gets a freshly opened catalog)."""
    facets = queries.facets(db, Filter())
    dataset = facets["dataset"][0]["value"]
    model = facets["model"][0]["value"]
    narrow = Filter(dataset=[dataset], model=[model], version_min="0.5", run_min=0,
                    attr_filters=[AttrFilter(key="num_events", op="gte", value=1)]) \
        if any(k["key"] == "num_events" for k in queries.attribute_keys(db, max_docs=1000)) \
        else Filter(dataset=[dataset], model=[model], version_min="0.5", run_min=0)
    first = queries.page(db, Filter(), size=50)
    return {"flt": Filter(dataset=[dataset]), "narrow": narrow, "after": first.next_after,
            "one_id": first.rows[0]["_id"]}


def page_plans(db: Any, p: dict[str, Any]) -> dict[str, list[tuple[str, Callable[[], Any]]]]:
    """What each page view runs, in order (mirrors app/views/*.py with their defaults): a
    first visit runs the sidebar's facets and the page's own queries; "next page", "detail
    panel" and "sort by" only run what is not already cached from the visit before."""
    flt, narrow = p["flt"], p["narrow"]

    def sidebar(f: Filter) -> list[tuple[str, Callable[[], Any]]]:
        return [("total", lambda: queries.total(db)),
                ("facets", lambda: queries.facets(db, f, limit=50))]

    def files(f: Filter) -> list[tuple[str, Callable[[], Any]]]:
        return sidebar(f) + [
            ("count", lambda: queries.count(db, f)),
            ("page", lambda: queries.page(db, f, size=50)),
        ]

    return {
        "Files: first visit": files(Filter()),
        "Files: next page": [("page 2", lambda: queries.page(db, Filter(), size=50, after=p["after"]))],
        "Files: detail panel": [("get_file", lambda: queries.get_file(db, p["one_id"], unescape=True))],
        "Files: sort by size": [("page", lambda: queries.page(db, Filter(), sort="-size", size=50))],
        "Files: click a facet": files(flt),
        "Files: 5 conditions": files(narrow),
        "Export (a facet)": sidebar(flt) + [
            ("count", lambda: queries.count(db, flt)),
            ("preview", lambda: list(queries.export(db, flt, "csv", sort="-mtime", limit=8)))],
        "Analytics: over time": sidebar(Filter()) + [
            ("timeline by dataset", lambda: queries.timeline(db, None, by="week", group="dataset"))],
        "Analytics: distributions": sidebar(Filter()) + [
            ("size histogram", lambda: queries.histogram(db, None, field="size", bins=30, log=True))],
        "Analytics: run coverage": sidebar(Filter()) + [
            ("run coverage", lambda: queries.run_coverage(db, None))],
        # the page's default: the newest 10,000 matching files (app/views/attributes.py)
        "Attributes": sidebar(Filter()) + [
            ("dictionary", lambda: queries.attribute_dictionary(db, None, max_docs=10_000)),
            ("count", lambda: queries.count(db))],
        "Attributes: all files": sidebar(Filter()) + [
            ("dictionary", lambda: queries.attribute_dictionary(db, None)),
            ("count", lambda: queries.count(db))],
        "Replicas": sidebar(Filter()) + [
            ("replicas", lambda: queries.replicas(db, None, limit=200))],
        "Saved queries": sidebar(Filter()) + [
            ("list", lambda: queries.list_queries(db))],
    }


def run_plan(plan: list[tuple[str, Callable[[], Any]]]) -> tuple[float, float, str]:
    """(total seconds, CPU seconds of this process, "query ms, ...") of one page view. The
    CPU time is what the view costs whatever else the machine runs (wall time on a loaded
    machine is longer: the process waits for a core)."""
    parts = []
    total = 0.0
    c0 = time.process_time()
    for name, fn in plan:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        total += dt
        parts.append(f"{name} {dt * 1000:.0f}")
    return total, time.process_time() - c0, ", ".join(parts)


def _spread(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    med = statistics.median(ms)
    if len(ms) == 1:
        return f"{med:6.0f}"
    return f"{med:6.0f} ({ms[0]:.0f}-{ms[-1]:.0f})"


def time_pages(open_db: Callable[[], Any], close_db: Callable[[Any], None], label: str,
               repeat: int = 1) -> dict[str, tuple[float, float]]:
    """Each page view timed twice in a row, ``repeat`` times: the **first view** on a
    catalog opened just for it (nothing cached: what the first visitor after the explorer
    opened the catalog - or after an inject changed it - waits for), then **again** (the
    engine's caches warm, the explorer's own result cache still cold: any later visit and
    every change of filter). Prints the median (min-max over the repeats) and returns
    {page: (median first view, median again)} in seconds."""
    db = open_db()
    params = page_params(db)
    names = list(page_plans(db, params))
    close_db(db)
    firsts: dict[str, list[float]] = {n: [] for n in names}
    agains: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in names}
    detail: dict[str, tuple[str, str]] = {}
    for _r in range(repeat):
        for name in names:
            db = open_db()
            plan = page_plans(db, params)[name]
            t1, c1, d1 = run_plan(plan)
            t2, c2, d2 = run_plan(plan)
            close_db(db)
            del db, plan
            gc.collect()  # a closed catalog is freed by the cycle collector: now, not timed
            firsts[name].append(t1)
            agains[name].append(t2)
            cpu[name][0].append(c1)
            cpu[name][1].append(c2)
            detail.setdefault(name, (d1, d2))
    print(f"\n{label}" + (f" (median of {repeat}, min-max)" if repeat > 1 else ""))
    print(f"  {'page view':<26} {'first view ms':>20} {'again ms':>20} {'CPU ms: first':>14} "
          f"{'again':>6}   queries of the first round (ms): first / again")
    out = {}
    for name in names:
        f, a = statistics.median(firsts[name]), statistics.median(agains[name])
        out[name] = (f, a)
        flag = "" if max(f, a) < TARGET_S else "  (over 1 s)"
        print(f"  {name:<26} {_spread(firsts[name]):>20} {_spread(agains[name]):>20} "
              f"{statistics.median(cpu[name][0]) * 1000:>14.0f} {statistics.median(cpu[name][1]) * 1000:>6.0f}   "
              f"{detail[name][0]} / {detail[name][1]}{flag}")
    return out


def time_export(db: Any) -> None:
    for fmt in ("csv", "jsonl", "paths"):
        t0 = time.perf_counter()
        nbytes = sum(len(line) for line in queries.export(db, None, fmt, sort="-mtime"))
        dt = time.perf_counter() - t0
        print(f"  full export {fmt:<6} {nbytes / 1e6:8.1f} MB in {dt:6.2f} s  ({nbytes / 1e6 / dt:.0f} MB/s)")


# --------------------------------------------------------------------------- explain (server)

def _walk(node: Any, found: dict) -> None:
    if isinstance(node, dict):
        stage = node.get("stage")
        if isinstance(stage, str):
            name = stage + (f"({node['indexName']})" if node.get("indexName") else "")
            found.setdefault("plan", []).append(name)
        for key in ("totalKeysExamined", "totalDocsExamined", "nReturned", "executionTimeMillis",
                    "executionTimeMillisEstimate"):
            if isinstance(node.get(key), (int, float)) and key.startswith("total"):
                found[key] = found.get(key, 0) + node[key]
        if isinstance(node.get("executionTimeMillis"), (int, float)):
            found["ms"] = max(found.get("ms", 0), node["executionTimeMillis"])
        for value in node.values():
            _walk(value, found)
    elif isinstance(node, list):
        for value in node:
            _walk(value, found)


def explain_summary(db: Any, command: dict) -> str:
    try:
        out = db.command("explain", command, verbosity="executionStats")
    except Exception as exc:  # noqa: BLE001 - print and go on
        return f"explain failed: {str(exc).splitlines()[0][:120]}"
    found: dict = {}
    _walk(out, found)
    plan = []
    for p in found.get("plan", []):
        if p not in plan and not p.startswith(("FETCH", "PROJECTION", "LIMIT", "SORT_KEY")):
            plan.append(p)
    return (f"{' > '.join(plan[:6]) or '?'}; keys {found.get('totalKeysExamined', 0):,}, "
            f"docs {found.get('totalDocsExamined', 0):,}, {found.get('ms', '?')} ms")


def explain_all(db: Any) -> None:
    facets = queries.facets(db, Filter())
    flt = Filter(dataset=[facets["dataset"][0]["value"]])
    print("\n  explain (executionStats) of each pipeline:")
    cmds: list[tuple[str, dict]] = []
    for label, f in (("all", Filter()), ("facet", flt)):
        for fields, pipeline in queries.facets_pipelines(f, queries.DEFAULT_FACETS, 50):
            cmds.append((f"facets {label} {','.join(fields)}", {"aggregate": "files", "pipeline": pipeline, "cursor": {}}))
        cmds.append((f"count {label}", {"count": "files", "query": f.to_mongo()}))
        q, spec = queries.page_query(f, queries.DEFAULT_SORT)
        cmds.append((f"page {label}", {"find": "files", "filter": q, "sort": dict(spec), "limit": 51}))
    q, spec = queries.page_query(None, ("size", -1))
    cmds.append(("page sort size", {"find": "files", "filter": q, "sort": dict(spec), "limit": 51}))
    for name, pipeline in (
            ("timeline week", queries.timeline_pipeline(None, "week")),
            ("timeline by dataset", queries.timeline_pipeline(None, "month", "dataset")),
            ("histogram stats size", queries.histogram_stats_pipeline(None, "size", True)),
            ("run coverage", queries.run_coverage_pipeline(None)),
            ("attribute keys", queries.attribute_keys_pipeline(None)),
            ("attribute dictionary", queries.attribute_dictionary_pipeline(None)),
            ("replicas", queries.replicas_pipeline(None, 200))):
        cmds.append((name, {"aggregate": "files", "pipeline": pipeline, "cursor": {}}))
    for name, cmd in cmds:
        print(f"    {name:<36} {explain_summary(db, cmd)}")


# --------------------------------------------------------------------------- main

def _load_average() -> str:
    try:
        return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


def _explorer_connect(path: Path) -> Any:
    """The catalog opened as the explorer opens it (it keeps the column caches it builds)."""
    db = store.connect(str(path))
    store.keep_columns(db)
    return db


def _holds(path: Path, n: int) -> bool:
    """Whether ``path`` is an embedded catalog of ``n`` files (kept by an earlier ``--keep``)."""
    if not (path / store.DEFAULT_DB).is_dir():  # connect() would create an empty one
        return False
    try:
        db = store.connect(str(path))
    except Exception:  # noqa: BLE001 - not a catalog: rebuild it
        return False
    try:
        return queries.total(db) == n
    finally:
        store.close(db)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the catalogs (and the server databases)")
    ap.add_argument("--reuse", action="store_true",
                    help="use the catalogs an earlier --keep run left in --dir instead of rebuilding them")
    ap.add_argument("--repeat", type=int, default=1, help="time every page view this many times")
    ap.add_argument("--no-export", action="store_true", help="skip the full-export timings")
    args = ap.parse_args(argv)

    workdir = args.dir or Path(tempfile.mkdtemp(prefix="spine-docs-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    server_uri = os.environ.get("SPINE_DOCS_TEST_URI")
    base: list[dict] | None = None
    try:
        for n in args.sizes:
            path = workdir / f"catalog-{n}"
            docs = None
            if args.reuse and _holds(path, n):
                print(f"\n== {n:,} files: embedded catalog {path} reused")
            else:
                if base is None:
                    t0 = time.perf_counter()
                    base = base_documents(workdir)
                    print(f"{len(base)} documents extracted from sample files in {time.perf_counter() - t0:.1f} s")
                docs = replicate(base, n, seed=n)
                shutil.rmtree(path, ignore_errors=True)
                t0 = time.perf_counter()
                load(store.connect(str(path)), docs)
                built = time.perf_counter() - t0
                store.close(store.connect(str(path)))
                print(f"\n== {n:,} files: embedded catalog written in {built:.1f} s")
            t0 = time.perf_counter()
            db = store.connect(str(path))
            print(f"  opened in {time.perf_counter() - t0:.1f} s; {_load_average()}")
            store.close(db)
            totals = time_pages(lambda: _explorer_connect(path), store.close,
                                f"embedded catalog, {n:,} files, per page view", args.repeat)
            print(f"  slowest page: first view {max(f for f, _a in totals.values()) * 1000:.0f} ms, "
                  f"again {max(a for _f, a in totals.values()) * 1000:.0f} ms (target < 1 s); "
                  f"{_load_average()}")
            if not args.no_export:
                db = store.connect(str(path))
                time_export(db)
                store.close(db)
            if server_uri:
                if docs is None:
                    if base is None:
                        base = base_documents(workdir)
                    docs = replicate(base, n, seed=n)
                name = f"spine_docs_bench_{n}"
                sdb = store.connect(server_uri).client[name]
                sdb.client.drop_database(name)
                t0 = time.perf_counter()
                load(sdb, docs)
                print(f"\n  server {schema.display_url(server_uri)} database {name}: "
                      f"loaded in {time.perf_counter() - t0:.1f} s")
                time_pages(lambda: sdb, lambda _db: None, f"server, {n:,} files, per page view",
                           args.repeat)
                explain_all(sdb)
                if not args.keep:
                    sdb.client.drop_database(name)
            if not args.keep:
                shutil.rmtree(path, ignore_errors=True)
        if not server_uri:
            print("\n(set SPINE_DOCS_TEST_URI=mongodb://... to time a server and print explain summaries)")
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
