"""Ingest benchmark: ``python bench/ingest.py N [--workers W] [--db URL] [--dir D]``.

Generates N SPINE-like sample files (or reuses them in --dir) and prints, measured in one run:

* the raw rate at which h5py alone opens the files and does the same reads as the extractor
  (root and /info attributes, structure, event count, run ranges) with the same workers;
* spine-docs' inject rate into the catalog (default: a fresh embedded catalog) and the ratio
  of the two (target >= 0.7). The two take turns on ``--rounds`` interleaved slices of the
  files (each slice a separate inject into the same catalog), so a machine whose speed
  drifts during the run slows both alike; the per-round ratios show the spread;
* the re-scan rate of the unchanged tree, the median of three (target >= 20,000 files/s);
* peak memory of the indexing process (target < 2 GB at 50,000 files, embedded catalog).

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spine_docs import ingest, samples, store  # noqa: E402
from spine_docs.settings import Settings  # noqa: E402


def raw_read(path: str) -> int:
    """What the extractor reads, with h5py alone and no conversion: the baseline."""
    import h5py

    n = 0
    with h5py.File(path, "r") as f:
        n += len(dict(f.attrs))
        if "info" in f:
            n += len(dict(f["info"].attrs))
        queue = [(f, 1)]
        seen = 0
        while queue and seen < 256:
            g, depth = queue.pop(0)
            for name in g:
                obj = g[name]
                seen += 1
                if isinstance(obj, h5py.Group):
                    if depth < 4:
                        queue.append((obj, depth + 1))
                else:
                    _ = (obj.shape, obj.dtype)
        if "events" in f:
            n += len(f["events"])
        for key in ("run_info", "products/run_info/values"):
            if key in f:
                ds = f[key]
                if ds.dtype.names:
                    for col in ("run", "subrun", "event"):
                        if col in ds.dtype.names:
                            col_data = ds.fields(col)[()]
                            n += int(col_data.min()) if len(col_data) else 0
                break
    return n


def baseline(paths: list[str], workers: int) -> None:
    """raw_read over ``paths`` with ``workers`` processes, started the way inject starts its."""
    if workers > 1 and len(paths) >= 8:
        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            list(pool.map(raw_read, paths, chunksize=max(1, min(64, len(paths) // (workers * 8)))))
    else:
        for p in paths:
            raw_read(p)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def peak_rss_mb() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return me, kids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int, help="number of files")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--db", default=None, help="catalog URL (default: a fresh embedded catalog)")
    ap.add_argument("--dir", default=None, help="where the sample files are / go (kept)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="baseline and inject alternate on this many slices of the files "
                         "(default: one per 5,000 files, at least 4)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="spine-docs-bench-")
    root = Path(args.dir) if args.dir else Path(tmp) / "files"
    try:
        existing = sorted(root.rglob("*.h5")) if root.exists() else []
        if len(existing) >= args.n:
            paths = [str(p) for p in existing[: args.n]]
            print(f"reusing {len(paths)} files under {root}")
        else:
            t = time.perf_counter()
            paths = [str(p) for p in samples.write_prod_tree(root, args.n, seed=0)]
            dt = time.perf_counter() - t
            print(f"generated {len(paths)} files in {dt:.1f} s ({rate(len(paths), dt):,.0f} files/s)")
        list_file = Path(tmp) / "sources.txt"
        list_file.write_text("\n".join(paths) + "\n")

        db_url = args.db or str(Path(tmp) / "catalog")
        db = store.connect(db_url)
        settings = Settings.load(env={}, db=db_url, workers=args.workers, site="bench")

        # baseline and inject take turns on interleaved slices of the files, so that both
        # see the same machine (shared machines change speed from minute to minute)
        rounds = args.rounds or max(4, len(paths) // 5000)
        rounds = max(1, min(rounds, len(paths)))
        raw_s = inject_s = 0.0
        per_round = []
        reports = []
        for r in range(rounds):
            part = paths[r::rounds]
            list_file.write_text("\n".join(part) + "\n")
            t = time.perf_counter()
            baseline(part, args.workers)
            dt_raw = time.perf_counter() - t
            rep = ingest.inject(db, settings=settings, source_list=list_file, skip_existing=False)
            raw_s += dt_raw
            inject_s += rep.seconds
            per_round.append(rate(len(part), rep.seconds) / rate(len(part), dt_raw))
            reports.append(rep)
        raw = rate(len(paths), raw_s)
        inject_rate = rate(len(paths), inject_s)
        indexed = sum(r.indexed for r in reports)
        failed = sum(r.failed for r in reports)

        list_file.write_text("\n".join(paths) + "\n")
        rescans = [ingest.inject(db, settings=settings, source_list=list_file) for _ in range(3)]
        rescan = sorted(rescans, key=lambda r: r.files_per_s)[1]  # the median of three
        me, kids = peak_rss_mb()

        print(f"files                      {len(paths):>12,}")
        print(f"workers                    {args.workers:>12}")
        print(f"catalog                    {store.describe(db)}")
        print(f"rounds                     {rounds:>12}     (baseline and inject take turns)")
        print(f"h5py alone (baseline)      {raw:>12,.0f} files/s")
        print(f"spine-docs inject          {inject_rate:>12,.0f} files/s   "
              f"(indexed {indexed:,}, failed {failed:,})")
        print(f"ratio inject / baseline    {inject_rate / raw:>12.2f}     (target >= 0.70; "
              f"rounds {' '.join(f'{x:.2f}' for x in per_round)})")
        print(f"re-scan, unchanged tree    {rescan.files_per_s:>12,.0f} files/s   (target >= 20,000; "
              f"median of {' / '.join(f'{r.files_per_s:,.0f}' for r in rescans)}; "
              f"{rescan.unchanged:,} unchanged)")
        print(f"peak memory, indexer       {me:>12,.0f} MB       (target < 2,048 MB at 50,000 files)")
        print(f"peak memory, one worker    {kids:>12,.0f} MB")
    finally:
        if not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
