"""Ingest benchmark, timed as a user times it: ``python bench/ingest.py N [--dir D] [--repeat R]``.

Generates N SPINE-like sample files (or reuses those in --dir) and prints:

* **inject**: the wall time of the whole ``spine-docs inject --db <fresh embedded catalog>
  --source <dir> --workers W --no-progress`` process, from exec to exit (start-up, imports,
  discovery, the worker pool, the writes, the final save), a fresh catalog each time;
* **baseline**: h5py alone doing the same reads as the extractor (root and ``/info``
  attributes, the structure walk up to 256 members and depth 4 with shape and dtype, the
  event count, the run ranges) in W worker processes forked once from this process (the fork
  is timed, h5py is imported before it): as fast as the hardware allows. It runs before and
  after every inject, and each inject is compared with the mean of the two around it;
* the **ratio** baseline time / inject time (= inject files/s / baseline files/s;
  target >= 0.75), for each of the --repeat injects and for their sum;
* the CPU time (user + system) each one took, all its processes together (the inject's
  forkserver and workers are reaped here, as a subreaper): unlike wall time it hardly depends
  on what else the machine runs, so its ratio is the figure to compare on a busy machine;
* the **re-scan** of the unchanged tree: the same command again over the last catalog,
  three times, its whole-process rate and the rate the run reports (target >= 20,000 files/s
  for the median of three);
* the **peak RSS** of the inject process (its own, not its workers'; target < 2 GB at
  50,000 files).

The machine may be shared: with each figure come the CPU seconds other processes used
meanwhile (from /proc/stat) and the load average. Run when they are low, and compare the
spread of the repeats. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import h5py  # noqa: E402  (imported before the baseline's fork, as its workers use it)

from spine_docs import samples  # noqa: E402

# what `spine-docs inject` prints last: "<catalog>: indexed N (k incomplete), unchanged U,
# failed F, R files/s in S s"
SUMMARY = re.compile(r"indexed (?P<indexed>\d+)(?: \((?P<incomplete>\d+) incomplete\))?, "
                     r"unchanged (?P<unchanged>\d+), failed (?P<failed>\d+), "
                     r"(?P<rate>[\d,.]+) files/s in (?P<seconds>[\d.]+) s")
_PR_SET_CHILD_SUBREAPER = 36


def raw_read(path: str) -> int:
    """What the extractor reads, with h5py alone and no conversion: the baseline."""
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


def children_cpu() -> float:
    """CPU seconds of every descendant reaped so far (this process's and the orphans it
    adopted as a subreaper)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def machine_busy() -> float | None:
    """CPU seconds the whole machine has been busy since boot (None where /proc/stat is not):
    less what this benchmark's processes used, what others ran meanwhile."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds of this process and every descendant reaped so far."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime + children_cpu()


class Others:
    """CPU seconds other processes used on the machine between start and stop (a measurement
    is clean when that is small: a shared machine runs other people's work)."""

    def __init__(self) -> None:
        self.busy, self.own = machine_busy(), own_cpu()

    def stop(self) -> float | None:
        busy = machine_busy()
        if busy is None or self.busy is None:
            return None
        return max(0.0, busy - self.busy - (own_cpu() - self.own))


def reap_orphans(timeout: float = 30.0) -> None:
    """Wait for the processes an inject left behind to end (its forkserver and resource
    tracker end once it is gone), so that their CPU time is counted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)


class Baseline:
    """raw_read over ``paths`` in ``workers`` processes forked once: wall time (the fork, the
    reads and the pool's shutdown) and CPU time."""

    def __init__(self, paths: list[str], workers: int):
        chunksize = max(1, min(16, len(paths) // (workers * 8)))  # the last chunk: tens of ms
        others = Others()
        cpu = children_cpu()
        started = time.perf_counter()
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(raw_read, paths, chunksize=chunksize):
                pass
            pool.close()
            pool.join()
        self.seconds = time.perf_counter() - started
        self.cpu = children_cpu() - cpu
        self.others = others.stop()


def inject_command(db: Path, source: Path, workers: int) -> list[str]:
    """The command a user types; the installed entry point when there is one beside this
    Python, else ``python -m spine_docs`` (the same code, run the same way)."""
    script = Path(sys.executable).with_name("spine-docs")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "spine_docs"]
    return head + ["inject", "--db", str(db), "--source", str(source), "--workers", str(workers),
                   "--no-progress"]


class Run:
    """One ``spine-docs inject`` process: wall time from exec to exit, CPU time of it and
    every process it started, its own peak RSS, and the summary line it printed."""

    def __init__(self, cmd: list[str]):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
        # as an installed package runs: pip compiles its modules to bytecode (main() compiled
        # this checkout's too); a shell with PYTHONDONTWRITEBYTECODE set would otherwise make
        # every start compile the whole CLI again
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        others = Others()
        cpu = children_cpu()
        with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
            started = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, env=env)
            _, status, usage = os.wait4(proc.pid, 0)  # not proc.wait(): wait4 gives the rusage
            self.seconds = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
            out_f.seek(0)
            err_f.seek(0)
            out, err = out_f.read().decode(), err_f.read().decode()
        reap_orphans()
        self.cpu = children_cpu() - cpu
        self.others = others.stop()
        # the inject process and the children it reaped (not the workers: the forkserver is
        # their parent)
        self.peak_mb = usage.ru_maxrss / 1024
        m = SUMMARY.search(out)
        if m is None:
            raise SystemExit(f"inject failed (exit {proc.returncode}):\n{out}\n{err}")
        self.counts = {k: int(m[k] or 0) for k in ("indexed", "incomplete", "unchanged", "failed")}
        self.reported_rate = float(m["rate"].replace(",", ""))
        self.reported_seconds = float(m["seconds"])


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return " / ".join(fmt.format(v) for v in values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int, help="number of files")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--dir", default=None, help="where the sample files are / go (kept)")
    ap.add_argument("--repeat", type=int, default=2,
                    help="fresh injects, each between two baselines (default 2)")
    ap.add_argument("--rescans", type=int, default=3, help="re-scans of the unchanged tree (default 3)")
    args = ap.parse_args()
    import compileall  # what `pip install` does to the package's modules

    compileall.compile_dir(str(REPO / "spine_docs"), quiet=1)

    try:  # adopt what an inject leaves behind, to count its CPU time (Linux)
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    tmp = Path(tempfile.mkdtemp(prefix="spine-docs-bench-"))
    root = Path(args.dir) if args.dir else tmp / "files"
    try:
        existing = sorted(root.rglob("*.h5")) if root.exists() else []
        if len(existing) == args.n:
            paths = [str(p) for p in existing]
            print(f"reusing {len(paths):,} files under {root}")
        elif existing:
            raise SystemExit(f"{root} holds {len(existing):,} files, not {args.n:,}: "
                             "give another --dir")
        else:
            t = time.perf_counter()
            paths = [str(p) for p in samples.write_prod_tree(root, args.n, seed=0)]
            print(f"generated {len(paths):,} files in {time.perf_counter() - t:.1f} s")
        n = len(paths)

        def show(what: str, m: Baseline | Run, extra: str = "") -> None:
            others = "" if m.others is None else f"others' cpu {m.others:.1f} s; "
            print(f"{what:9s} {m.seconds:7.2f} s  {n / m.seconds:>9,.0f} files/s  cpu {m.cpu:7.2f} s   "
                  f"({extra}{others}{load()})")

        Baseline(paths, args.workers)  # untimed: the files in the page cache, like later runs
        bases = [Baseline(paths, args.workers)]
        show("baseline", bases[-1])
        runs: list[Run] = []
        for k in range(args.repeat):
            catalog = tmp / f"catalog-{k}"
            run = Run(inject_command(catalog, root, args.workers))
            runs.append(run)
            show("inject", run, f"reported {run.reported_rate:,.0f} files/s in "
                 f"{run.reported_seconds:.2f} s; peak RSS {run.peak_mb:,.0f} MB; ")
            bases.append(Baseline(paths, args.workers))
            show("baseline", bases[-1])
            if k < args.repeat - 1:
                shutil.rmtree(catalog)
        last_catalog = tmp / f"catalog-{args.repeat - 1}"

        rescans = [Run(inject_command(last_catalog, root, args.workers)) for _ in range(args.rescans)]
        for r in rescans:
            show("re-scan", r, f"reported {r.reported_rate:,.0f} files/s; ")

        around = [(bases[k].seconds + bases[k + 1].seconds) / 2 for k in range(len(runs))]
        around_cpu = [(bases[k].cpu + bases[k + 1].cpu) / 2 for k in range(len(runs))]
        ratios = [b / r.seconds for b, r in zip(around, runs)]
        cpu_ratios = [b / r.cpu for b, r in zip(around_cpu, runs)]
        counts = runs[-1].counts
        whole = sorted(n / r.seconds for r in rescans)
        reported = sorted(r.reported_rate for r in rescans)
        print()
        print(f"files                      {n:>12,}")
        print(f"workers                    {args.workers:>12}")
        print(f"command                    {' '.join(inject_command(Path('CATALOG'), root, args.workers))}")
        print(f"h5py alone (baseline)      {n * len(bases) / sum(b.seconds for b in bases):>12,.0f} files/s   "
              f"({spread([n / b.seconds for b in bases], '{:,.0f}')})")
        print(f"spine-docs inject          {n * len(runs) / sum(r.seconds for r in runs):>12,.0f} files/s   "
              f"({spread([n / r.seconds for r in runs], '{:,.0f}')}; indexed {counts['indexed']:,}, "
              f"failed {counts['failed']:,})")
        print(f"ratio inject / baseline    {sum(around) / sum(r.seconds for r in runs):>12.2f}     "
              f"(target >= 0.75; each inject against the baselines around it: {spread(ratios)})")
        print(f"  in CPU time              {sum(around_cpu) / sum(r.cpu for r in runs):>12.2f}     "
              f"(baseline cpu / inject cpu: {spread(cpu_ratios)}; "
              f"cpu s {spread([b.cpu for b in bases], '{:.1f}')} / {spread([r.cpu for r in runs], '{:.1f}')})")
        print(f"re-scan, whole process     {statistics.median(whole):>12,.0f} files/s   "
              f"(median of {spread(whole, '{:,.0f}')}; {rescans[0].counts['unchanged']:,} unchanged)")
        print(f"re-scan, as reported       {statistics.median(reported):>12,.0f} files/s   "
              f"(target >= 20,000; median of {spread(reported, '{:,.0f}')})")
        print(f"peak RSS, inject process   {max(r.peak_mb for r in runs):>12,.0f} MB       "
              f"(target < 2,048 MB at 50,000 files; re-scan {max(r.peak_mb for r in rescans):,.0f} MB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
