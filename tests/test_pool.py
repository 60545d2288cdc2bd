"""pool.py: workers fork from a forkserver that imported what they need, once."""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys
import types
from pathlib import Path

from spine_docs import pool

REPO = Path(__file__).resolve().parent.parent

PROBE = """\
import os

IMPORTED_IN = os.getpid()  # the process that ran this import


def where(_item):
    return IMPORTED_IN, os.getpid()
"""

MAIN = """\
import json
import os
import sys

from spine_docs import pool


def run():
    import preload_probe  # not a name of this script: only `preload` names it

    seen = list(pool.parallel_map(preload_probe.where, range(16), workers=2, chunksize=1,
                                  preload=["preload_probe"]))
    print(json.dumps({"main": os.getpid(), "main_modules": pool.main_modules(), "seen": seen}))


if __name__ == "__main__":
    run()
"""


def test_workers_fork_from_a_forkserver_that_imported_their_modules(tmp_path):
    (tmp_path / "preload_probe.py").write_text(PROBE)
    (tmp_path / "main.py").write_text(MAIN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    r = subprocess.run([sys.executable, str(tmp_path / "main.py")], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    imported_in = {where for where, _worker in out["seen"]}
    workers = {worker for _where, worker in out["seen"]}
    # one process imported the probe, before any worker existed: neither a worker nor the caller
    assert len(imported_in) == 1 and not imported_in & workers and out["main"] not in imported_in
    assert out["main"] not in workers and 1 <= len(workers) <= 2
    # the script's own names come from these modules: a worker running it again finds them
    assert out["main_modules"] == ["json", "os", "sys", "spine_docs.pool"]


def fake_main(monkeypatch, *, spec_name=None, file=None, **names):
    main = types.ModuleType("__main__")
    main.__spec__ = importlib.machinery.ModuleSpec(spec_name, None) if spec_name else None
    if file:
        main.__file__ = file
    for k, v in names.items():
        setattr(main, k, v)
    monkeypatch.setitem(sys.modules, "__main__", main)


def test_main_modules_are_what_a_worker_imports_first(monkeypatch):
    fake_main(monkeypatch, spec_name="spine_docs.cli")  # python -m spine_docs.cli
    assert pool.main_modules() == ["spine_docs.cli"]
    fake_main(monkeypatch, spec_name="pytest.__main__")  # a package's __main__ is not run again
    assert pool.main_modules() == []
    fake_main(monkeypatch)  # interactive: nothing to run again
    assert pool.main_modules() == []

    def local():
        pass

    local.__module__ = "__main__"
    # a console script: `import re, sys` and `from spine_docs.cli import main`, plus data
    fake_main(monkeypatch, file="/venv/bin/spine-docs", re=__import__("re"), sys=sys,
              main=pool.start, helper=local, Kind=pool.ProcessPoolExecutor, answer=42)
    assert pool.main_modules() == ["re", "sys", "spine_docs.pool", "concurrent.futures.process"]


def _raise(message):
    raise RuntimeError(message)


def test_background_runs_in_a_worker_and_gives_its_result_or_its_error():
    import time as _time

    job = pool.Background(os.getpid)
    worker = job.result()
    assert isinstance(worker, int) and worker != os.getpid()
    with pool.Background(_raise, "the walk failed") as job:
        try:
            job.result()
        except RuntimeError as exc:
            assert str(exc) == "the walk failed"
        else:
            raise AssertionError("the worker's error was not raised")
    # closed before its result: the worker is killed, not waited for
    job = pool.Background(_time.sleep, 60)
    pid = next(iter(job._pool._processes))  # the pool's own record of its worker
    started = _time.monotonic()
    job.close()
    assert _time.monotonic() - started < 10
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"worker {pid} still runs")


FORKED = """\
import json
import os
import threading

from spine_docs import pool

if __name__ == "__main__":
    alone = pool.Background(os.getppid, fork=True).result()  # no other thread: forked here
    stop = threading.Event()
    threading.Thread(target=stop.wait).start()
    beside = pool.Background(os.getppid, fork=True).result()  # a thread: from the forkserver
    stop.set()
    print(json.dumps({"me": os.getpid(), "alone": alone, "beside": beside}))
"""


def test_background_forks_from_the_caller_only_when_it_has_no_other_thread(tmp_path):
    (tmp_path / "forked.py").write_text(FORKED)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, str(tmp_path / "forked.py")], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["alone"] == out["me"]
    assert out["beside"] != out["me"]  # the forkserver's child
